"""The native client protocol of `/ws/stream`, sans I/O: text and bytes in, messages out.

Nothing here touches a socket. The server hands each WebSocket message to `ClientStream` (or
to the stateless `parse_client_text` / `decode_audio`) and sends the dicts built by `ready`,
`error`, `summary`, `overload` and `event_message` as JSON text; a client (`emostream listen
--server`) sends `StartMessage(...).to_dict()` and `StopMessage().to_dict()`. Every failure is a
`ProtocolError` with a stable `code`. Most errors answer one message, which is ignored, and the
session goes on; `close_code(code)` names the few after which the connection is closed.
The protocol, for clients: docs/protocol.md.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
from collections.abc import Mapping

import numpy as np

from models.errors import EmostreamError
from stream.engine.events import Event, to_dict
from stream.engine.parties import (  # noqa: F401  (re-exported: part of the protocol's vocabulary)
    PARTY_RE,
    WHOLE_SESSION,
    PartyError,
    check_party_names,
    default_parties,
    parties_for,
    tagged,
)
from vad import INPUT_RATES

from . import mulaw
from .closing import CloseCode
from .codes import STREAM_ERRORS, closing, meanings
from .limits import STREAM_BEFORE_START
from .messages import ClientMessage, StartMessage, StopMessage
from .wire import Action, EndSession, FeedAudio, OpenSession, Verdict

PROTOCOL_VERSION = 1  # sent in `ready`; bumped on incompatible changes

ENCODINGS = ("pcm_s16le", "pcm_f32le", "mulaw")
SAMPLE_BYTES = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}  # bytes per sample per channel

MAX_METADATA_BYTES = 8192  # `metadata` as compact UTF-8 JSON
MAX_CONTEXT_CHARS = 2000
MAX_METADATA_DEPTH = 16  # nesting of objects and arrays in `metadata` (deeper JSON breaks readers)
SHOWN_CHARS = 80  # a client's value echoed in an error is cut to this many characters
MAX_ERROR_CHARS = 500  # an error message never grows past this, whatever it echoes
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")  # 1-64 chars, no leading '.'

START_FIELDS = (
    "type", "sample_rate", "encoding", "channels", "session_id", "context", "metadata", "split_channels", "parties",
    "resume", "resume_token",
)
RESUME_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")

# Every error code a client can receive, with when it is sent (stream.protocol.codes: the one registry).
ERROR_CODES: dict[str, str] = meanings(STREAM_ERRORS)

# The errors that end the connection, with their close code. Every other error answers one
# message, which is ignored: the client may correct it (send a valid start, the next frame).
CLOSING_ERRORS: dict[str, CloseCode] = closing(STREAM_ERRORS)


def close_code(code: str) -> CloseCode | None:
    """The WebSocket close code that follows an `error` with this code; None: the session goes on."""
    return CLOSING_ERRORS.get(code)


class ProtocolError(EmostreamError):
    """A client broke the protocol; `code` is one of ERROR_CODES, the message says what to fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Client -> server




def show(value) -> str:
    """`repr(value)` cut to SHOWN_CHARS: errors may echo what was wrong, never all of it."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _allowed(values) -> str:
    """Values for an error message: short printable ones as they are, anything else as `show` echoes it."""
    return ", ".join(
        str(v) if isinstance(v, (int, str)) and len(str(v)) <= 20 and str(v).isprintable() else show(v) for v in values
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sample_rate(value) -> int:
    """A supported input rate in Hz."""
    if not _is_int(value):
        raise ProtocolError("bad_start", f"sample_rate must be an integer (Hz), got {show(value)}")
    if value not in INPUT_RATES:
        raise ProtocolError(
            "unsupported_rate", f"sample_rate must be one of {_allowed(INPUT_RATES)} Hz, got {value}"
        )
    return value


def check_encoding(value) -> str:
    """One of ENCODINGS."""
    if not isinstance(value, str):
        raise ProtocolError("bad_start", f"encoding must be a string, got {show(value)}")
    if value not in ENCODINGS:
        raise ProtocolError(
            "unsupported_encoding", f"encoding must be one of {_allowed(ENCODINGS)}, got {show(value)}"
        )
    return value


def check_channels(value, max_channels: int) -> int:
    """A channel count in 1..max_channels."""
    if not _is_int(value):
        raise ProtocolError("bad_start", f"channels must be an integer, got {show(value)}")
    if not 1 <= value <= max_channels:
        raise ProtocolError(
            "unsupported_channels", f"channels must be between 1 and {max_channels}, got {value}"
        )
    return value


def check_session_id(value) -> str | None:
    """None, or 1-64 characters of A-Z a-z 0-9 . _ - not starting with '.'."""
    if value is None:
        return None
    if not isinstance(value, str) or not SESSION_ID_RE.fullmatch(value):
        raise ProtocolError(
            "bad_start",
            "session_id must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-' and must not "
            f"start with '.', got {show(value)}",
        )
    return value


def check_context(value) -> str | None:
    """None, or a string of at most MAX_CONTEXT_CHARS characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_start", f"context must be a string or null, got {type(value).__name__}")
    if len(value) > MAX_CONTEXT_CHARS:
        raise ProtocolError(
            "bad_start", f"context must be at most {MAX_CONTEXT_CHARS} characters, got {len(value)}"
        )
    if not _is_utf8(value):
        raise ProtocolError("bad_start", "context must be valid Unicode text (it holds a lone surrogate)")
    return value


def _is_utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON allows `\\ud800`; UTF-8 files cannot hold it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_depth(value, limit: int) -> int:
    """Nesting depth of a JSON value (0 for a scalar), counted without recursion up to `limit` + 1."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            break
        depth += 1
        level = [child for c in containers for child in (c.values() if isinstance(c, dict) else c)]
    return depth


def check_metadata(value) -> dict:
    """A JSON object (None -> {}) of at most MAX_METADATA_BYTES as compact UTF-8 JSON."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("bad_start", f"metadata must be a JSON object, got {type(value).__name__}")
    depth = json_depth(value, MAX_METADATA_DEPTH)
    if depth > MAX_METADATA_DEPTH:
        raise ProtocolError("bad_start", f"metadata may nest objects and arrays at most {MAX_METADATA_DEPTH} deep")
    try:
        # allow_nan=False: 1e400 parses as infinity, which no JSON file can hold; encode: no lone surrogates
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise ProtocolError("bad_start", f"metadata must be plain JSON (finite numbers, valid Unicode): {show(str(exc))}") from None
    if size > MAX_METADATA_BYTES:
        raise ProtocolError(
            "bad_start", f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON, got {size}"
        )
    return value


def check_split(split, parties, channels: int) -> tuple[bool, tuple[str, ...]]:
    """`split_channels` and `parties` of a start with `channels` channels, validated together."""
    if split is None:
        split = False
    if not isinstance(split, bool):
        raise ProtocolError("bad_start", f"split_channels must be true or false, got {split!r}")
    if parties is None:
        return split, ()
    if not split:
        raise ProtocolError("bad_parties", "parties name the channels of a split stream: add \"split_channels\": true")
    with party_errors():
        if not isinstance(parties, list):  # JSON gives lists; a string would pass as a sequence of names
            check_party_names(parties)
        return split, parties_for(parties, channels)


@contextlib.contextmanager
def party_errors():
    """Party names a message got wrong are that message's `bad_parties` protocol error."""
    try:
        yield
    except PartyError as exc:
        raise ProtocolError(exc.code, str(exc)) from None


def parse_start(fields: Mapping, max_channels: int = 2) -> StartMessage:
    """Validate the fields of a `start` object (with or without its `type`)."""
    unknown = sorted(set(fields) - set(START_FIELDS))
    if unknown:
        raise ProtocolError(
            "bad_start",
            f"unknown start field(s) {_allowed(unknown)}; allowed: {_allowed(START_FIELDS[1:])}",
        )
    for name in ("sample_rate", "encoding"):
        if name not in fields:
            raise ProtocolError("bad_start", f"start needs `{name}`")
    channels = check_channels(fields.get("channels", 1), max_channels)
    split, parties = check_split(fields.get("split_channels"), fields.get("parties"), channels)
    if split and channels < 2:
        raise ProtocolError(
            "bad_split", "split_channels needs a stream of two or more channels; this start has channels: 1"
        )
    session_id = check_session_id(fields.get("session_id"))
    resume, token = check_resume(fields.get("resume"), fields.get("resume_token"), session_id)
    return StartMessage(
        sample_rate=check_sample_rate(fields["sample_rate"]),
        encoding=check_encoding(fields["encoding"]),
        channels=channels,
        session_id=session_id,
        context=check_context(fields.get("context")),
        metadata=check_metadata(fields.get("metadata")),
        split_channels=split,
        parties=parties,
        resume=resume,
        resume_token=token,
    )


def check_resume(resume, token, session_id: str | None) -> tuple[bool, str | None]:
    """`resume` and `resume_token` of a `start`: both, with the session's id, or neither."""
    if resume is None and token is None:
        return False, None
    if not isinstance(resume, bool):
        raise ProtocolError("bad_start", f"resume must be true or false, got {show(resume)}")
    if not resume:
        if token is not None:
            raise ProtocolError("bad_start", "resume_token goes with resume: true")
        return False, None
    if session_id is None:
        raise ProtocolError("bad_start", "resume: true needs the session_id of the session to continue")
    if not isinstance(token, str) or not RESUME_TOKEN_RE.fullmatch(token):
        raise ProtocolError("bad_start", "resume: true needs the resume_token its `ready` message gave")
    return True, token


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads_object(text: str) -> dict:
    """A text message as a JSON object (strict JSON: no NaN or Infinity), or `bad_json`."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"text messages must be JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_json", f"text messages must be JSON objects, got {type(value).__name__}")
    return value


CLIENT_TYPES = ("start", "stop")


def parse_client_text(text: str, max_channels: int = 2) -> ClientMessage:
    """One text message from a `/ws/stream` client: `start` or `stop`."""
    message = loads_object(text)
    kind = message.get("type")
    if kind == "start":
        return parse_start(message, max_channels)
    if kind == "stop":
        extra = sorted(set(message) - {"type"})
        if extra:
            raise ProtocolError("bad_message", f"stop takes no fields, got {_allowed(extra)}")
        return StopMessage()
    if kind in ("audio", "media", "data"):
        raise ProtocolError(
            "binary_expected", "send audio as binary WebSocket messages of raw samples, not in JSON"
        )
    raise ProtocolError(
        "unknown_type", f"type must be one of {_allowed(CLIENT_TYPES)}, got {show(kind)}"
    )


def decode_audio(data: bytes, encoding: str, channels: int) -> np.ndarray:
    """One binary message -> mono samples of shape (n_frames,).

    int16 for pcm_s16le and mulaw, float32 for pcm_f32le (nominally in [-1, 1]). Several
    channels are interleaved frame by frame and averaged: int16 as the rounded mean (ties to
    even) of the int32 sum, float32 in float32.
    """
    frames = decode_frames(data, encoding, channels)
    if channels == 1:
        return frames[:, 0]
    if frames.dtype == np.int16:
        total = frames.sum(axis=1, dtype=np.int32)
        return np.rint(total / channels).astype(np.int16)
    return (frames.sum(axis=1, dtype=np.float32) / np.float32(channels)).astype(np.float32)


def decode_frames(data: bytes, encoding: str, channels: int) -> np.ndarray:
    """One binary message -> sample frames of shape (n_frames, channels), channels kept apart."""
    if encoding not in SAMPLE_BYTES:
        raise ProtocolError(
            "unsupported_encoding", f"encoding must be one of {_allowed(ENCODINGS)}, got {show(encoding)}"
        )
    if not _is_int(channels) or channels < 1:
        raise ProtocolError("unsupported_channels", f"channels must be at least 1, got {show(channels)}")
    frame = SAMPLE_BYTES[encoding] * channels
    if len(data) % frame:
        raise ProtocolError(
            "odd_byte_count",
            f"got {len(data)} bytes, not a multiple of the frame size {frame} "
            f"({channels} channel(s) x {SAMPLE_BYTES[encoding]} byte(s) per {encoding} sample)",
        )
    if encoding == "pcm_s16le":
        samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
    elif encoding == "pcm_f32le":
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise ProtocolError("bad_audio", "pcm_f32le audio contains NaN or infinite samples")
    else:
        samples = mulaw.decode(data)
    return samples.reshape(-1, channels)


class State(enum.Enum):
    """Where a `/ws/stream` connection is in its life."""

    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


MAX_MESSAGES_BEFORE_START = STREAM_BEFORE_START  # messages a socket may send before its session starts
# Ids the telephony connectors give their sessions (docs/connectors.md): a /ws/stream client never takes one first.
RESERVED_ID_PREFIXES = ("twilio-", "audiohook-", "vonage-", "jambonz-", "audiofork-")


class ClientStream:
    """One `/ws/stream` connection's protocol state: enforces start -> audio* -> stop.

    `receive_text` returns the parsed `StartMessage` / `StopMessage`; `receive_binary` returns
    decoded mono samples in the start's encoding. Anything out of order, malformed or over
    `max_message_bytes` raises `ProtocolError` and leaves the state as it was, so the server can
    answer `error(...)` and go on (or close, where `close_code(exc.code)` says so). As a
    `WireProtocol` (stream.protocol.wire), `handle` turns messages into the server's actions and
    `fail` decides what each error means.
    """

    source = "native"
    max_messages_before_start = MAX_MESSAGES_BEFORE_START

    def __init__(self, max_channels: int = 2, max_message_bytes: int | None = None):
        self.max_channels = max_channels
        self.max_message_bytes = max_message_bytes
        self.state = State.AWAITING_START
        self.start: StartMessage | None = None

    @property
    def done(self) -> bool:
        """True after `stop`: nothing more is read."""
        return self.state is State.STOPPED

    def handle(self, text: str | None, data: bytes | None) -> list[Action]:
        """One WebSocket message -> the server's actions: open, feed audio, end with a summary."""
        if data is not None:
            samples = self.receive_binary(data)
            return [FeedAudio(samples)]
        if text is None:
            return []
        message = self.receive_text(text)
        if isinstance(message, StopMessage):
            return [EndSession(reply=True)]
        if message.session_id and message.session_id.startswith(RESERVED_ID_PREFIXES):
            self.refused()
            raise ProtocolError("bad_start", f"session ids starting with {', '.join(map(repr, RESERVED_ID_PREFIXES))} "
                                             "belong to the telephony connectors' streams")
        fmt = "float32" if message.encoding == "pcm_f32le" else "int16"
        return [OpenSession(message, message.party_names, fmt)]

    def refused(self) -> None:
        """The server refused the accepted `start`: wait for another one."""
        self.refuse_start()

    def fail(self, exc: EmostreamError, started: bool) -> Verdict:
        """Every error is answered; the few in CLOSING_ERRORS end the connection, a long session after its summary."""
        code = getattr(exc, "code", "error")
        close = close_code(code)
        return Verdict(error(code, str(exc)), close, finish_first=started and code == "session_too_long")

    def _check_size(self, n: int):
        if self.max_message_bytes is not None and n > self.max_message_bytes:
            raise ProtocolError(
                "message_too_large",
                f"messages must be at most {self.max_message_bytes} bytes, got {n}",
            )

    def _check_open(self):
        if self.state is State.STOPPED:
            raise ProtocolError("already_stopped", "no messages are accepted after stop")

    def receive_text(self, text: str) -> ClientMessage:
        """A text message: `start` (once, first) or `stop` (once, after start)."""
        self._check_open()
        self._check_size(len(text.encode("utf-8")))
        message = parse_client_text(text, self.max_channels)
        if isinstance(message, StartMessage):
            if self.state is not State.AWAITING_START:
                raise ProtocolError("already_started", "start may be sent only once per connection")
            self.start, self.state = message, State.STREAMING
        else:
            if self.state is State.AWAITING_START:
                raise ProtocolError("not_started", "stop before start: send start first")
            self.state = State.STOPPED
        return message

    def refuse_start(self) -> None:
        """The server refused the accepted `start` (its id is in use...): wait for another one."""
        if self.state is State.STREAMING:
            self.start, self.state = None, State.AWAITING_START

    def receive_binary(self, data: bytes) -> np.ndarray:
        """A binary message: audio in the start's encoding -> mono samples, or (n, channels) frames when split."""
        self._check_open()
        self._check_size(len(data))
        if self.start is None:
            raise ProtocolError(
                "audio_before_start", "send a start message before the first binary audio message"
            )
        if self.start.split_channels:
            return decode_frames(data, self.start.encoding, self.start.channels)
        return decode_audio(data, self.start.encoding, self.start.channels)


# ---------------------------------------------------------------------------------------------
# Server -> client: JSON-ready dicts, one builder per kind.

def ready(session_id: str, parameters: dict, parties: tuple[str, ...] = (), resume_token: str | None = None,
          resumed: dict | None = None) -> dict:
    """The session is running: send audio now. `parameters` are the analyzer's settings.

    A split session lists its `parties` in channel order; its events carry one of them each.
    `resume_token` lets this client continue the session if its socket drops (`start` with
    `resume: true`); `resumed`, on such a continuation, says how long the gap was and how much
    audio the session had (`gap_seconds`, `received_seconds`).
    """
    body = {
        "type": "ready",
        "session_id": session_id,
        "protocol": PROTOCOL_VERSION,
        "parameters": parameters,
    }
    if parties:
        body["parties"] = list(parties)
    if resume_token is not None:
        body["resume_token"] = resume_token
    if resumed is not None:
        body["resumed"] = resumed
    return body


def error(code: str, message: str) -> dict:
    """A failure: the offending message was ignored (or, see `close_code`, the connection ends)."""
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    # A client's lone surrogate echoed back must not make the answer unsendable as UTF-8.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"type": "error", "code": code, "message": message}


def summary(session_id: str, stats: dict) -> dict:
    """Last message of a session, after its final events."""
    return {"type": "summary", "session_id": session_id, "stats": stats}


def overload(message: str, queue_depth: int, session_id: str | None = None) -> dict:
    """A warning, not an error: analysis is behind; `queue_depth` jobs wait to be scored."""
    body = {"type": "overload", "message": message, "queue_depth": int(queue_depth)}
    if session_id is not None:
        body["session_id"] = session_id
    return body


def event_message(session_id: str, event: Event, party: str | None = None) -> dict:
    """An analyzer event (docs/events.md) tagged with its session and, in split sessions, its party."""
    body = tagged(to_dict(event), party)
    return {"type": body.pop("type"), "session_id": session_id, **body}


__all__ = [
    "CLIENT_TYPES",
    "MAX_MESSAGES_BEFORE_START",
    "CLOSING_ERRORS",
    "ENCODINGS",
    "ERROR_CODES",
    "MAX_CONTEXT_CHARS",
    "MAX_ERROR_CHARS",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "PARTY_RE",
    "PROTOCOL_VERSION",
    "SAMPLE_BYTES",
    "SESSION_ID_RE",
    "START_FIELDS",
    "WHOLE_SESSION",
    "ClientMessage",
    "ClientStream",
    "ProtocolError",
    "StartMessage",
    "State",
    "StopMessage",
    "check_channels",
    "check_context",
    "check_encoding",
    "check_metadata",
    "check_party_names",
    "check_sample_rate",
    "check_session_id",
    "check_split",
    "close_code",
    "decode_audio",
    "decode_frames",
    "default_parties",
    "error",
    "event_message",
    "json_depth",
    "loads_object",
    "overload",
    "parse_client_text",
    "parse_start",
    "party_errors",
    "ready",
    "show",
    "summary",
]
