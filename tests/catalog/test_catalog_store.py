"""The catalog's single writes and look-ups on both databases, and text no database would take as is."""

from __future__ import annotations

import asyncio
import stat

from catalog_helpers import at, record
from stream.server.alerts import Alert
from stream.server.catalog import Catalog, SessionFilters


def test_a_session_ends_as_session_json_says(backend):
    async def body(catalog):
        await catalog.session_started(record("call", status="live"))
        live = await catalog.session("call")
        ended = await catalog.session_ended("call", "disconnected", "2025-03-01T10:00:00+01:00", 12.5, {"events": {}})
        unknown = await catalog.session_ended("nobody", "complete", at(1), 1.0, None)
        return live, ended, unknown, await catalog.session("call"), await catalog.session("nobody")

    live, ended, unknown, call, nobody = backend.run(body)
    assert (live["live"], live["status"], live["ended_at"]) == (True, "live", None)
    assert (ended, unknown, nobody) == (True, False, None)
    assert (call["status"], call["ended_at"], call["duration_seconds"], call["summary"], call["live"]) == (
        "disconnected", "2025-03-01T09:00:00.000000+00:00", 12.5, {"events": {}}, False)


def test_starting_a_session_again_updates_it_and_keeps_its_alerts(backend):
    async def body(catalog):
        await catalog.session_started(record("call", status="live", parties=["a", "b"], metadata={"k": "1"}))
        await catalog.add_alert(Alert("call#1", "call", 1, "review", "a", 1.0, "x"))
        await catalog.session_started(record("call", started=5, parties=["b"], metadata={"k": "2"}))
        return [await catalog.sessions(f) for f in (
            SessionFilters(party="a"), SessionFilters(party="b"), SessionFilters(metadata=(("k", "2"),)),
            SessionFilters(alert_kind="review", started_from=at(5)))]

    by_a, by_b, by_k, by_kind = backend.run(body)
    assert by_a.items == [] and [i["session_id"] for i in by_b.items] == ["call"]
    assert by_k.items[0]["alerts"] == 1 and by_k.items[0]["started_at"] == at(5)
    assert [i["session_id"] for i in by_kind.items] == ["call"]  # the alert kind follows the new start time


def test_text_no_database_takes_as_is_is_stored_safely(backend):
    """NUL (refused by PostgreSQL text), a lone surrogate (not UTF-8), emoji and CJK in every text field."""
    odd = "a\x00b \ud800 😀 通话"
    doc = record("odd", context=odd, source="x\x00y", metadata={"k\x00": odd, "emoji": "😀"}, parties=["caller"])

    async def body(catalog):
        await catalog.session_started(doc)
        item = await catalog.session("odd")
        found = await catalog.sessions(SessionFilters(context="😀 通话"))
        by_meta = await catalog.sessions(SessionFilters(metadata=(("emoji", "😀"),)))
        return item, found, by_meta

    item, found, by_meta = backend.run(body)
    assert item["context"] == "ab ? 😀 通话" and item["source"] == "xy"
    assert item["metadata"] == doc["metadata"]  # JSON keeps everything, escaped
    assert [i["session_id"] for i in found.items] == ["odd"] and [i["session_id"] for i in by_meta.items] == ["odd"]


def test_access_entries_are_kept_once(backend):
    entry = {"time": "2025-03-01T09:00:00.123+00:00", "action": "download", "session_id": "s1", "by": "watch",
             "client": "127.0.0.1", "file": "audio.wav"}

    async def body(catalog):
        return [await catalog.log_access(entry), await catalog.log_access(dict(entry)),
                await catalog.log_access({**entry, "file": "events.jsonl"})]

    assert backend.run(body) == [True, False, True]


def test_retention_finds_sessions_that_ended_before_a_time(backend):
    async def body(catalog):
        for n in range(5):
            await catalog.session_started(record(f"s{n}", started=n * 100))  # each ends 60 s after its start
        await catalog.session_started(record("live", started=0, status="live"))
        return await catalog.ended_before(at(261)), await catalog.ended_before(at(261), limit=1)

    assert backend.run(body) == (["s0", "s1", "s2"], ["s0"])


def test_the_sqlite_catalog_is_private_and_in_wal_mode(tmp_path):
    async def body():
        catalog = await Catalog.open(str(tmp_path / "recordings" / ".catalog.sqlite3"))
        async with catalog.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        await catalog.close()
        return mode, keys

    mode, keys = asyncio.run(body())
    assert (mode, keys) == ("wal", 1)
    path = tmp_path / "recordings" / ".catalog.sqlite3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_no_sqlite_statement_runs_on_the_event_loop_thread(tmp_path):
    """aiosqlite runs every statement in its own thread: SQLite's trace callback says which thread ran it."""
    import threading

    from sqlalchemy import event
    from sqlalchemy.util import await_only

    ran_on: set[int] = set()

    def trace(dbapi_connection, _record):
        aiosqlite_connection = dbapi_connection.driver_connection
        await_only(aiosqlite_connection.set_trace_callback(lambda _sql: ran_on.add(threading.get_ident())))

    async def body():
        catalog = await Catalog.open(str(tmp_path / "c.sqlite3"))
        event.listen(catalog.engine.sync_engine, "connect", trace)
        await catalog.session_started(record("s1", parties=["a"]))
        await catalog.add_alert(Alert("s1#1", "s1", 1, "review", "a", 1.0, "x"))
        await catalog.sessions(SessionFilters(party="a", context="x"))
        await catalog.acknowledge("s1#1", "me")
        await catalog.close()
        return threading.get_ident()

    loop_thread = asyncio.run(body())
    assert ran_on and loop_thread not in ran_on
