"""Opaque keyset cursors: where the next page starts, as URL-safe base64 of a small JSON array.

A cursor holds the last item's sort key and which list it belongs to, so a session cursor
cannot page alerts; clients must treat it as opaque (its form may change between versions).
"""

from __future__ import annotations

import base64
import binascii
import json

from .errors import CatalogQueryError

MAX_CURSOR = 512  # characters: a key of two short strings needs about 150


def encode(kind: str, key: tuple[str, str]) -> str:
    """The cursor after the item whose sort key is `key` in list `kind` ("sessions", "alerts")."""
    raw = json.dumps([kind, *key], separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str) -> tuple[str, str]:
    """The sort key in a cursor made by `encode(kind, ...)`; CatalogQueryError("bad_cursor") otherwise."""
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = None
    if not (isinstance(value, list) and len(value) == 3 and value[0] == kind
            and all(isinstance(part, str) for part in value[1:])):
        raise CatalogQueryError("bad_cursor", f"not a cursor of this {kind} list: pass next_cursor back unchanged")
    return value[1], value[2]


__all__ = ["decode", "encode"]
