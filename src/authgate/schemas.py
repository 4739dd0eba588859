"""Shared pydantic building blocks: the API base model, pages, and common field types."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StringConstraints,
    field_validator,
)

T = TypeVar("T")

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")


class APIModel(BaseModel):
    """Base of every request and response body: unknown fields are rejected (422)."""

    model_config = ConfigDict(from_attributes=True, extra="forbid", str_strip_whitespace=False)


Flag = StrictBool  # a JSON true or false in a request body: no "yes", 1 or "false" read as a boolean


def refuse_null(*fields: str) -> Any:
    """For PATCH fields that can be changed but not cleared: leaving one out keeps it, null is 422."""

    def check(value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value

    return field_validator(*fields, mode="before")(check)


class Page(APIModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


def _email(value: str) -> str:
    try:
        result = validate_email(value.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    return str(result.normalized)


def _username(value: str) -> str:
    lowered = value.strip().lower()
    if not USERNAME_RE.match(lowered):
        raise ValueError("3–32 characters: letters, digits, '_', '.', '-', starting with a letter or digit")
    return lowered


def normalize_phone(value: str) -> str:
    """Parse a phone number and return it in E.164; international form (+...) required."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a valid phone number; use the international form, e.g. +14155550123") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_email)]
Username = Annotated[str, StringConstraints(max_length=32), AfterValidator(_username)]
Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(normalize_phone)]
Name = Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)]


def _unicode_text(value: SecretStr) -> SecretStr:
    """JSON may carry a lone surrogate (`"\\ud800"`): valid JSON, not text. Plain `str` fields refuse
    it already; a secret must too, before it is hashed or compared as UTF-8."""
    try:
        value.get_secret_value().encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Secret = Annotated[SecretStr, AfterValidator(_unicode_text)]  # passwords and single-use tokens


def in_utc(value: datetime) -> datetime:
    """The same moment in UTC; a time without an offset is taken as UTC (SPEC §3: times are UTC).

    A moment that exists only with its offset (`9999-12-31T23:59:59-14:00` is past year 9999 in
    UTC) is a validation error, not an overflow.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range once converted to UTC") from exc


# A time in a filter: ISO 8601; without an offset (`2026-01-01`, `2026-01-01T08:00`) it is UTC.
Timestamp = Annotated[datetime, AfterValidator(in_utc)]


def openapi_problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "code": {"type": "string", "description": "Stable snake_case error identifier"},
            "request_id": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "loc": {"type": "array"},
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
        },
        "required": ["type", "title", "status", "code"],
    }
