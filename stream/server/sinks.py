"""Where a server's messages go: one fan-out of sinks instead of callbacks wired by hand.

A sink is any callable that takes one JSON-ready message (a dict). The server's `Fanout` holds
the sinks every session-tagged message goes to — the monitor feed, MQTT when configured, and in
a cluster the session hub — and each session's `SessionOutput` adds its own client socket.
Recordings are written by the session itself (stream.server.session), because they must be
durable before anything is sent.
"""

from __future__ import annotations

from typing import Callable

from stream.engine.events import Event
from stream.protocol.native import event_message, overload

from .metrics import ServerMetrics

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


class SessionOutput:
    """One session's events and overload warnings, to its client (when it reads any) and to the fan-out."""

    def __init__(self, session_id: str, client: Sink | None, fanout: Fanout, metrics: ServerMetrics):
        """`client`: the socket's outbox `put`, or None for a protocol that takes no messages (Twilio)."""
        self.session_id = session_id
        self.client = client
        self.fanout = fanout
        self.metrics = metrics

    def _send(self, message: dict) -> None:
        if self.client is not None:
            self.client(message)
        self.fanout.send(message)

    def events(self, session, events: list[Event], party: str | None) -> None:
        """A session's new events (of one party in a split session), counted and sent."""
        for event in events:
            self.metrics.events.labels(event.type).inc()
            self._send(event_message(self.session_id, event, party))

    def overload(self, session, depth: int) -> None:
        """The model cannot keep up with this session: tell its client and the monitors."""
        self.metrics.overloads.inc()
        self._send(overload("the model cannot keep up; analysis is delayed", depth, self.session_id))


__all__ = ["Fanout", "SessionOutput", "Sink"]
