"""Deleting recordings: one on request (`DELETE /api/sessions/{id}`) or all past the retention period.

A session still being recorded is never deleted: not one live in this process (the caller's
`live` ids), nor one whose session.json says "live", which another process or replica sharing the
recordings folder may be writing. Every deletion goes to the access log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from datetime import datetime
from pathlib import Path

from models.errors import EmostreamError

from .audit import AccessLog
from .recording import SESSION_FILE, list_sessions, validate_session_id

log = logging.getLogger("emostream.server")
MAX_SWEEP_PERIOD = 3600.0  # seconds between retention sweeps (shorter for short retention)


class SessionBusy(EmostreamError):
    """The session is live: it cannot be deleted now (409)."""

    code = "session_live"


def recorded_live(folder: Path) -> bool:
    """True while the folder's session.json says "live": some server is still writing it."""
    # A server that died leaves "live" behind until a restart repairs it: refusing meanwhile is safe.
    try:
        return json.loads((folder / SESSION_FILE).read_bytes()).get("status") == "live"
    except (OSError, ValueError, RecursionError, AttributeError):  # unreadable or not an object: nobody is writing it
        return False


def delete_session(root: Path, session_id: str, audit: AccessLog, by: str, client: str | None = None,
                   live: set[str] = frozenset(), reason: str = "request") -> bool:
    """Delete one recorded session's folder; False when there is none. Raises SessionBusy for live ones."""
    validate_session_id(session_id)
    folder = Path(root) / session_id
    if session_id in live or recorded_live(folder):
        raise SessionBusy(session_id)
    if not (folder / SESSION_FILE).is_file():
        return False
    shutil.rmtree(folder)
    audit.record("delete", session_id, by, client, reason=reason)
    return True


def _ended(meta: dict, folder: Path) -> float:
    """When a session ended (epoch seconds): its ended_at, else its folder's last change."""
    try:
        return datetime.fromisoformat(str(meta["ended_at"])).timestamp()
    except (KeyError, ValueError):
        return folder.stat().st_mtime


def expired(root: Path, keep_seconds: float, live: set[str], now: float | None = None) -> list[str]:
    """Ids of sessions that ended more than `keep_seconds` ago (never live ones)."""
    now = time.time() if now is None else now
    out = []
    for meta in list_sessions(root):
        sid = str(meta.get("session_id"))
        folder = Path(root) / sid
        if sid in live or meta.get("status") == "live" or not folder.is_dir():
            continue
        if now - _ended(meta, folder) > keep_seconds:
            out.append(sid)
    return out


def sweep(root: Path, keep_seconds: float, live: set[str], audit: AccessLog) -> list[str]:
    """Delete every session past the retention period; returns their ids."""
    deleted = []
    for sid in expired(root, keep_seconds, live):
        try:
            if delete_session(root, sid, audit, "retention", live=live, reason=f"older than {keep_seconds:g} s"):
                deleted.append(sid)
        except (OSError, SessionBusy) as exc:
            log.warning("retention: cannot delete %s: %s", sid, exc)
    if deleted:
        log.info("retention: deleted %d session(s) older than %g s", len(deleted), keep_seconds)
    return deleted


async def sweep_forever(root: Path, keep_seconds: float, live_ids, audit: AccessLog) -> None:
    """Sweep now and then every min(an hour, a quarter of the retention period)."""
    period = max(0.5, min(MAX_SWEEP_PERIOD, keep_seconds / 4))
    while True:
        await asyncio.to_thread(sweep, root, keep_seconds, set(live_ids()), audit)
        await asyncio.sleep(period)
