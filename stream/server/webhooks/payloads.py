"""What each webhook says: the server's fan-out messages as Standard Webhooks payloads, sans I/O.

`{"type": ..., "timestamp": ..., "data": {...}}`, `timestamp` when it happened (ISO 8601, UTC):

- `session.started`: data is the session as the monitor feed describes it (its SessionState's
  fixed part: session_id, source, started_at, context, profile, metadata, parties, replay,
  random_weights, planted);
- `alert.raised`: data is the monitor feed's Alert (id `<session_id>#<n>`, kind, party, stream
  time, text, at, state `open`), plus `replay`;
- `alert.acknowledged`: the same Alert with state `acknowledged` and its `ack` (by, at, note,
  assignee), plus `replay` when this server saw the session start;
- `session.ended`: the session's description again, with `ended_at` and its `summary` (status,
  duration, event counts, per party).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timezone

from ..monitor_feed import describe_fields

EVENT_TYPES = ("session.started", "alert.raised", "alert.acknowledged", "session.ended")
REMEMBERED_REPLAYS = 10_000  # replayed sessions whose late acknowledgements are still marked `replay`


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class WebhookEvents:
    """Turns fan-out messages into payloads: feed it every message, get a payload or None.

    It keeps each live session's description (to repeat it in `session.ended`) and which recent
    sessions were replays (to mark their alerts), nothing else.
    """

    def __init__(self, clock=_now):
        self.clock = clock
        self._live: dict[str, dict] = {}  # session id -> its description, while it is live
        self._replays: OrderedDict[str, None] = OrderedDict()

    def payload(self, message: dict) -> dict | None:
        """The webhook payload a message makes, or None (windows, segments, digests... make none)."""
        kind = message.get("type")
        if kind == "session_started":
            data = describe_fields(message)
            self._live[data["session_id"]] = data
            if data["replay"]:
                self._replays[data["session_id"]] = None
                while len(self._replays) > REMEMBERED_REPLAYS:
                    self._replays.popitem(last=False)
            return {"type": "session.started", "timestamp": data.get("started_at") or self.clock(), "data": data}
        if kind == "alert":
            alert = dict(message["alert"])
            alert["replay"] = alert.get("session_id") in self._replays
            return {"type": "alert.raised", "timestamp": alert.get("at") or self.clock(), "data": alert}
        if kind == "alert_acknowledged":
            alert = dict(message["alert"])
            if alert.get("session_id") in self._replays:
                alert["replay"] = True
            at = (alert.get("ack") or {}).get("at") or self.clock()
            return {"type": "alert.acknowledged", "timestamp": at, "data": alert}
        if kind == "session_ended":
            sid = message.get("session_id")
            ended = self.clock()
            described = self._live.pop(sid, None) or {"session_id": sid, "replay": bool(message.get("replay"))}
            data = {**described, "ended_at": ended, "summary": message.get("summary")}
            return {"type": "session.ended", "timestamp": ended, "data": data}
        return None


__all__ = ["EVENT_TYPES", "WebhookEvents"]
