"""Reading a recordings folder for the catalog: blocking file I/O, run in worker threads.

Alerts come from events.jsonl in recorded order through stream.server.alerts, exactly as the
live server numbers them. Window events (ten a second, most of every file) never raise one,
so their lines are skipped without being parsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stream.protocol.native import SESSION_ID_RE

from ..alerts import Alert, alerts_in
from ..audit import ACCESS_LOG
from ..recording import EVENTS_FILE, SESSION_FILE, _read_session_json

_WINDOW = b'"type":"window"'  # as the recorder writes every event: compact JSON


@dataclass(frozen=True)
class Recorded:
    """One session folder as the catalog indexes it: its session.json and, when read, its alerts."""

    record: dict  # session.json, its session_id the folder's name
    alerts: list[Alert] | None  # None: events.jsonl not read


def session_folders(root: Path) -> list[str]:
    """Names of the session folders under `root`, sorted (the catalog file and access log are not)."""
    if not root.is_dir():
        return []
    return sorted(e.name for e in root.iterdir() if SESSION_ID_RE.fullmatch(e.name) and e.is_dir())


def read_record(root: Path, session_id: str) -> dict | None:
    """A folder's session.json, its id the folder's name; None when unreadable."""
    record = _read_session_json(root / session_id / SESSION_FILE)
    if record is not None:
        record["session_id"] = session_id  # the folder is what the server serves and deletes
    return record


def _events(path: Path):
    """The event bodies of events.jsonl that can raise alerts, in order; torn or foreign lines skipped."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if _WINDOW in line:
                    continue
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(event, dict):
                    yield event
    except FileNotFoundError:
        return


def recorded_alerts(root: Path, session_id: str) -> list[Alert]:
    """Every alert a recorded session raised, numbered as the live server numbered them."""
    return alerts_in(session_id, _events(root / session_id / EVENTS_FILE))


def read_sessions(root: Path, session_ids: list[str], with_alerts: bool) -> list[Recorded]:
    """The readable ones of `session_ids`, with their alerts if asked."""
    out = []
    for sid in session_ids:
        record = read_record(root, sid)
        if record is not None:
            out.append(Recorded(record, recorded_alerts(root, sid) if with_alerts else None))
    return out


def access_entries(root: Path) -> list[dict]:
    """Every entry of the recordings' access log (stream.server.audit), unparsable lines skipped."""
    path = root / ACCESS_LOG
    if not path.exists():
        return []
    entries = []
    with open(path, "rb") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


__all__ = ["Recorded", "access_entries", "read_record", "read_sessions", "recorded_alerts", "session_folders"]
