"""The JSON-then-PCM WebSocket family, sans I/O: one JSON text preamble, then binary L16 audio.

Three platforms stream a call this way, each with its own preamble (a `Dialect`):

- Vonage Voice API (`/ws/vonage`): an NCCO `connect` to a `websocket` endpoint. The first message is
  `{"event": "websocket:connected", "content-type": "audio/l16;rate=16000", ...}` with the
  endpoint's `headers` as further fields; audio is mono 16-bit little-endian PCM at 8 or 16 kHz.
  Later text messages (`websocket:dtmf`, ...) are events.
- jambonz `listen` (`/ws/jambonz`, subprotocol `audio.jambonz.org`): the call's attributes
  (`callSid`, `from`, `to`, ...) with `sampleRate` and `mixType` (`mono`, `mixed`, `stereo`) and
  the verb's `metadata`; then L16 at `sampleRate`, two interleaved channels for `stereo`.
- FreeSWITCH `mod_audio_fork` / `mod_audio_stream` (`/ws/audiofork`, subprotocol
  `audio.drachtio.org`): the metadata given to `uuid_audio_fork ... start`, which must state the
  same `sampleRate` and `mixType` as the command (the module sends only what it is given).

A `stereo` stream is split into two parties, channel 0 the caller's and channel 1 the other side's
("caller" and "agent" unless the preamble's `parties` renames them). None of these platforms reads
messages back, and each ends a call by closing the socket (`ends_on_close`), so errors go to the
server's log; any error before the session runs closes the socket (1008). Mappings and examples:
docs/connectors/vonage.md, jambonz.md, freeswitch.md.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from models.errors import EmostreamError
from vad import INPUT_RATES

from .closing import CloseCode
from .native import (
    MAX_CONTEXT_CHARS,
    ProtocolError,
    StartMessage,
    check_context,
    check_metadata,
    check_party_names,
    close_code,
    decode_audio,
    decode_frames,
    loads_object,
    party_errors,
    show,
)
from .wire import Action, FeedAudio, Notice, OpenSession, Verdict

MIX_TYPES = ("mono", "mixed", "stereo")  # mono: the caller; mixed: both sides in one channel; stereo: one each
STEREO_PARTIES = ("caller", "agent")  # channel 0, channel 1
BEFORE_START = 4  # the preamble comes first; anything else before it closes the socket anyway
MAX_KEPT_TEXT = 256  # characters of a preamble string kept in the session's metadata
MAX_DIGIT_CHARS = 16
NOTICE_BURST = 32  # DTMF digits passed on: a burst, then a few per second of audio
NOTICES_PER_SECOND = 4
SECRET_FIELDS = ("token", "authorization", "password", "secret")  # never copied into metadata
L16 = "audio/l16"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Dialect:
    """One platform's preamble: how its sessions are named and recorded."""

    name: str  # the sessions' source and id prefix: "vonage", "jambonz", "audiofork"
    title: str  # how errors name the platform
    subprotocol: str | None  # what the handshake selects when the platform offers it
    id_fields: tuple[str, ...]  # preamble fields naming the call, first present wins


VONAGE = Dialect("vonage", "Vonage", None, ("uuid", "conversation_uuid"))
JAMBONZ = Dialect("jambonz", "jambonz", "audio.jambonz.org", ("callSid",))
AUDIOFORK = Dialect("audiofork", "audio fork", "audio.drachtio.org", ("uuid", "callSid"))
DIALECTS = {d.name: d for d in (VONAGE, JAMBONZ, AUDIOFORK)}


@dataclass(frozen=True)
class Preamble:
    """What a preamble says about the audio that follows."""

    sample_rate: int
    stereo: bool
    parties: tuple[str, ...]  # the channels' parties when stereo, else ()
    start: StartMessage


def connector_session_id(prefix: str, raw: str) -> str:
    """`<prefix>-<raw>` made safe for SESSION_ID_RE; a hash keeps ids apart where characters were replaced or cut."""
    safe = _UNSAFE.sub("_", raw)
    name = f"{prefix}-{safe}"
    if safe == raw and len(name) <= 64 and not raw.startswith("."):
        return name
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{prefix}-{safe[: 64 - len(prefix) - 2 - len(digest)]}-{digest}"


def l16_rate(content_type, where: str) -> int:
    """The rate of `audio/l16;rate=16000` (Vonage's content-type), else `unsupported_encoding` / `unsupported_rate`."""
    if not isinstance(content_type, str):
        raise ProtocolError("bad_start", f"{where} needs `content-type` as a string, got {show(content_type)}")
    media, *params = [part.strip() for part in content_type.split(";")]
    if media.lower() != L16:
        raise ProtocolError("unsupported_encoding",
                            f"{where} content-type must be {L16};rate=8000 or 16000, got {show(content_type)}")
    rates = [p.split("=", 1)[1].strip() for p in params if p.lower().startswith("rate=")]
    if len(rates) != 1 or not rates[0].isdigit():
        raise ProtocolError("bad_start", f"{where} content-type needs one rate=<Hz>, got {show(content_type)}")
    return check_rate(int(rates[0]), where)


def check_rate(value, where: str) -> int:
    """A sample rate the analysis takes: an integer in INPUT_RATES (FreeSWITCH's "8k"/"16k" read as 8000/16000)."""
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}k", value):
        value = int(value[:-1]) * 1000
    elif isinstance(value, str) and value.isdigit() and len(value) <= 6:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError("bad_start", f"{where} needs `sampleRate` as an integer (Hz), got {show(value)}")
    if value not in INPUT_RATES:
        raise ProtocolError("unsupported_rate",
                            f"{where} audio at {value} Hz is not analyzed; use one of {', '.join(map(str, INPUT_RATES))}")
    return value


def _kept(preamble: Mapping) -> dict:
    """The preamble as metadata: short scalar fields and the platform's `metadata` object, never a secret."""
    kept = {}
    for key, value in preamble.items():
        if not isinstance(key, str) or len(key) > 64 or key.lower() in SECRET_FIELDS or key == "parties":
            continue
        if isinstance(value, str):
            kept[key] = value[:MAX_KEPT_TEXT]
        elif value is None or isinstance(value, (bool, int, float)):
            kept[key] = value
    extra = preamble.get("metadata")
    if isinstance(extra, dict):
        kept["metadata"] = {k: v for k, v in extra.items() if not (isinstance(k, str) and k.lower() in SECRET_FIELDS)}
    return kept


class JsonPcmStream:
    """One connection of the JSON-then-PCM family, as a WireProtocol (stream.protocol.wire).

    The first message must be the dialect's JSON preamble; binary messages are then L16 audio
    (mono, or two interleaved channels when `mixType` is `stereo`); later text messages are the
    platform's events, of which DTMF digits are passed on and the rest counted and ignored.
    """

    max_messages_before_start = BEFORE_START
    ends_on_close = True

    def __init__(self, dialect: Dialect, max_message_bytes: int | None = None):
        self.dialect = dialect
        self.source = dialect.name
        self.max_message_bytes = max_message_bytes
        self.preamble: Preamble | None = None
        self.audio_seconds = 0.0
        self.notices = 0
        self.ignored: Counter[str] = Counter()  # event names received and not used, for logs

    @property
    def done(self) -> bool:
        """Never: these platforms end a call by closing the socket."""
        return False

    def handle(self, text: str | None, data: bytes | None) -> list[Action]:
        """One WebSocket message -> the server's actions: open on the preamble, feed audio, DTMF notices."""
        size = len(data) if data is not None else len((text or "").encode("utf-8", "surrogatepass"))
        if self.max_message_bytes is not None and size > self.max_message_bytes:
            raise ProtocolError("message_too_large", f"messages must be at most {self.max_message_bytes} bytes, got {size}")
        if data is not None:
            return self._audio(data)
        if text is None:
            return []
        if self.preamble is None:
            self.preamble = self.parse_preamble(loads_object(text))
            return [OpenSession(self.preamble.start, self.preamble.parties, "int16")]
        return self._event(loads_object(text))

    def refused(self) -> None:
        """The platform does not send a second preamble: the socket is closed (see `fail`)."""

    def fail(self, exc: EmostreamError, started: bool) -> Verdict:
        """No messages go back; closing errors close, and so does any error before the session runs."""
        code = close_code(getattr(exc, "code", "error"))
        if code is None and not started:
            code = CloseCode.POLICY
        return Verdict(None, code)

    # -- the preamble --
    def parse_preamble(self, message: Mapping) -> Preamble:
        """The dialect's first message -> the session it opens."""
        where = f"the {self.dialect.title} preamble"
        if self.dialect is VONAGE:
            if message.get("event") != "websocket:connected":
                raise ProtocolError("bad_start",
                                    f"{where} must be the websocket:connected event, got event {show(message.get('event'))}")
            rate, mix = l16_rate(message.get("content-type"), where), "mono"
        else:
            if "sampleRate" not in message:
                raise ProtocolError("bad_start", f"{where} needs `sampleRate` (and `mixType` for stereo)")
            rate = check_rate(message["sampleRate"], where)
            mix = message.get("mixType", "mono")
            if mix not in MIX_TYPES:
                raise ProtocolError("bad_start", f"{where} `mixType` must be one of {', '.join(MIX_TYPES)}, got {show(mix)}")
        stereo = mix == "stereo"
        parties = self._parties(message, stereo, where)
        call = next((message[f] for f in self.dialect.id_fields if isinstance(message.get(f), str) and message[f]), None)
        context = message.get("context")
        start = StartMessage(
            sample_rate=rate,
            encoding="pcm_s16le",
            channels=2 if stereo else 1,
            session_id=connector_session_id(self.dialect.name, call) if call else None,
            context=check_context(context[:MAX_CONTEXT_CHARS] if isinstance(context, str) else None),
            metadata=check_metadata({self.dialect.name: {**_kept(message), **({"parties": list(parties)} if parties else {})}}),
            split_channels=stereo,
            parties=parties,
        )
        return Preamble(rate, stereo, parties, start)

    @staticmethod
    def _parties(message: Mapping, stereo: bool, where: str) -> tuple[str, ...]:
        """The two channels' party names of a stereo stream: `parties` (top level or in `metadata`), or the defaults."""
        extra = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
        names = message.get("parties", extra.get("parties"))
        if names is None:
            return STEREO_PARTIES if stereo else ()
        if not stereo:
            raise ProtocolError("bad_parties", f"{where} names parties, but only a stereo stream (mixType stereo) has two")
        with party_errors():
            checked = check_party_names(names, f"{where} `parties`")
            if len(checked) != 2:
                raise ProtocolError("bad_parties", f"{where} `parties` names the 2 channels, got {len(checked)} names")
        return checked

    # -- after the preamble --
    def _audio(self, data: bytes) -> list[Action]:
        if self.preamble is None:
            raise ProtocolError("audio_before_start", f"audio before the {self.dialect.title} preamble (its first, JSON, message)")
        if self.preamble.stereo:
            samples = decode_frames(data, "pcm_s16le", 2)
        else:
            samples = decode_audio(data, "pcm_s16le", 1)
        self.audio_seconds += len(samples) / self.preamble.sample_rate
        return [FeedAudio(samples)]

    def _event(self, message: Mapping) -> list[Action]:
        kind = message.get("event", message.get("type"))
        name = kind[:40] if isinstance(kind, str) else "(no event)"
        if not (isinstance(kind, str) and "dtmf" in kind.lower()):
            self.ignored[name if name in self.ignored or len(self.ignored) < 16 else "(other)"] += 1
            return []
        digit = message.get("digit", message.get("dtmf"))
        if not isinstance(digit, str) or not 0 < len(digit) <= MAX_DIGIT_CHARS or not digit.isprintable():
            raise ProtocolError("bad_message", f"a {self.dialect.title} DTMF event needs its digit as a short string, "
                                f"got {show(digit)}")
        if self.notices >= NOTICE_BURST + NOTICES_PER_SECOND * self.audio_seconds:
            self.ignored["(too many dtmf)"] += 1
            return []
        self.notices += 1
        return [Notice({"event": "dtmf", "digit": digit})]


__all__ = [
    "AUDIOFORK",
    "DIALECTS",
    "JAMBONZ",
    "MIX_TYPES",
    "STEREO_PARTIES",
    "VONAGE",
    "Dialect",
    "JsonPcmStream",
    "Preamble",
    "check_rate",
    "connector_session_id",
    "l16_rate",
]
