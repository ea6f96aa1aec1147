"""What a wire protocol asks of the server, sans I/O: the actions one socket loop carries out.

Every connector (the native `/ws/stream` protocol, Twilio Media Streams, ...) is a parser that
turns each WebSocket message into a list of actions and decides, for each error, what the
client is told and whether the connection ends — as websockets' `Protocol.fail` does. The
server's one socket loop (`stream.server.live_ws`) only performs the actions, so a new
connector adds a parser and no loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

import numpy as np

from models.errors import EmostreamError

from .closing import CloseCode
from .messages import StartMessage


@dataclass(frozen=True)
class OpenSession:
    """Start the session a `start` describes."""

    start: StartMessage  # rate, encoding, channels, wanted id, context, metadata
    parties: tuple[str, ...] = ()  # one analysis per party; () analyzes the mix
    sample_format: str = "int16"  # what `FeedAudio` will carry: "int16" or "float32"
    token: str | None = None  # a credential sent inside the protocol (Twilio's <Parameter>), checked first


@dataclass(frozen=True)
class FeedAudio:
    """Decoded samples for the session: mono, (n, channels) frames of a split stream, or one party's."""

    samples: np.ndarray
    party: str | None = None  # the party whose audio this is, when each party's audio comes apart


@dataclass(frozen=True)
class EndSession:
    """The client ended the session: flush the analysis, then answer with a summary if `reply`."""

    reply: bool = True


@dataclass(frozen=True)
class Notice:
    """Something the telephony platform reported (a mark, a DTMF digit), for monitors and MQTT."""

    body: dict  # {"event": "mark" | "dtmf", ...}: sent as a `telephony` message tagged with the session


@dataclass(frozen=True)
class OpenReplay:
    """Start a session that plays back a recording's events (`/ws/replay`): no audio, no model."""

    start: StartMessage  # the recording's rate, encoding, channels, context, metadata (its id: `replay_of`)
    parties: tuple[str, ...]  # the recording's parties; () for one mixed signal
    replay_of: str  # the recorded session's id: the replay gets a fresh one
    infos: tuple  # ((party | None, Info), ...): the recording's info events, one per party
    source: str | None = None  # the recording's own source ("native", "twilio", ...)
    started_at: str | None = None  # when the recorded session started
    echo: bool = True  # send the replayed events back to the client too


@dataclass(frozen=True)
class ReplayEvents:
    """Recorded events to publish as the replay session's, in order: ((party | None, event body), ...).

    Each body is a checked `events.jsonl` line: `to_dict` of an Event, tagged with its party when split."""

    events: tuple


@dataclass(frozen=True)
class Reply:
    """A message of the protocol's own for its client (AudioHook's `opened`, `pong`, `closed`), sent at once, in order.

    Its connection sends it (stream.server.audiohook.AudioHookConnection, given to `serve_wire`)."""

    message: dict


Action = Union[OpenSession, FeedAudio, EndSession, Notice, OpenReplay, ReplayEvents, Reply]


@dataclass(frozen=True)
class Verdict:
    """What follows an error: the message the client gets, and whether and how the connection ends."""

    reply: dict | None = None  # an `error` message for the client; None where the protocol takes none
    close: CloseCode | None = None  # None: the connection goes on
    finish_first: bool = False  # flush the session and send its summary before closing


class WireProtocol(Protocol):
    """One connection's protocol state; the socket loop feeds it messages and performs its actions.

    A protocol whose peer stops by closing the connection, with no stop message (AudioSocket, the
    JSON-then-PCM connectors), says so with a class attribute `ends_on_close = True`: the loop then
    completes its session on that close (its EndSession) instead of recording it "disconnected".
    """

    source: str  # what sessions from this protocol are recorded as ("native", "twilio", ...)
    max_messages_before_start: int  # messages a socket may send before its session starts

    @property
    def done(self) -> bool:
        """True once the client has ended the session: the loop stops reading."""

    def handle(self, text: str | None, data: bytes | None) -> list[Action]:
        """One WebSocket message (text or bytes) -> what the server must do; raises EmostreamError."""

    def refused(self) -> None:
        """The server refused the last `OpenSession` (id in use, server full): the client may retry."""

    def fail(self, exc: EmostreamError, started: bool) -> Verdict:
        """What an error means on this protocol; `started`: a session is running."""


__all__ = ["Action", "EndSession", "FeedAudio", "Notice", "OpenReplay", "OpenSession", "ReplayEvents", "Reply",
           "Verdict", "WireProtocol"]
