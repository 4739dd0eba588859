"""File storage behind a small interface; the local-directory backend keeps files under `UPLOAD_DIR`.

Names are generated here (random hex plus a fixed extension), never taken from the client, and
every name is checked against that shape before it touches the filesystem, so no path traversal
is possible even if a stored name were tampered with.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path
from typing import Protocol

_NAME = re.compile(r"^[0-9a-f]{32}\.(webp|png)$")


class InvalidStorageNameError(ValueError):
    pass


class Storage(Protocol):
    async def save(self, data: bytes, extension: str) -> str: ...
    async def read(self, name: str) -> bytes | None: ...
    async def delete(self, name: str) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise InvalidStorageNameError(name)
        path = (self._root / name).resolve()
        if path.parent != self._root:  # belt and braces; the pattern already forbids separators
            raise InvalidStorageNameError(name)
        return path

    async def save(self, data: bytes, extension: str) -> str:
        name = f"{secrets.token_hex(16)}.{extension}"
        path = self._path(name)

        def write() -> None:
            self._root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: readers never see half a file

        await asyncio.to_thread(write)
        return name

    async def read(self, name: str) -> bytes | None:
        path = self._path(name)

        def load() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(load)

    async def delete(self, name: str) -> None:
        path = self._path(name)
        await asyncio.to_thread(path.unlink, missing_ok=True)
