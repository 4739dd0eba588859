"""Slug generation from display names (no database)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgate.workspaces.schemas import SLUG_MAX, SLUG_MIN, SLUG_RE, is_uuid_like
from authgate.workspaces.service import slugify


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme Inc", "acme-inc"),
        ("  Café -- Déjà  Vu!! ", "cafe-deja-vu"),
        ("ÆØÅ", "a-workspace"),  # Å keeps its A; Æ and Ø have no ASCII decomposition
        ("日本", "workspace"),
        ("x", "x-workspace"),
        (str(uuid.UUID(int=5)), "ws-00000000-0000-0000-0000-000000000005"[: SLUG_MAX - 6]),
    ],
)
def test_slugify_examples(name: str, slug: str) -> None:
    assert slugify(name) == slug


@given(st.text(max_size=300))
def test_slugify_always_gives_a_valid_slug_with_room_for_a_suffix(name: str) -> None:
    slug = slugify(name)
    assert SLUG_RE.match(slug)
    assert SLUG_MIN <= len(slug) <= SLUG_MAX - 6
    assert not is_uuid_like(slug)
    assert SLUG_RE.match(f"{slug}-999")
