"""Twilio Media Streams (`/ws/twilio`), sans I/O: Twilio's JSON text messages in, events out.

Twilio sends `connected`, one `start` (stream metadata and media format), `media` (base64 μ-law
8 kHz mono, normally 20 ms each), `dtmf` and `mark` messages, and a final `stop`; all but
`connected` carry `sequenceNumber` (a decimal string counting from 1) and `streamSid`.
`TwilioStream.receive` validates each message and returns what it means for us: `Started`,
`Audio` (decoded int16 samples of the analyzed tracks only), `Marked`, `Dtmf`, `Stopped`.
Every streamed track is analyzed unless the `track` <Parameter> picks one; with both tracks
(`<Stream track="both_tracks">`) the call is split into two parties, inbound = "caller" and
outbound = "agent" unless the `inbound_party` / `outbound_party` <Parameter>s rename them.
Unknown `event` types are ignored so that events Twilio adds later do not end a call's
analysis; malformed or out-of-order messages raise `ProtocolError`. Twilio cannot send headers
or query strings, so the access token arrives as the `token` custom parameter of `start`
(`Started.token`): the server checks it before analysing anything. docs/protocol.md, Telephony.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from models.errors import EmostreamError

from . import mulaw
from .closing import CloseCode
from .limits import TWILIO_BEFORE_START
from .native import (
    MAX_CONTEXT_CHARS,
    ProtocolError,
    StartMessage,
    check_context,
    check_metadata,
    check_party_names,
    close_code,
    loads_object,
    party_errors,
    show,
)
from .wire import Action, EndSession, FeedAudio, Notice, OpenSession, Verdict

TWILIO_ENCODING = "audio/x-mulaw"
TWILIO_RATE = 8000
TWILIO_CHANNELS = 1
TRACKS = ("inbound", "outbound")  # inbound: the caller's audio as Twilio receives it
TOKEN_PARAMETER = "token"  # the custom parameter that carries the access token
TRACK_PARAMETER = "track"  # custom parameter: "inbound", "outbound" or "both" tracks analyzed
BOTH = "both"
DEFAULT_PARTIES = {"inbound": "caller", "outbound": "agent"}  # renamed by <Parameter name="inbound_party">
# Marks and DTMF digits are copied to every monitor, MQTT and the hub: each is short, and a call
# passes on at most a burst plus a few a second of its audio (a person presses fewer keys).
MAX_TELEPHONY_CHARS = 64
NOTICE_BURST = 32
NOTICES_PER_SECOND = 4
MAX_IGNORED_KINDS = 16  # distinct unknown `event` names counted by name; the rest as OTHER_KINDS
MAX_IGNORED_NAME = 40  # characters of an unknown name kept
OTHER_KINDS = "(other)"


def party_parameter(track: str) -> str:
    """The custom parameter that names a track's party: inbound_party, outbound_party."""
    return f"{track}_party"


@dataclass(frozen=True)
class Started:
    """Twilio's `start`: which call and stream this is. Audio follows at `sample_rate` Hz."""

    stream_sid: str  # "MZ..." — unique per stream
    call_sid: str  # "CA..."
    account_sid: str  # "AC..."
    tracks: tuple[str, ...]  # tracks Twilio will send: ("inbound",) or ("inbound", "outbound")
    custom_parameters: dict = field(default_factory=dict)  # <Parameter> names -> values, less token
    sample_rate: int = TWILIO_RATE
    # The `token` <Parameter>, kept apart so it never reaches metadata, logs or reprs. Twilio
    # drops query strings from <Stream url>, so this is how a Twilio stream authenticates.
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, eq=False)
class Audio:
    """One `media` message of the analyzed track, decoded."""

    samples: np.ndarray  # int16, shape (n,), mono at 8 kHz
    track: str
    chunk: int  # Twilio's chunk counter (1, 2, ...) for this track
    timestamp_ms: int  # Twilio's presentation time: ms since the stream started
    party: str | None = None  # the track's party when both tracks are analyzed, else None


@dataclass(frozen=True)
class Marked:
    """A `mark` came back: audio the server sent before it has played (bidirectional streams)."""

    name: str


@dataclass(frozen=True)
class Dtmf:
    """The caller pressed a key."""

    digit: str
    track: str  # Twilio says "inbound_track"


@dataclass(frozen=True)
class Stopped:
    """Twilio's `stop`: the stream ended (hang-up, <Stop>, or the stream was closed)."""


TwilioEvent = Started | Audio | Marked | Dtmf | Stopped


class TwilioState(enum.Enum):
    """Where a Twilio stream is in its life."""

    AWAITING_START = "awaiting_start"  # before `start` (a `connected` may come first)
    STREAMING = "streaming"
    STOPPED = "stopped"


def _field(obj: Mapping, name: str, kind: type, where: str, max_chars: int | None = None):
    """obj[name], required to be of `kind` (str, dict, list), else `bad_message`; strings valid Unicode."""
    value = obj.get(name)
    if not isinstance(value, kind):
        raise ProtocolError(
            "bad_message", f"Twilio {where} needs `{name}` as a {kind.__name__}, got {show(value)}"
        )
    if isinstance(value, str):
        _check_text(value, f"{where} `{name}`", max_chars)
    return value


def _check_text(value: str, what: str, max_chars: int | None = None) -> None:
    """A string Twilio sent must be valid Unicode (JSON admits lone surrogates) and, where capped, short."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("bad_message", f"Twilio {what} is not valid Unicode text: {show(value)}") from None
    if max_chars is not None and len(value) > max_chars:
        raise ProtocolError("bad_message", f"Twilio {what} must be at most {max_chars} characters, got {len(value)}")


def _counter(value, name: str, where: str) -> int:
    """Twilio's counters are decimal strings ("12"); accept ints too."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ProtocolError(
        "bad_message", f"Twilio {where} `{name}` must be a non-negative integer, got {show(value)}"
    )


class TwilioStream:
    """One `/ws/twilio` connection: validates Twilio's message sequence and decodes its audio.

    As a `WireProtocol` its `handle` gives the server's actions; its `fail` closes on any error
    before the session runs, since Twilio cannot correct a start.

    Media of the analyzed tracks is returned as `Audio`; that of a track not analyzed is checked
    and dropped. `track` fixes the one track analyzed; None (default) lets the `start` decide:
    its `track` <Parameter>, else every track Twilio streams. `started` holds the `start`;
    `analyzed` the tracks analyzed and `parties` their party names when there are two.
    """

    source = "twilio"
    max_messages_before_start = TWILIO_BEFORE_START  # connected, start, and a little slack

    def __init__(self, track: str | None = None):
        if track is not None and track not in TRACKS:
            raise ValueError(f"track must be one of {', '.join(TRACKS)}, got {track!r}")
        self.track = track
        self.state = TwilioState.AWAITING_START
        self.started: Started | None = None
        self.analyzed: tuple[str, ...] = ()
        self.parties: dict[str, str] = {}  # track -> party name, when the call is split
        self.last_sequence = 0  # highest sequenceNumber seen
        self.ignored: Counter[str] = Counter()  # unknown event types received, for logs
        self.media_seconds = 0.0  # audio received per track, in seconds: paces marks and DTMF
        self.notices = 0  # marks and DTMF digits passed on

    def receive(self, text: str) -> list[TwilioEvent]:
        """One text message from Twilio -> zero or one event (a list, to stay extensible)."""
        message = loads_object(text)
        if self.state is TwilioState.STOPPED:
            raise ProtocolError(
                "twilio_sequence", f"Twilio sent {show(message.get('event'))} after stop"
            )
        kind = _field(message, "event", str, "message")
        self._check_sequence(message, kind[:MAX_IGNORED_NAME])
        if kind == "connected":
            if self.state is not TwilioState.AWAITING_START:
                raise ProtocolError("twilio_sequence", "Twilio sent connected after start")
            return []
        if kind == "start":
            return [self._start(message)]
        if kind not in ("media", "dtmf", "mark", "stop"):
            # Counted for logs, but only so many names, each cut short: names are the sender's.
            name = kind[:MAX_IGNORED_NAME]
            if name in self.ignored or len(self.ignored) < MAX_IGNORED_KINDS:
                self.ignored[name] += 1
            else:
                self.ignored[OTHER_KINDS] += 1
            return []
        if self.state is TwilioState.AWAITING_START:
            raise ProtocolError("twilio_sequence", f"Twilio sent {show(kind)} before start")
        sid = message.get("streamSid")
        if sid is not None and sid != self.started.stream_sid:
            raise ProtocolError(
                "twilio_sequence",
                f"Twilio {kind} is for stream {show(sid)}, this connection streams "
                f"{show(self.started.stream_sid)}",
            )
        if kind == "media":
            return self._media(message)
        if kind == "dtmf":
            body = _field(message, "dtmf", dict, "dtmf")
            track = body.get("track", "inbound_track")
            if not isinstance(track, str):
                raise ProtocolError("bad_message", f"Twilio dtmf `track` must be a string, got {show(track)}")
            _check_text(track, "dtmf `track`", MAX_TELEPHONY_CHARS)
            return self._notice(Dtmf(_field(body, "digit", str, "dtmf", MAX_TELEPHONY_CHARS), track))
        if kind == "mark":
            body = _field(message, "mark", dict, "mark")
            return self._notice(Marked(_field(body, "name", str, "mark", MAX_TELEPHONY_CHARS)))
        self.state = TwilioState.STOPPED
        return [Stopped()]

    # -- as a WireProtocol (stream.protocol.wire) --
    @property
    def done(self) -> bool:
        """True after Twilio's `stop`."""
        return self.state is TwilioState.STOPPED

    def handle(self, text: str | None, data: bytes | None) -> list[Action]:
        """One WebSocket message -> the server's actions: open (token to check), feed a track, notices, end."""
        if text is None:
            raise ProtocolError("text_expected", "Twilio Media Streams messages are JSON text")
        actions: list[Action] = []
        for event in self.receive(text):
            if isinstance(event, Started):
                start = start_message_for(event, self.parties)
                actions.append(OpenSession(start, tuple(self.parties.values()), "int16", token=event.token))
            elif isinstance(event, Audio):
                actions.append(FeedAudio(event.samples, event.party))
            elif isinstance(event, Stopped):
                actions.append(EndSession(reply=False))
            else:
                kind = "mark" if isinstance(event, Marked) else "dtmf"
                actions.append(Notice({"event": kind, **event.__dict__}))
        return actions

    def refused(self) -> None:
        """Twilio does not retry a start: the connection is closed (see `fail`)."""

    def fail(self, exc: EmostreamError, started: bool) -> Verdict:
        """Twilio takes no messages back; closing errors close, and so does any error before a session runs."""
        code = close_code(getattr(exc, "code", "error"))
        if code is None and not started:
            code = CloseCode.POLICY  # nothing to analyze without a start the server took
        return Verdict(None, code)

    def _notice(self, event: Marked | Dtmf) -> list[TwilioEvent]:
        """A mark or DTMF digit, unless the call already sent more than its audio allows (then dropped, counted)."""
        allowed = NOTICE_BURST + NOTICES_PER_SECOND * self.media_seconds
        if self.notices >= allowed:
            self.ignored["(too many marks and dtmf)"] += 1
            return []
        self.notices += 1
        return [event]

    def _check_sequence(self, message: Mapping, kind: str):
        """sequenceNumber, where present, must increase (gaps are allowed)."""
        if "sequenceNumber" not in message:
            return
        n = _counter(message["sequenceNumber"], "sequenceNumber", kind)
        if n <= self.last_sequence:
            raise ProtocolError(
                "twilio_sequence",
                f"Twilio {kind} has sequenceNumber {n}, not after the previous {self.last_sequence}",
            )
        self.last_sequence = n

    def _start(self, message: Mapping) -> Started:
        if self.state is not TwilioState.AWAITING_START:
            raise ProtocolError("twilio_sequence", "Twilio sent start twice")
        body = _field(message, "start", dict, "start")
        fmt = _field(body, "mediaFormat", dict, "start")
        got = (fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels", TWILIO_CHANNELS))
        if got != (TWILIO_ENCODING, TWILIO_RATE, TWILIO_CHANNELS):
            raise ProtocolError(
                "twilio_format",
                f"Twilio media must be {TWILIO_ENCODING} at {TWILIO_RATE} Hz, "
                f"{TWILIO_CHANNELS} channel; got encoding {show(got[0])}, sampleRate {show(got[1])}, "
                f"channels {show(got[2])}",
            )
        tracks = body.get("tracks", [self.track or "inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise ProtocolError(
                "bad_message", f"Twilio start `tracks` must be a list of strings, got {show(tracks)}"
            )
        for track in tracks:
            if track not in TRACKS:
                raise ProtocolError(
                    "unknown_track", f"Twilio start streams a track {track!r}; known tracks: {', '.join(TRACKS)}"
                )
        params = body.get("customParameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError(
                "bad_message", f"Twilio start `customParameters` must be an object, got {show(params)}"
            )
        for key, value in params.items():  # checked before the token is: nothing unsendable gets past
            _check_text(key, "start <Parameter> name")
            if isinstance(value, str):
                _check_text(value, f"start <Parameter> {show(key)}")
        analyzed = self._analyzed(tracks, params)
        parties = self._parties(analyzed, params)
        sid = _field(body, "streamSid", str, "start")
        if not sid:
            raise ProtocolError("bad_message", "Twilio start has an empty streamSid")
        outer = message.get("streamSid")
        if outer is not None and outer != sid:
            raise ProtocolError("bad_message", f"Twilio start names two streams: {show(outer)} and {show(sid)}")
        params = dict(params)
        token = params.pop(TOKEN_PARAMETER, None)
        self.started = Started(
            stream_sid=sid,
            call_sid=_field(body, "callSid", str, "start"),
            account_sid=_field(body, "accountSid", str, "start"),
            tracks=tuple(tracks),
            custom_parameters=params,
            sample_rate=TWILIO_RATE,
            token=token if isinstance(token, str) else None,
        )
        self.analyzed, self.parties = analyzed, parties
        self.state = TwilioState.STREAMING
        return self.started

    def _analyzed(self, tracks: list[str], params: Mapping) -> tuple[str, ...]:
        """The tracks to analyze: the fixed one, the `track` <Parameter>'s, or all streamed."""
        chosen = params.get(TRACK_PARAMETER)
        if self.track is not None:
            wanted = (self.track,)
        elif chosen is None:
            wanted = tuple(t for t in TRACKS if t in tracks)
        elif chosen == BOTH:
            wanted = TRACKS
        elif chosen in TRACKS:
            wanted = (chosen,)
        else:
            raise ProtocolError(
                "unknown_track",
                f"the {TRACK_PARAMETER!r} <Parameter> must be one of {', '.join((*TRACKS, BOTH))}, got {chosen!r}",
            )
        missing = [t for t in wanted if t not in tracks] or ([] if wanted else ["inbound"])
        if missing:
            raise ProtocolError(
                "twilio_format",
                f"Twilio streams the track(s) {', '.join(tracks) or 'none'}; the {' and '.join(missing)} "
                f"track is analyzed: stream it (<Stream track=\"{missing[0]}_track\"> or both_tracks)",
            )
        return wanted

    @staticmethod
    def _parties(analyzed: tuple[str, ...], params: Mapping) -> dict[str, str]:
        """Party names of the analyzed tracks when there are two; {} for a single track."""
        for track in TRACKS:
            if party_parameter(track) in params and track not in analyzed:
                raise ProtocolError(
                    "unknown_track",
                    f"the {party_parameter(track)!r} <Parameter> names the {track} track, which is not analyzed",
                )
        if len(analyzed) < 2:
            return {}
        names = [params.get(party_parameter(t), DEFAULT_PARTIES[t]) for t in analyzed]
        with party_errors():
            check_party_names(names, "the party <Parameter>s (" + ", ".join(map(party_parameter, analyzed)) + ")")
        return dict(zip(analyzed, names))

    def _media(self, message: Mapping) -> list[TwilioEvent]:
        body = _field(message, "media", dict, "media")
        track = body.get("track", self.analyzed[0])
        payload = _field(body, "payload", str, "media")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("bad_payload", f"Twilio media payload is not valid base64: {exc}") from None
        chunk = _counter(body.get("chunk", 0), "chunk", "media")
        timestamp = _counter(body.get("timestamp", 0), "timestamp", "media")
        if track not in TRACKS:
            raise ProtocolError("unknown_track", f"Twilio media of a track {track!r}; known tracks: {', '.join(TRACKS)}")
        if track == self.analyzed[0]:
            self.media_seconds += len(data) / TWILIO_RATE  # one μ-law byte per sample
        if track not in self.analyzed:
            return []
        return [Audio(mulaw.decode(data), track, chunk, timestamp, self.parties.get(track))]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def session_id_for(started: Started) -> str:
    """A session id for a Twilio stream: "twilio-<streamSid>", made safe for SESSION_ID_RE.

    Twilio's stream SIDs ("MZ" + 32 hex digits) pass through unchanged; anything else has unsafe
    characters replaced by '_' and, if that changed or cut it, a hash of the original appended
    so that different SIDs stay different.
    """
    safe = _UNSAFE.sub("_", started.stream_sid)
    name = f"twilio-{safe}"
    if safe == started.stream_sid and len(name) <= 64:
        return name
    digest = hashlib.sha256(started.stream_sid.encode("utf-8")).hexdigest()[:12]
    return f"twilio-{safe[:64 - len('twilio--') - len(digest)]}-{digest}"


def start_message_for(started: Started, parties: Mapping[str, str] | None = None) -> StartMessage:
    """The native `start` a Twilio stream amounts to: μ-law-decoded int16 mono at 8 kHz.

    The samples `Audio` carries are already decoded, so `encoding` records where they came
    from. A custom parameter `context` becomes the session context (cut to 2000 characters);
    the call's SIDs and the custom parameters (never the token) go into `metadata["twilio"]`,
    with `parties` (track -> party name, `TwilioStream.parties`) when both tracks are analyzed.
    """
    params = started.custom_parameters
    context = params.get("context")
    context = check_context(context[:MAX_CONTEXT_CHARS] if isinstance(context, str) else None)
    metadata = {
        "twilio": {
            "stream_sid": started.stream_sid,
            "call_sid": started.call_sid,
            "account_sid": started.account_sid,
            "tracks": list(started.tracks),
            "custom_parameters": params,
        }
    }
    if parties:
        metadata["twilio"]["parties"] = dict(parties)
    return StartMessage(
        sample_rate=started.sample_rate,
        encoding="mulaw",
        channels=1,
        session_id=session_id_for(started),
        context=context,
        metadata=check_metadata(metadata),
    )


__all__ = [
    "BOTH",
    "DEFAULT_PARTIES",
    "TOKEN_PARAMETER",
    "TRACKS",
    "TRACK_PARAMETER",
    "TWILIO_CHANNELS",
    "TWILIO_ENCODING",
    "TWILIO_RATE",
    "Audio",
    "Dtmf",
    "Marked",
    "Started",
    "Stopped",
    "TwilioEvent",
    "TwilioState",
    "TwilioStream",
    "party_parameter",
    "session_id_for",
    "start_message_for",
]
