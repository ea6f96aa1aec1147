"""Putting the catalog in line with a recordings folder: `rebuild` (everything) and `reconcile` (what differs).

`rebuild` re-reads every session.json and events.jsonl and the access log; `reconcile`, run as
the server starts, reads every session.json but re-reads the events only of sessions whose row
is missing or differs, so a crash between a recording's write and the catalog's loses nothing
and costs little. Both upsert in batches, one transaction each, and remove the rows of folders
that are gone (never those of `live_ids`); both leave acknowledgements where they are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from models.errors import ConfigError

from . import writes
from .records import access_row, session_row
from .scan import Recorded, access_entries, read_record, read_sessions, session_folders
from .schema import access_log, sessions
from .store import Catalog

BATCH = 250  # sessions per transaction: big enough to amortize a commit, small enough not to hold the lock long
ACCESS_BATCH = 2000
ANALYZE_AFTER = 1000  # sessions a reconcile changed, past which the planner's statistics are refreshed


@dataclass(frozen=True)
class SyncReport:
    """What a rebuild or reconcile did."""

    indexed: int  # sessions (re)written, with their alerts
    alerts: int  # alerts found in the events of those sessions
    removed: int  # rows whose folder is gone
    access_entries: int  # access-log entries added
    seconds: float

    def __str__(self) -> str:
        return (f"{self.indexed} session(s) indexed with {self.alerts} alert(s), {self.removed} removed, "
                f"{self.access_entries} access-log entries added in {self.seconds:.1f} s")


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    return (items[i : i + size] for i in range(0, len(items), size))


async def _write(catalog: Catalog, batch: list[Recorded]) -> int:
    """Index one batch of sessions with their alerts in one transaction; returns the alerts written."""
    records = [r.record for r in batch]
    started = {row["session_id"]: row["started_at"] for row in map(session_row, records)}
    found = {r.record["session_id"]: r.alerts or [] for r in batch}
    live = [r.record["session_id"] for r in batch if r.record.get("status") == "live"]
    async with catalog.engine.begin() as conn:
        await writes.write_sessions(conn, records)
        await writes.write_alerts(conn, found, started, keep_later=live)
        await writes.recount(conn, started)
    return sum(len(r.alerts or ()) for r in batch)


async def _index(catalog: Catalog, root: Path, session_ids: Sequence[str]) -> tuple[set[str], int]:
    """Index these sessions from their folders, reading the next batch while writing one.

    Returns the ids indexed (unreadable folders are skipped) and how many alerts they hold.
    """
    indexed: set[str] = set()
    alerts = 0
    batches = list(_batches(list(session_ids), BATCH))
    pending = asyncio.ensure_future(asyncio.to_thread(read_sessions, root, batches[0], True)) if batches else None
    for i in range(len(batches)):
        batch = await pending
        if i + 1 < len(batches):
            pending = asyncio.ensure_future(asyncio.to_thread(read_sessions, root, batches[i + 1], True))
        alerts += await _write(catalog, batch)
        indexed.update(r.record["session_id"] for r in batch)
    return indexed, alerts


def _still_gone(root: Path, session_ids: list[str]) -> list[str]:
    """Those of `session_ids` with no readable session.json now (one may have started since the scan)."""
    return [sid for sid in session_ids if read_record(root, sid) is None]


async def _remove_gone(catalog: Catalog, root: Path, present: set[str], live_ids: Iterable[str]) -> int:
    """Delete the rows of sessions whose folder is gone (but live ones)."""
    async with catalog.engine.connect() as conn:
        stored = set((await conn.execute(select(sessions.c.session_id))).scalars())
    gone = await asyncio.to_thread(_still_gone, root, sorted(stored - present - set(live_ids)))
    for batch in _batches(gone, BATCH):
        async with catalog.engine.begin() as conn:
            await writes.delete_sessions(conn, batch)
    return len(gone)


async def _sync_access(catalog: Catalog, root: Path, since: str | None) -> int:
    """Add the access log's entries from `since` on (None: all); returns how many were new."""
    entries = await asyncio.to_thread(access_entries, root)
    if since:  # entries of the same instant as the newest one may be new: the insert skips known ones
        entries = [e for e in entries if access_row(e)["time"] >= since]
    added = 0
    for batch in _batches(entries, ACCESS_BATCH):
        async with catalog.engine.begin() as conn:
            added += await writes.write_access(conn, batch)
    return added


def _folder(recordings: str | Path) -> Path:
    """The recordings folder; ConfigError when there is none (a mistyped path would empty the catalog)."""
    root = Path(recordings)
    if not root.is_dir():
        raise ConfigError(f"no recordings folder at {root}: nothing to index (the catalog is left as it is)")
    return root


async def rebuild(catalog: Catalog, recordings: str | Path, live_ids: Iterable[str] = ()) -> SyncReport:
    """Re-index a whole recordings folder: every session, alert and access-log entry. Running it twice changes nothing."""
    began, root = time.monotonic(), _folder(recordings)
    folders = await asyncio.to_thread(session_folders, root)
    indexed, alerts = await _index(catalog, root, folders)
    removed = await _remove_gone(catalog, root, indexed, live_ids)  # an unreadable session.json is no session
    added = await _sync_access(catalog, root, None)
    await catalog.analyze()
    return SyncReport(len(indexed), alerts, removed, added, time.monotonic() - began)


def _digests(root: Path) -> dict[str, str]:
    """Each readable session folder's row digest (records.record_hash), by session id."""
    recorded = read_sessions(root, session_folders(root), with_alerts=False)
    return {r.record["session_id"]: session_row(r.record)["record_hash"] for r in recorded}


async def reconcile(catalog: Catalog, recordings: str | Path, live_ids: Iterable[str] = ()) -> SyncReport:
    """Index what the catalog misses or has wrong, drop what is gone: at server start, after `repair`."""
    began, root = time.monotonic(), _folder(recordings)
    found = await asyncio.to_thread(_digests, root)  # every session.json, read and digested off the loop
    async with catalog.engine.connect() as conn:
        stored = dict((await conn.execute(select(sessions.c.session_id, sessions.c.record_hash))).all())
        since = (await conn.execute(select(func.max(access_log.c.time)))).scalar()
    changed = sorted(sid for sid, digest in found.items() if stored.get(sid) != digest)
    indexed, alerts = await _index(catalog, root, changed)
    removed = await _remove_gone(catalog, root, set(found), live_ids)
    added = await _sync_access(catalog, root, since)
    if len(indexed) + removed > ANALYZE_AFTER:
        await catalog.analyze()
    return SyncReport(len(indexed), alerts, removed, added, time.monotonic() - began)


def rebuild_folder(recordings: str | Path, url: str) -> SyncReport:
    """`emostream catalog rebuild`: open the catalog at `url`, rebuild it from `recordings`, close it."""
    _folder(recordings)

    async def run() -> SyncReport:
        catalog = await Catalog.open(url)
        try:
            return await rebuild(catalog, recordings)
        finally:
            await catalog.close()

    return asyncio.run(run())


__all__ = ["BATCH", "SyncReport", "rebuild", "rebuild_folder", "reconcile"]
