"""The local storage backend: generated names only, nothing outside its directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from authgate.storage.local import InvalidStorageNameError, LocalStorage


async def test_save_read_delete_roundtrip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "avatars")
    name = await storage.save(b"pixels", "webp")
    assert re.fullmatch(r"[0-9a-f]{32}\.webp", name)
    assert await storage.read(name) == b"pixels"
    assert name != await storage.save(b"pixels", "webp")
    await storage.delete(name)
    assert await storage.read(name) is None
    await storage.delete(name)  # missing files are fine


@pytest.mark.parametrize(
    "name",
    [
        "../secret",
        "../../etc/passwd",
        "/etc/passwd",
        "a" * 32 + ".webp/../x",
        "A" * 32 + ".webp",
        "x.webp",
        "",
    ],
)
async def test_names_outside_the_generated_shape_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "secret").write_bytes(b"do not read")
    storage = LocalStorage(tmp_path / "avatars")
    with pytest.raises(InvalidStorageNameError):
        await storage.read(name)
    with pytest.raises(InvalidStorageNameError):
        await storage.delete(name)
    assert (tmp_path / "secret").read_bytes() == b"do not read"


async def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidStorageNameError):
        await LocalStorage(tmp_path).save(b"x", "html")
