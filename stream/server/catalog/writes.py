"""The catalog's writes as functions of one open transaction, shared by the live server and rebuilds.

Every write is an upsert keyed by what the recordings folder names (session id, alert id,
the access entry's hash), so writing the same thing twice changes nothing, and what only the
catalog knows (acknowledgements, assignees, when a live alert fired) is never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..alerts import Alert
from .records import (
    access_row, alert_row, alert_time, context_rows, metadata_rows, party_rows, record_hash, session_row,
)
from .schema import access_log, alert_kinds, alerts, contexts, parties, session_metadata, sessions

_COUNTS = ("alerts", "open_alerts")  # the catalog's own columns: kept when session.json is written again
_EVENT_FIELDS = ("seq", "kind", "party", "stream_time", "text")  # what events.jsonl says about an alert


def _insert(conn: AsyncConnection, table):
    """INSERT with the dialect's ON CONFLICT clauses."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


async def write_sessions(conn: AsyncConnection, docs: Sequence[Mapping]) -> None:
    """Upsert sessions from their session.json dicts with their facets; `recount` them after (alert kinds
    carry started_at, which this may change)."""
    if not docs:
        return
    rows = [{**session_row(doc), "alerts": 0, "open_alerts": 0} for doc in docs]  # counts: set by recount
    stmt = _insert(conn, sessions)
    keep = {c.name: stmt.excluded[c.name] for c in sessions.c if c.name != "session_id" and c.name not in _COUNTS}
    await conn.execute(stmt.on_conflict_do_update(index_elements=[sessions.c.session_id], set_=keep), rows)
    ids = [row["session_id"] for row in rows]
    for table, make in ((parties, party_rows), (session_metadata, metadata_rows), (contexts, context_rows)):
        await conn.execute(delete(table).where(table.c.session_id.in_(ids)))
        facets = [facet for row, doc in zip(rows, docs) for facet in make(row, doc)]
        if facets:  # an upsert: another server indexing the same session may have written these rows meanwhile
            stmt = _insert(conn, table)
            key = [c for c in table.primary_key.columns]
            fresh = {c.name: stmt.excluded[c.name] for c in table.c if c not in key}
            await conn.execute(stmt.on_conflict_do_update(index_elements=key, set_=fresh), facets)


async def end_session(conn: AsyncConnection, session_id: str, status: str, ended_at: str,
                      duration: float | None, summary: Mapping | None) -> bool:
    """Write a session's end as its recorder closes session.json; False when the catalog lacks it."""
    kept = [c for c in sessions.c if c.name not in _COUNTS]
    row = (await conn.execute(select(*kept).where(sessions.c.session_id == session_id))).mappings().first()
    if row is None:
        return False
    ended = {"status": status, "ended_at": ended_at, "duration_seconds": duration, "summary": dict(summary or {})}
    # The digest of the row session.json now makes, so the next reconcile finds nothing to re-read.
    ended["record_hash"] = record_hash({**row, **ended})
    await conn.execute(update(sessions).where(sessions.c.session_id == session_id).values(**ended))
    return True


async def write_alerts(conn: AsyncConnection, recorded: Mapping[str, Sequence[Alert]], started: Mapping[str, str],
                       keep_later: Iterable[str] = ()) -> None:
    """Make each session's alerts those found in its events (acknowledgements of kept ones stay).

    Sessions in `keep_later` (live ones) keep alerts numbered past the recorded ones: the live
    server may have written them since the events were read.
    """
    rows = [alert_row(a, alert_time(started[sid], a.stream_time)) for sid, found in recorded.items() for a in found]
    if rows:
        stmt = _insert(conn, alerts)
        fresh = {name: stmt.excluded[name] for name in _EVENT_FIELDS}
        await conn.execute(stmt.on_conflict_do_update(index_elements=[alerts.c.id], set_=fresh), rows)
    # Alerts past the recorded ones were never written to disk (a crash): the recording is the truth.
    keep = set(keep_later)
    trim = [{"sid": sid, "n": len(found)} for sid, found in recorded.items() if sid not in keep]
    if trim:
        await conn.execute(
            delete(alerts).where(alerts.c.session_id == bindparam("sid"), alerts.c.seq > bindparam("n")), trim)


async def add_alert(conn: AsyncConnection, alert: Alert, created_at: str) -> bool:
    """Insert a newly raised alert; False when it was there already."""
    await lock_session(conn, alert.session_id)
    stmt = _insert(conn, alerts).on_conflict_do_nothing(index_elements=[alerts.c.id])
    inserted = (await conn.execute(stmt, alert_row(alert, created_at))).rowcount == 1
    if inserted:
        await recount(conn, [alert.session_id])
    return inserted


async def recount(conn: AsyncConnection, session_ids: Iterable[str]) -> None:
    """Set the sessions' alert counts and alert kinds from the alerts table."""
    ids = list(session_ids)
    if not ids:
        return
    of_session = alerts.c.session_id == sessions.c.session_id
    # Counting open ones with a CASE, not `AND state = 'open'`: that clause tempts SQLite into walking
    # ix_alerts_state (every open alert) for each session instead of the session's few alerts.
    is_open = case((alerts.c.state == "open", 1), else_=0)
    await conn.execute(
        update(sessions).where(sessions.c.session_id.in_(ids)).values(
            alerts=select(func.count()).where(of_session).scalar_subquery(),
            open_alerts=select(func.coalesce(func.sum(is_open), 0)).where(of_session).scalar_subquery(),
        )
    )
    await conn.execute(delete(alert_kinds).where(alert_kinds.c.session_id.in_(ids)))
    kinds = (select(alerts.c.session_id, alerts.c.kind, sessions.c.started_at).distinct()
             .join_from(alerts, sessions, of_session).where(alerts.c.session_id.in_(ids)))
    stmt = _insert(conn, alert_kinds).from_select(["session_id", "kind", "started_at"], kinds)
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=list(alert_kinds.primary_key.columns)))


async def lock_session(conn: AsyncConnection, session_id: str) -> None:
    """Lock a session's row for this transaction (PostgreSQL; SQLite locks the whole file on write).

    Every write takes a session's row before its alerts, so two writers never wait on each other in a circle.
    """
    await conn.execute(select(sessions.c.session_id).where(sessions.c.session_id == session_id).with_for_update())


async def write_access(conn: AsyncConnection, entries: Sequence[Mapping]) -> int:
    """Insert access-log entries not there yet; returns how many were new."""
    if not entries:
        return 0
    stmt = _insert(conn, access_log).on_conflict_do_nothing(index_elements=[access_log.c.entry_key])
    # RETURNING names the rows really inserted (a driver's executemany row count may not be kept).
    result = await conn.execute(stmt.returning(access_log.c.entry_key), [access_row(entry) for entry in entries])
    return len(result.all())


async def delete_sessions(conn: AsyncConnection, session_ids: Sequence[str]) -> int:
    """Delete sessions with their parties, metadata and alerts (ON DELETE CASCADE); returns how many."""
    if not session_ids:
        return 0
    return (await conn.execute(delete(sessions).where(sessions.c.session_id.in_(list(session_ids))))).rowcount


__all__ = ["add_alert", "delete_sessions", "end_session", "lock_session", "recount", "write_access", "write_alerts", "write_sessions"]
