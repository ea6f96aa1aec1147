"""Alerts: the events a supervisor must look at, found the same way live, on replay and on rebuild.

An alert is raised by one event of a session: a `review` (fear and disgust too close to call),
a flagged `transition` (fearful ↔ disgusted), a `dual_emotion` report, or a `segment` whose
fear/disgust call the quality gate withheld. Its id is the session id and the alert's running
number in that session's event order ("<session_id>#<n>", n from 1), so the live server, a
replay and `emostream catalog rebuild` (which reads `events.jsonl` in recorded order) give every
alert the same id, and writing it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ALERT_KINDS = ("review", "flagged", "dual", "withheld")
ID_SEPARATOR = "#"  # never in a session id (stream.protocol.native.SESSION_ID_RE)
MAX_TEXT_CHARS = 300


@dataclass(frozen=True)
class Alert:
    """One alert: which session and party, what kind, when in the stream, and a line of text."""

    id: str  # "<session_id>#<n>"
    session_id: str
    seq: int  # n: the alert's running number in its session, from 1
    kind: str  # one of ALERT_KINDS
    party: str | None  # the party whose event raised it, in a split session
    stream_time: float | None  # seconds into the party's audio where it happened
    text: str  # what happened, in words, for the alert queue

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def _evidence(event: dict) -> str:
    return f" — {event['evidence']}" if event.get("evidence") else ""


def describe(event: dict) -> tuple[str, float | None, str] | None:
    """(kind, stream time, text) when an event body (as recorded or sent) raises an alert, else None."""
    kind = event.get("type")
    if kind == "review":
        text = f"needs review: {event.get('leading')} vs {event.get('runner_up')} (gap {event.get('gap', 0):.0%})"
        return "review", event.get("start"), text + _evidence(event)
    if kind == "transition" and event.get("flagged"):
        return "flagged", event.get("time"), f"flagged transition {event.get('from')} → {event.get('to')}"
    if kind == "dual_emotion":
        emotions = " + ".join(event.get("emotions") or [])
        return "dual", event.get("start"), f"dual emotion: {emotions}{_evidence(event)}"
    if kind == "segment" and (event.get("decision") or {}).get("withheld"):
        return "withheld", event.get("start"), str(event["decision"]["withheld"])
    return None


class AlertCounter:
    """One session's alerts in event order: feed it every event body, get an Alert where one is raised."""

    def __init__(self, session_id: str, seen: int = 0):
        """`seen`: alerts the session raised before (a resumed or re-read session continues its numbering)."""
        self.session_id = session_id
        self.seq = seen

    def check(self, event: dict) -> Alert | None:
        """The alert this event raises, numbered, or None."""
        found = describe(event)
        if found is None:
            return None
        kind, time, text = found
        self.seq += 1
        if len(text) > MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - 1] + "…"
        return Alert(f"{self.session_id}{ID_SEPARATOR}{self.seq}", self.session_id, self.seq, kind,
                     event.get("party"), time, text)


def alerts_in(session_id: str, events) -> list[Alert]:
    """Every alert of a recorded session, from its event bodies in recorded order."""
    counter = AlertCounter(session_id)
    return [alert for alert in map(counter.check, events) if alert is not None]


__all__ = ["ALERT_KINDS", "Alert", "AlertCounter", "alerts_in", "describe"]
