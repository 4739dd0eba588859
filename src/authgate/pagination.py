"""Keyset pagination: over time-ordered UUID primary keys, and over the small lists kept in code."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from authgate.errors import InvalidInputError

T = TypeVar("T")

PageLimit = Annotated[int, Query(ge=1, le=200, description="Items per page")]


def _cursor_query(max_length: int) -> Any:
    return Query(max_length=max_length, description="`next_cursor` of the previous page")


class PageParams:
    def __init__(
        self,
        limit: PageLimit = 50,
        cursor: Annotated[str | None, _cursor_query(64)] = None,
    ) -> None:
        self.limit = limit
        self.after = decode_cursor(cursor) if cursor else None


PageParamsDep = Annotated[PageParams, Depends()]


class NamePageParams:
    """`?limit=&cursor=` for a list ordered by a unique name, such as the permission catalogue."""

    def __init__(
        self,
        limit: PageLimit = 50,
        cursor: Annotated[str | None, _cursor_query(256)] = None,
    ) -> None:
        self.limit = limit
        self.after = _decode_name_cursor(cursor) if cursor else None


NamePageParamsDep = Annotated[NamePageParams, Depends()]


def page_by_name(
    items: Iterable[T], name: Callable[[T], str], params: NamePageParams
) -> tuple[list[T], str | None]:
    """One page of `items` in name order, after the cursor's name; returns it and the next cursor."""
    ordered = sorted(items, key=name)
    rest = [item for item in ordered if params.after is None or name(item) > params.after]
    page = rest[: params.limit]
    more = len(rest) > params.limit
    return page, base64.urlsafe_b64encode(name(page[-1]).encode()).rstrip(b"=").decode() if more else None


def _decode_name_cursor(cursor: str) -> str:
    try:
        name = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInputError("Invalid cursor", ("query", "cursor")) from exc
    if not name:
        raise InvalidInputError("Invalid cursor", ("query", "cursor"))
    return name


def encode_cursor(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise InvalidInputError("Invalid cursor", ("query", "cursor")) from exc


async def fetch_page(
    session: AsyncSession,
    stmt: Select[T],
    key: InstrumentedAttribute[uuid.UUID],
    params: PageParams,
    *,
    descending: bool = True,
) -> tuple[list[T], str | None]:
    """Run `stmt` for one page ordered by `key` (newest first by default); returns rows and the next cursor."""
    if params.after is not None:
        stmt = stmt.where(key < params.after if descending else key > params.after)
    stmt = stmt.order_by(key.desc() if descending else key.asc()).limit(params.limit + 1)
    rows = list((await session.scalars(stmt)).unique().all())
    has_more = len(rows) > params.limit
    rows = rows[: params.limit]
    return rows, encode_cursor(getattr(rows[-1], key.key)) if has_more and rows else None
