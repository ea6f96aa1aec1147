"""session.json as catalog rows, and catalog rows as the items the API lists.

A session item is what `GET /api/sessions` listed before the catalog (the session.json, but
its engine `parameters`, which are large and the same for every session and stay in
`GET /api/sessions/{id}`), plus `replay`, `alerts`, `open_alerts` and `live`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from ..alerts import Alert
from .schema import MAX_KEY, MAX_VALUE

# session.json keys with a column of their own; the rest go to `details`.
COLUMN_KEYS = ("session_id", "started_at", "ended_at", "status", "source", "context", "profile",
               "duration_seconds", "record", "model_id", "random_weights", "metadata", "parties", "summary")
LEFT_OUT = frozenset({"parameters", "events", "audio_bytes"})  # not listed: see the module docstring


def iso_utc(value: str) -> str:
    """An ISO 8601 time as UTC with fixed-width microseconds (naive means UTC); ValueError if it is none."""
    when = datetime.fromisoformat(str(value).strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _time(value) -> str | None:
    """A recorded time for a column: normalized when it parses, else its text (still shown, sorts oddly)."""
    if value is None:
        return None
    try:
        return iso_utc(value)
    except (ValueError, TypeError, OverflowError):
        return clean(str(value))[:40]


def clean(text: str) -> str:
    """`text` as every database stores it: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    text = text.replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def _text(value, limit: int | None = None) -> str | None:
    if value is None:
        return None
    text = clean(value if isinstance(value, str) else json.dumps(value))
    return text[:limit] if limit else text


def _flag(value) -> bool | None:
    return None if value is None else bool(value)


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def party_names(doc: Mapping) -> list[str]:
    """The party names session.json lists (strings only), in order."""
    parties = doc.get("parties")
    return [p for p in parties if isinstance(p, str)] if isinstance(parties, list) else []


def session_row(doc: Mapping) -> dict:
    """The `sessions` row of one session.json (the alert counts are the catalog's own)."""
    metadata = doc.get("metadata")
    row = {
        "session_id": str(doc["session_id"]),
        "started_at": _time(doc.get("started_at")) or "",
        "ended_at": _time(doc.get("ended_at")),
        "status": _text(doc.get("status"), 32) or "unknown",
        "source": _text(doc.get("source"), 32),
        "context": _text(doc.get("context")),
        "profile": _text(doc.get("profile"), 64),
        "duration_seconds": _float(doc.get("duration_seconds")),
        "record": _text(doc.get("record"), 16),
        "replay": is_replay(doc),
        "model_id": _text(doc.get("model_id")),
        "random_weights": _flag(doc.get("random_weights")),
        "metadata": metadata if isinstance(metadata, dict) else None,
        "parties": party_names(doc) or None,
        "summary": doc.get("summary"),
        "details": {k: v for k, v in doc.items() if k not in COLUMN_KEYS and k not in LEFT_OUT and k != "replay"},
    }
    row["record_hash"] = record_hash(row)
    return row


def record_hash(row: Mapping) -> str:
    """A digest of a session row as session.json makes it: equal digests, nothing to re-index."""
    body = json.dumps({k: v for k, v in row.items() if k != "record_hash"}, sort_keys=True, ensure_ascii=True,
                      default=repr)
    return hashlib.sha256(body.encode()).hexdigest()


def is_replay(doc: Mapping) -> bool:
    """A replayed recording: its `replay` flag, else `"replay": true` in its metadata or the "replay" source."""
    # The monitor feed's rule (stream.server.monitor_feed.is_replay), and the replay protocol's source.
    if "replay" in doc:
        return bool(doc["replay"])
    metadata = doc.get("metadata")
    return (isinstance(metadata, dict) and metadata.get("replay") is True) or doc.get("source") == "replay"


def scalar_text(value) -> str | None:
    """A metadata scalar as `key=value` filters name it ("abc", "42", "1.5", "true", "null"); None for others."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def flat_metadata(metadata) -> dict[str, str]:
    """Top-level scalars, and the scalars of top-level objects as "outer.inner"; too long ones left out."""
    flat: dict[str, str] = {}
    if not isinstance(metadata, dict):
        return flat
    for key, value in metadata.items():
        inner = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in inner:
            name = key if sub is None else f"{key}.{sub}"
            text = scalar_text(item)
            if text is not None and len(name) <= MAX_KEY and len(text) <= MAX_VALUE:
                flat[clean(name)] = clean(text)
    return flat


def metadata_rows(row: Mapping, doc: Mapping) -> list[dict]:
    """The `session_metadata` rows of one session.json (`row`: its `sessions` row)."""
    return [{"session_id": row["session_id"], "key": k, "value": v, "started_at": row["started_at"]}
            for k, v in flat_metadata(doc.get("metadata")).items()]


def party_rows(row: Mapping, doc: Mapping) -> list[dict]:
    """The `parties` rows of one session.json."""
    return [{"session_id": row["session_id"], "party": p, "started_at": row["started_at"]}
            for p in dict.fromkeys(party_names(doc))]


def context_rows(row: Mapping, doc: Mapping) -> list[dict]:
    """The `contexts` row of one session.json, if it has a context."""
    if not row["context"]:
        return []
    return [{"session_id": row["session_id"], "folded": fold(row["context"]), "started_at": row["started_at"]}]


def fold(text: str) -> str:
    """`text` as the context filter compares it: case-folded (Unicode-wide, the same on both databases)."""
    return text.casefold()


def session_item(row: Mapping) -> dict:
    """A `sessions` row as the API lists it."""
    item = dict(row.get("details") or {})
    item.update({k: row[k] for k in COLUMN_KEYS})
    item["parties"] = item["parties"] or []
    item.update(replay=row["replay"], alerts=row["alerts"], open_alerts=row["open_alerts"],
                live=row["status"] == "live")
    return item


def alert_time(started_at: str, stream_time: float | None) -> str:
    """When a recorded alert happened: the session's start plus its stream time (rebuilds stay identical)."""
    try:
        start = datetime.fromisoformat(started_at)
    except ValueError:
        return started_at
    return (start + timedelta(seconds=stream_time or 0.0)).isoformat(timespec="microseconds")


def alert_row(alert: Alert, created_at: str) -> dict:
    """The `alerts` row of a newly raised alert (open, unassigned)."""
    return {"id": alert.id, "session_id": alert.session_id, "seq": alert.seq, "kind": alert.kind,
            "party": alert.party, "stream_time": _float(alert.stream_time), "text": clean(alert.text),
            "created_at": created_at, "state": "open"}


def alert_item(row: Mapping) -> dict:
    """An `alerts` row as the API lists it: the monitor feed's Alert (docs/monitor.md), `at` when it was raised."""
    ack = ({"by": row["ack_by"], "at": row["ack_at"], "note": row["ack_note"], "assignee": row["assignee"]}
           if row["state"] == "acknowledged" else None)
    return {"id": row["id"], "session_id": row["session_id"], "seq": row["seq"], "kind": row["kind"],
            "party": row["party"], "stream_time": row["stream_time"], "text": row["text"], "at": row["created_at"],
            "state": row["state"], "ack": ack}


def access_row(entry: Mapping) -> dict:
    """The `access_log` row of one `.access.jsonl` entry (stream.server.audit)."""
    key = hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()
    details = {k: v for k, v in entry.items() if k not in ("time", "action", "session_id", "by", "client")}
    return {"entry_key": key, "time": _time(entry.get("time")) or "", "action": _text(entry.get("action"), 32) or "",
            "session_id": _text(entry.get("session_id"), 64), "credential": _text(entry.get("by")),
            "client": _text(entry.get("client")), "details": details or None}


def access_item(row: Mapping) -> dict:
    """An `access_log` row as `.access.jsonl` wrote it."""
    return {"time": row["time"], "action": row["action"], "session_id": row["session_id"],
            "by": row["credential"], "client": row["client"], **(row["details"] or {})}


__all__ = ["access_item", "access_row", "alert_item", "alert_row", "alert_time", "clean", "flat_metadata",
           "context_rows", "fold", "is_replay", "iso_utc", "record_hash", "metadata_rows", "party_rows", "scalar_text", "session_item", "session_row"]
