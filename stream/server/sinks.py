"""Where a server's messages go: one fan-out of sinks instead of callbacks wired by hand.

A sink is any callable that takes one JSON-ready message (a dict). The server's `Fanout` holds
the sinks every session-tagged message goes to — the monitor feed, MQTT when configured, and in
a cluster the session hub — and each session's `SessionOutput` adds its own client socket.
Recordings are written by the session itself (stream.server.session), because they must be
durable before anything is sent.

Each `SessionOutput` also finds the session's alerts (stream.server.alerts), in the order its
events are published, and hands each to the server, which sends an `alert` message into the
fan-out. `alert`, `alert_acknowledged` (and the feed's own `digest` and `snapshot`) are for
monitors only: `without_feed_messages` keeps them, and the feed's fields of `session_started`,
from a sink that predates the feed (MQTT).
"""

from __future__ import annotations

from typing import Callable

from stream.engine.events import Event
from stream.protocol.native import event_message, overload

from .alerts import Alert, AlertCounter
from .metrics import ServerMetrics
from .monitor_feed import FEED_FIELDS, FEED_ONLY

Sink = Callable[[dict], None]


class Fanout:
    """Every sink a message goes to, in the order they were added."""

    def __init__(self, *sinks: Sink):
        self.sinks: list[Sink] = list(sinks)

    def add(self, sink: Sink) -> None:
        """Send every later message to `sink` too."""
        self.sinks.append(sink)

    def send(self, message: dict) -> None:
        """Hand `message` to every sink."""
        for sink in self.sinks:
            sink(message)


def without_feed_messages(sink: Sink) -> Sink:
    """`sink` as it was before the monitor feed: no alert, acknowledgement, digest or snapshot
    messages, and `session_started` without the feed's own fields (`started_at`, `infos`).

    `session_started` keeps `info`, the first party's `info` event; every party's `info` event then
    follows as a message of its own (each on its party's MQTT topic), so a split session's other
    parties are described too."""

    def send(message: dict) -> None:
        kind = message.get("type")
        if kind in FEED_ONLY:
            return
        if kind == "session_started":
            sink({k: v for k, v in message.items() if k not in FEED_FIELDS})
            infos = message.get("infos")
            for info in infos.values() if isinstance(infos, dict) else ():
                sink({**info, "replay": True} if message.get("replay") else info)  # a replay's are marked too
            return
        sink(message)

    return send


class SessionOutput:
    """One session's events and overload warnings, to its client (when it reads any) and to the fan-out."""

    def __init__(self, session_id: str, client: Sink | None, fanout: Fanout, metrics: ServerMetrics,
                 alert: Callable[[Alert], None] | None = None):
        """`client`: the socket's outbox `put`, or None for a protocol that takes no messages (Twilio);
        `alert`: told of each alert the session's events raise, after the event itself was sent."""
        self.session_id = session_id
        self.client = client
        self.fanout = fanout
        self.metrics = metrics
        self.alert = alert
        self.alerts = AlertCounter(session_id)  # every event message, in publish order

    def _send(self, message: dict) -> None:
        if self.client is not None:
            self.client(message)
        self.fanout.send(message)

    def events(self, session, events: list[Event], party: str | None) -> None:
        """A session's new events (of one party in a split session), counted and sent."""
        self.messages([event_message(self.session_id, event, party) for event in events])

    def messages(self, messages: list[dict]) -> None:
        """Event messages already made (`event_message`'s, or a replay's from recorded bodies), counted and sent."""
        for message in messages:
            self.metrics.events.labels(message["type"]).inc()
            self._send(message)
            raised = self.alerts.check(message)
            if raised is not None and self.alert is not None:
                self.alert(raised)

    def overload(self, session, depth: int) -> None:
        """The model cannot keep up with this session: tell its client and the monitors."""
        self.metrics.overloads.inc()
        self._send(overload("the model cannot keep up; analysis is delayed", depth, self.session_id))


__all__ = ["Fanout", "SessionOutput", "Sink", "without_feed_messages"]
