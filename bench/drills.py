"""Recordings made for replay drills, load and tests: valid events with alerts at known times, no model needed.

The events are built from the engine's own event types (so `/ws/replay` takes them as a live
session could have published them) and marked as random-weight output: they exercise the
oversight path (catalog, feed, alerts), not emotion recognition.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from models.labels import LABELS
from stream.decision.rules import DualEmotion, Review
from stream.engine.events import Info, Window, to_dict

HOP = 0.1


def _scores(lead: str) -> dict[str, float]:
    rest = (1.0 - 0.6) / (len(LABELS) - 1)
    return {label: (0.6 if label == lead else rest) for label in LABELS}


def drill_events(seconds: float, party: str | None = None, alert_every: float = 2.0) -> list[dict]:
    """An info event, a window every HOP seconds, and a review or dual report (an alert) every `alert_every` s."""
    info = Info("synthetic (random weights)", True, LABELS, {"window_seconds": 0.4}, warning="random weights: no meaning")
    events = [to_dict(info)]
    n_alerts = 0
    for i in range(round(seconds / HOP)):
        start = round(i * HOP, 3)
        lead = LABELS[(i // 20) % len(LABELS)]
        events.append(to_dict(Window(i, 0, start, round(start + 0.4, 3), _scores(lead), _scores(lead), lead, 0.6)))
        if (i + 1) % round(alert_every / HOP) == 0:
            n_alerts += 1
            end = round(start + 0.4, 3)
            if n_alerts % 2:
                alert = Review(0, max(0.0, end - 1.0), end, "fearful", "disgusted", 0.02, "too close to call")
            else:
                alert = DualEmotion(0, max(0.0, end - 1.0), end, ("fearful", "sad"), {"fearful": 0.4, "sad": 0.38},
                                    0.02, "two high and close")
            events.append(to_dict(alert))
    if party is not None:
        events = [{**e, "party": party} for e in events]
    return events


def write_drill(root: Path, session_id: str, seconds: float = 6.0, *, parties: tuple[str, ...] = (),
                metadata: dict | None = None, context: str | None = None, alert_every: float = 2.0,
                started: datetime | None = None) -> Path:
    """A completed recording (session.json, events.jsonl) as the server leaves one, for `emostream replay`."""
    started = started or datetime.now(timezone.utc) - timedelta(minutes=5)
    doc = {
        "session_id": session_id, "status": "complete", "started_at": started.isoformat(),
        "sample_rate": 16000, "sample_format": "int16", "audio_kept": False, "source": "native",
        "encoding": "pcm_s16le", "channels": max(1, len(parties)), "context": context, "profile": "general",
        "metadata": metadata or {}, "model_id": "synthetic (random weights)", "random_weights": True,
        "planted": None, "precision": "float32", "parameters": {"window_seconds": 0.4}, "record": "events",
        "ended_at": (started + timedelta(seconds=seconds)).isoformat(), "duration_seconds": seconds, "summary": {},
    }
    if parties:
        doc["parties"] = list(parties)
    events = [e for p in (parties or (None,)) for e in drill_events(seconds, p, alert_every)]
    events.sort(key=lambda e: (e["type"] != "info", e.get("end", 0.0)))  # as a live session published them
    folder = root / session_id
    folder.mkdir(parents=True)
    (folder / "session.json").write_text(json.dumps(doc, indent=2))
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder
