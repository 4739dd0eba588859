from tests.courier import courier, mailbox, smtp_server, smtp_settings

__all__ = ["courier", "mailbox", "smtp_server", "smtp_settings"]
