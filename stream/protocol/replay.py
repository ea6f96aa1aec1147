"""The replay protocol of `/ws/replay`, sans I/O: a recording's events played back as a session.

`emostream replay` (stream/cli/replay.py) reads a recording (`session.json`, `events.jsonl`) and
sends, over one WebSocket per replayed call:

    {"type": "replay_start", "session": {...}, "info": [info events], "echo": true}
    {"type": "events", "events": [event bodies as recorded]}      (paced by the client)
    ...
    {"type": "stop"}

The server answers `ready` (with `replay: true` and `replay_of`), the `info` events, the events as
it publishes them (unless `"echo": false`), then `summary` — the `/ws/stream` sequence without
audio. Every event is checked here against its dataclass (stream.engine.events: known types only,
exactly its fields, each of its type, finite times within the session's limit), so what reaches
the server's sinks — the bodies as recorded, never re-encoded — is what a live session could have
published. An `events` message is taken
whole or refused whole (`bad_event`), and the session goes on. The protocol, for clients:
docs/protocol.md ("Replay").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, fields

from models.errors import EmostreamError
from stream.engine.events import EVENT_TYPES, from_dict

from .codes import REPLAY_ERRORS, meanings
from .limits import REPLAY_BEFORE_START
from .messages import StartMessage
from .native import (
    MAX_METADATA_DEPTH,
    PARTY_RE,
    WHOLE_SESSION,
    ProtocolError,
    State,
    check_channels,
    check_context,
    check_encoding,
    check_metadata,
    check_sample_rate,
    check_session_id,
    close_code,
    error,
    json_depth,
    loads_object,
    show,
)
from .wire import Action, EndSession, OpenReplay, ReplayEvents, Verdict

SOURCE = "replay"  # what replayed sessions are recorded as
REPLAYED_TYPES = ("window", "segment", "transition", "review", "dual_emotion")  # `info` comes in replay_start
START_FIELDS = ("type", "session", "info", "echo")
SESSION_FIELDS = ("session_id", "sample_rate", "encoding", "channels", "context", "metadata", "parties", "source",
                  "started_at")  # fmt: skip
MAX_EVENTS_PER_MESSAGE = 1000
MAX_EVENTS_PER_SESSION = 1_000_000  # a 4 h call of two parties is about 300,000
MAX_CHANNELS = 8
MAX_TEXT_CHARS = 4000  # any string field of an event (a review's evidence is a few hundred)
MAX_NAME_CHARS = 64  # labels, emotions, score keys
MAX_SCORES = 64  # entries of a score mapping (nine labels in practice)
MAX_PARTIES = 16
MAX_MESSAGES_BEFORE_START = REPLAY_BEFORE_START
RENAMED = {"from_emotion": "from", "to_emotion": "to"}  # `to_dict`'s names of Transition's fields
TIME_FIELDS = ("start", "end", "time", "confirmed_at")  # stream seconds: finite, >= 0, within the limit

# The error codes this protocol adds to stream.protocol.native.ERROR_CODES (docs/protocol.md, "Replay").
REPLAY_ERROR_CODES: dict[str, str] = meanings(REPLAY_ERRORS)


def _is_number(value) -> bool:
    # JSON gives exactly int, float or bool (a bool is no number here); 1e400 parses as infinity
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def _is_text(value, limit: int) -> bool:
    if type(value) is not str or len(value) > limit:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")  # no lone surrogates: recordings are UTF-8 files
    except UnicodeEncodeError:
        return False
    return True


def _is_scores(value) -> bool:
    """A score mapping: at most MAX_SCORES short names to finite numbers (a window has two of nine)."""
    if type(value) is not dict or len(value) > MAX_SCORES:
        return False
    for key, score in value.items():
        if not (_is_text(key, MAX_NAME_CHARS) and _is_number(score)):
            return False
    return True


def _checker(annotation: str):
    """A predicate for JSON values of one dataclass field's annotation (the few the events use)."""
    kinds = [a.strip() for a in annotation.split("|")]
    optional = "None" in kinds
    kind = next(k for k in kinds if k != "None")
    if kind == "int":
        check = lambda v: type(v) is int  # noqa: E731
    elif kind == "float":
        check = _is_number
    elif kind == "bool":
        check = lambda v: type(v) is bool  # noqa: E731
    elif kind == "str":
        check = lambda v: _is_text(v, MAX_TEXT_CHARS)  # noqa: E731
    elif kind.startswith("tuple[str"):
        size = 2 if kind == "tuple[str, str]" else None
        check = lambda v: (type(v) is list and (size is None or len(v) == size) and len(v) <= MAX_SCORES  # noqa: E731
                           and all(_is_text(x, MAX_NAME_CHARS) for x in v))
    elif kind == "Mapping[str, float]":
        check = _is_scores
    elif kind == "Mapping[str, object]":
        check = lambda v: type(v) is dict and json_depth(v, MAX_METADATA_DEPTH) <= MAX_METADATA_DEPTH  # noqa: E731
    else:  # a new field type in stream.engine.events: teach this module to check it
        raise TypeError(f"no replay check for an event field of type {annotation!r}")
    return (lambda v: v is None or check(v)) if optional else check


def _schema(cls) -> tuple[dict, frozenset]:
    """{JSON key: predicate} of an event class, and the keys a body must carry."""
    checks, required = {}, set()
    for f in fields(cls):
        key = RENAMED.get(f.name, f.name)
        checks[key] = _checker(f.type if isinstance(f.type, str) else f.type.__name__)
        if f.default is MISSING and f.default_factory is MISSING:
            required.add(key)
    return checks, frozenset(required)


SCHEMAS = {kind: _schema(EVENT_TYPES[kind]) for kind in (*REPLAYED_TYPES, "info")}


def check_event(body, parties: tuple[str, ...], where: str, kinds=REPLAYED_TYPES,
                max_seconds: float | None = None) -> tuple[str | None, dict]:
    """One recorded event body -> (its party, the body); ProtocolError("bad_event") says what is wrong.

    A body that passes is what `to_dict` makes of an event of its type (tagged with its party):
    every field of the type, none other, each a JSON value of the field's type."""
    code = "bad_event" if kinds is REPLAYED_TYPES else "bad_replay"
    if not isinstance(body, dict):
        raise ProtocolError(code, f"{where} must be an event object, got {type(body).__name__}")
    kind = body.get("type")
    if kind not in kinds:
        raise ProtocolError(code, f"{where}: type must be one of {', '.join(kinds)}, got {show(kind)}")
    checks, required = SCHEMAS[kind]
    party = body.get("party")
    if parties:
        if party not in parties:
            raise ProtocolError(code, f"{where}: party must be one of {', '.join(parties)}, got {show(party)}")
    elif "party" in body:
        raise ProtocolError(code, f"{where}: this session has no parties, the event names party {show(party)}")
    unknown = [k for k in body if k not in checks and k not in ("type", "party")]
    if unknown:
        raise ProtocolError(code, f"{where}: a {kind} event has no field {show(unknown[0])}")
    missing = sorted(required - body.keys())
    if missing:
        raise ProtocolError(code, f"{where}: a {kind} event needs `{missing[0]}`")
    for key, value in body.items():
        check = checks.get(key)
        if check is not None and not check(value):
            raise ProtocolError(code, f"{where}: {kind}.{key} has the wrong type or size: {show(value)}")
    for key in TIME_FIELDS:
        value = body.get(key) if key in checks else None
        if value is None:
            continue
        if value < 0:
            raise ProtocolError(code, f"{where}: {kind}.{key} must be a stream time in seconds, got {show(value)}")
        if max_seconds is not None and value > max_seconds:
            raise ProtocolError("session_too_long", f"{where}: {kind}.{key} is {value:g} s; sessions are limited "
                                                    f"to {max_seconds:g} s")  # fmt: skip
    return (party if parties else None), body


def _session_field(check, value, name: str):
    """A native `start` check on a `replay_start.session` field, its error as `bad_replay`."""
    try:
        return check(value)
    except ProtocolError as exc:
        raise ProtocolError("bad_replay", f"replay_start.session.{name}: {exc.message}") from None


def parse_replay_start(message: Mapping) -> OpenReplay:
    """Validate a `replay_start` message (with its `type`)."""
    unknown = sorted(set(message) - set(START_FIELDS))
    if unknown:
        raise ProtocolError("bad_replay", f"unknown replay_start field {show(unknown[0])}; allowed: "
                                          f"{', '.join(START_FIELDS[1:])}")  # fmt: skip
    session = message.get("session")
    if not isinstance(session, dict):
        raise ProtocolError("bad_replay", "replay_start needs `session`: the recording's session.json fields")
    unknown = sorted(set(session) - set(SESSION_FIELDS))
    if unknown:
        raise ProtocolError("bad_replay", f"unknown replay_start.session field {show(unknown[0])}; allowed: "
                                          f"{', '.join(SESSION_FIELDS)}")  # fmt: skip
    for name in ("session_id", "sample_rate"):
        if session.get(name) is None:
            raise ProtocolError("bad_replay", f"replay_start.session needs `{name}` (the recording's)")
    original = _session_field(check_session_id, session["session_id"], "session_id")
    parties = session.get("parties") or []
    if not isinstance(parties, list) or len(parties) > MAX_PARTIES or not all(
        isinstance(p, str) and PARTY_RE.fullmatch(p) and p != WHOLE_SESSION for p in parties
    ) or len(set(parties)) != len(parties):
        raise ProtocolError("bad_replay", f"replay_start.session.parties must be a list of at most {MAX_PARTIES} "
                                          f"distinct party names, got {show(parties)}")  # fmt: skip
    parties = tuple(parties)
    source = session.get("source")
    if source is not None and not (isinstance(source, str) and PARTY_RE.fullmatch(source)):
        raise ProtocolError("bad_replay", f"replay_start.session.source must be a short name, got {show(source)}")
    started_at = session.get("started_at")
    if started_at is not None and not _is_text(started_at, 64):
        raise ProtocolError("bad_replay", f"replay_start.session.started_at must be a time, got {show(started_at)}")
    start = StartMessage(
        sample_rate=_session_field(check_sample_rate, session["sample_rate"], "sample_rate"),
        encoding=_session_field(check_encoding, session.get("encoding", "pcm_s16le"), "encoding"),
        channels=_session_field(lambda v: check_channels(v, MAX_CHANNELS), session.get("channels", 1), "channels"),
        context=_session_field(check_context, session.get("context"), "context"),
        metadata=_session_field(check_metadata, session.get("metadata"), "metadata"),
    )
    infos = message.get("info")
    if not isinstance(infos, list) or len(infos) != max(1, len(parties)):
        raise ProtocolError("bad_replay", "replay_start needs `info`: the recording's info events, one per party "
                                          f"({max(1, len(parties))} here)")  # fmt: skip
    checked = [check_event(body, parties, f"replay_start.info[{i}]", ("info",)) for i, body in enumerate(infos)]
    checked = [(party, from_dict({k: v for k, v in body.items() if k != "party"})) for party, body in checked]
    if parties and sorted(p for p, _ in checked) != sorted(parties):
        raise ProtocolError("bad_replay", "replay_start.info must hold one info event per party")
    echo = message.get("echo", True)
    if not isinstance(echo, bool):
        raise ProtocolError("bad_replay", f"replay_start.echo must be true or false, got {show(echo)}")
    return OpenReplay(start, parties, original, tuple(checked), source, started_at, echo)


class ReplayStream:
    """One `/ws/replay` connection's protocol state: replay_start -> events* -> stop.

    As a `WireProtocol` (stream.protocol.wire) `handle` turns each message into the server's
    actions (`OpenReplay`, `ReplayEvents`, `EndSession`) and `fail` answers every error; as on
    `/ws/stream` only the errors of `CLOSING_ERRORS` end the connection.
    """

    source = SOURCE
    max_messages_before_start = MAX_MESSAGES_BEFORE_START

    def __init__(self, max_message_bytes: int | None = None, max_seconds: float | None = None,
                 max_events: int = MAX_EVENTS_PER_SESSION):
        """`max_seconds`: the server's --max-session-seconds, which no event's stream time may pass."""
        self.max_message_bytes = max_message_bytes
        self.max_seconds = max_seconds
        self.max_events = max_events
        self.state = State.AWAITING_START
        self.parties: tuple[str, ...] = ()
        self.events = 0  # events accepted so far

    @property
    def done(self) -> bool:
        """True after `stop`: nothing more is read."""
        return self.state is State.STOPPED

    def handle(self, text: str | None, data: bytes | None) -> list[Action]:
        """One WebSocket message -> the server's actions."""
        if self.state is State.STOPPED:
            raise ProtocolError("already_stopped", "no messages are accepted after stop")
        if data is not None:
            self._check_size(len(data))
            raise ProtocolError("text_expected", "/ws/replay takes JSON text messages only: replay_start, events, stop")
        if text is None:
            return []
        self._check_size(len(text.encode("utf-8", "surrogatepass")))
        message = loads_object(text)
        kind = message.get("type")
        if kind == "replay_start":
            if self.state is not State.AWAITING_START:
                raise ProtocolError("already_started", "replay_start may be sent only once per connection")
            action = parse_replay_start(message)
            self.parties, self.state = action.parties, State.STREAMING
            return [action]
        if kind == "events":
            if self.state is State.AWAITING_START:
                raise ProtocolError("not_started", "events before replay_start: send replay_start first")
            return [ReplayEvents(self._events(message))]
        if kind == "stop":
            extra = sorted(set(message) - {"type"})
            if extra:
                raise ProtocolError("bad_message", f"stop takes no fields, got {show(extra[0])}")
            if self.state is State.AWAITING_START:
                raise ProtocolError("not_started", "stop before replay_start: send replay_start first")
            self.state = State.STOPPED
            return [EndSession(reply=True)]
        raise ProtocolError("unknown_type", f"type must be one of replay_start, events, stop, got {show(kind)}")

    def _events(self, message: Mapping) -> tuple[tuple[str | None, dict], ...]:
        extra = sorted(set(message) - {"type", "events"})
        if extra:
            raise ProtocolError("bad_event", f"an events message has no field {show(extra[0])}")
        events = message.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS_PER_MESSAGE:
            raise ProtocolError("bad_event", f"`events` must be a list of 1 to {MAX_EVENTS_PER_MESSAGE} event bodies, "
                                             f"got {show(events if not isinstance(events, list) else len(events))}")  # fmt: skip
        if self.events + len(events) > self.max_events:
            raise ProtocolError("session_too_long", f"a replayed session takes at most {self.max_events} events")
        checked = tuple(check_event(body, self.parties, f"events[{i}]", max_seconds=self.max_seconds)
                        for i, body in enumerate(events))  # fmt: skip
        self.events += len(checked)
        return checked

    def _check_size(self, n: int) -> None:
        if self.max_message_bytes is not None and n > self.max_message_bytes:
            raise ProtocolError("message_too_large", f"messages must be at most {self.max_message_bytes} bytes, got {n}")

    def refused(self) -> None:
        """The server refused the accepted `replay_start` (server full): wait for another one."""
        if self.state is State.STREAMING:
            self.parties, self.state = (), State.AWAITING_START

    def fail(self, exc: EmostreamError, started: bool) -> Verdict:
        """Every error is answered; the few in CLOSING_ERRORS end the connection, a long session after its summary."""
        code = getattr(exc, "code", "error")
        return Verdict(error(code, str(exc)), close_code(code), finish_first=started and code == "session_too_long")


__all__ = ["MAX_EVENTS_PER_MESSAGE", "MAX_EVENTS_PER_SESSION", "REPLAYED_TYPES", "REPLAY_ERROR_CODES",
           "ReplayStream", "SOURCE", "check_event", "parse_replay_start"]  # fmt: skip
