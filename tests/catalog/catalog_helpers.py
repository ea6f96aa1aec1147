"""Recordings folders for the catalog tests: session.json as the recorder writes it, events, access log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from stream.server.catalog.schema import metadata

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    """T0 plus `seconds`, as the recorder writes times."""
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def record(session_id: str, started: float = 0.0, status: str = "complete", **fields) -> dict:
    """A session.json of a session that started `started` seconds after T0."""
    body = {
        "session_id": session_id, "status": status, "started_at": at(started), "sample_rate": 16000,
        "sample_format": "int16", "audio_kept": True, "source": "native", "encoding": "pcm_s16le",
        "channels": 1, "context": None, "profile": "default", "metadata": {}, "model_id": "tiny",
        "random_weights": True, "planted": None, "precision": "float32", "parameters": {"window_seconds": 0.4},
        "record": "audio+events",
    }
    if status != "live":
        body.update(ended_at=at(started + 60), duration_seconds=60.0, summary={"session_id": session_id, "status": status})
    body.update(fields)
    return body


REVIEW = {"type": "review", "leading": "fearful", "runner_up": "disgusted", "gap": 0.02, "start": 1.5, "end": 2.5}
FLAGGED = {"type": "transition", "time": 3.0, "confirmed_at": 3.3, "segment": 0, "from": "fearful",
           "to": "disgusted", "flagged": True}
DUAL = {"type": "dual_emotion", "emotions": ["fearful", "sad"], "start": 4.0, "end": 5.0}
WITHHELD = {"type": "segment", "index": 1, "start": 6.0, "end": 7.0, "decision": {"withheld": "too quiet to call"}}
WINDOW = {"type": "window", "index": 0, "segment": 0, "start": 0.0, "end": 0.4, "dominant": "neutral"}


def write_session(root: Path, doc: dict, events: list[dict] = ()) -> Path:
    """A session folder as SessionRecorder leaves it: session.json, events.jsonl (compact lines)."""
    folder = root / doc["session_id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "session.json").write_text(json.dumps(doc, indent=2))
    lines = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    (folder / "events.jsonl").write_text(lines)
    return folder


async def dump(catalog) -> dict[str, list[tuple]]:
    """Every row of every catalog table, sorted: two dumps are equal when the catalogs are."""
    out = {}
    async with catalog.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            out[table.name] = sorted((tuple(repr(v) for v in row) for row in rows))
    return out
