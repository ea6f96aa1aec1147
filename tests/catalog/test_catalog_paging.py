"""Keyset paging of the session list on both databases: every session once, newest first, capped, opaque cursors."""

from __future__ import annotations

import base64
import json

import pytest

from catalog_helpers import at, record
from stream.server.catalog import MAX_LIMIT, CatalogQueryError
from stream.server.catalog import writes


async def _walk(catalog, limit, **kwargs):
    """Every page of the session list: (pages, [(started_at, session_id), ...] in order)."""
    pages, seen, cursor = 0, [], None
    while True:
        page = await catalog.sessions(limit=limit, cursor=cursor, **kwargs)
        pages += 1
        assert len(page.items) <= limit
        seen += [(item["started_at"], item["session_id"]) for item in page.items]
        if page.next_cursor is None:
            return pages, seen
        cursor = page.next_cursor


def test_pages_hold_every_session_once_newest_first(backend):
    """130 sessions, three to a start time (ties broken by id), read 7 at a time: no gap, no twin, in order."""
    async def body(catalog):
        for i in range(130):
            await catalog.session_started(record(f"s-{i:03d}", started=i // 3))
        return await _walk(catalog, 7)

    pages, seen = backend.run(body)
    assert len(seen) == 130 and len(set(seen)) == 130
    assert seen == sorted(seen, reverse=True)
    assert seen[0] == (at(43), "s-129") and seen[-1] == (at(0), "s-000")
    assert pages == 19  # 18 full pages and 4 left over


def test_an_exact_last_page_says_there_is_no_next(backend):
    async def body(catalog):
        for i in range(14):
            await catalog.session_started(record(f"s{i}", started=i))
        first = await catalog.sessions(limit=7)
        second = await catalog.sessions(limit=7, cursor=first.next_cursor)
        return first, second

    first, second = backend.run(body)
    assert first.next_cursor is not None and len(second.items) == 7 and second.next_cursor is None


def test_sessions_arriving_between_pages_neither_repeat_nor_shift_the_rest(backend):
    """Keyset paging: a new (newer) session and a deleted one change nothing for the reader halfway through."""
    async def body(catalog):
        for i in range(20):
            await catalog.session_started(record(f"s{i:02d}", started=i))
        first = await catalog.sessions(limit=5)
        await catalog.session_started(record("newest", started=1000))
        await catalog.delete_session("s14")  # on the first page, already read
        rest = []
        cursor = first.next_cursor
        while cursor:
            page = await catalog.sessions(limit=5, cursor=cursor)
            rest += [item["session_id"] for item in page.items]
            cursor = page.next_cursor
        return [item["session_id"] for item in first.items], rest

    first, rest = backend.run(body)
    assert first == ["s19", "s18", "s17", "s16", "s15"]
    assert rest == [f"s{i:02d}" for i in range(14, -1, -1) if i != 14]


def test_the_page_size_is_capped_and_checked(backend):
    async def body(catalog):
        async with catalog.engine.begin() as conn:
            docs = [record(f"s{i:04d}", started=i) for i in range(MAX_LIMIT + 20)]
            await writes.write_sessions(conn, docs)
            await writes.recount(conn, [d["session_id"] for d in docs])
        big = await catalog.sessions(limit=10_000)
        default = await catalog.sessions()
        errors = []
        for bad in (0, -1, True, "5"):
            with pytest.raises(CatalogQueryError) as info:
                await catalog.sessions(limit=bad)
            errors.append(info.value.code)
        return big, default, errors

    big, default, errors = backend.run(body)
    assert len(big.items) == MAX_LIMIT and big.next_cursor is not None
    assert len(default.items) == 50
    assert errors == ["bad_filter"] * 4


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "not a cursor!", "AAAA", _b64(b"not json"), _b64(b"{}"), _b64(json.dumps(["sessions", "x"]).encode()),
    _b64(json.dumps(["sessions", 1, "x"]).encode()), _b64(json.dumps(["alerts", "x", "y"]).encode()),
    "A" * 600, "ünïcode",
])
def test_a_malformed_or_foreign_cursor_is_bad_cursor(backend, cursor):
    async def body(catalog):
        await catalog.session_started(record("s1"))
        with pytest.raises(CatalogQueryError) as info:
            await catalog.sessions(cursor=cursor)
        return info.value

    error = backend.run(body)
    assert error.code == "bad_cursor" and "next_cursor" in error.message


def test_an_empty_cursor_is_the_first_page(backend):
    """`?cursor=` with nothing after it: as if no cursor was sent."""
    async def body(catalog):
        await catalog.session_started(record("s1"))
        return await catalog.sessions(cursor="")

    assert [item["session_id"] for item in backend.run(body).items] == ["s1"]


def test_an_alert_cursor_does_not_page_sessions_and_back(backend):
    async def body(catalog):
        await catalog.session_started(record("s1"))
        await catalog.session_started(record("s2", started=5))
        sessions = await catalog.sessions(limit=1)
        with pytest.raises(CatalogQueryError) as info:
            await catalog.alerts(cursor=sessions.next_cursor)
        return info.value.code

    assert backend.run(body) == "bad_cursor"
