"""Genesys Cloud AudioHook, protocol version 2, monitor side (`/ws/audiohook`), sans I/O.

Genesys (the client) opens a WebSocket whose upgrade request carries `Audiohook-Session-Id`,
`Audiohook-Organization-Id`, `Audiohook-Correlation-Id`, `X-API-KEY` and, when the integration
has a client secret, an HTTP Message Signature (stream.protocol.http_signature); the server
shell checks those and hands the outcome in as a `Handshake`. Then every text message is a JSON
object

    {"version": "2", "id": <session uuid>, "type": ..., "seq": n, "serverseq": m,
     "position": "PT12.34S", "parameters": {...}}

with `seq` counting the client's messages from 1 without gaps, `serverseq` the last server
message the client has seen, and `position` the client's place in the audio stream (an ISO 8601
duration in seconds). The server answers with `{"version", "id", "type", "seq", "clientseq",
"parameters"}`, numbering its own messages from 1.

The session: `open` (organization, conversation, participant, the media formats offered,
`customConfig`, `inputVariables`) is answered `opened` with the one format chosen — PCMU at
8000 Hz, `external` and `internal` interleaved, or either alone — and `startPaused: false`; then
binary messages carry the audio. `ping` is answered `pong`; `paused` / `resumed` (the client
paused its audio, e.g. a secure pause) and `discarded` (audio the client dropped) mark gaps;
`update` changes the language; `error` reports a client-side problem; `close` ends the session,
answered `closed`. Anything wrong is answered `disconnect` (reason `unauthorized` or `error`,
with an `info` that says what), after which only `close` → `closed` follows.

As a `WireProtocol`, `AudioHookStream` hands out `OpenSession` (two parties, "caller" for
`external` and "agent" for `internal` unless `external_party` / `internal_party` in
`customConfig` or `inputVariables` rename them), `FeedAudio` ((n, 2) frames of a stereo stream,
mono samples otherwise), `Notice` (pauses, resumptions and discarded audio, recorded), `Reply`
(its own messages) and `EndSession`. docs/connectors/audiohook.md.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.errors import EmostreamError

from . import mulaw
from .closing import CloseCode
from .limits import AUDIOHOOK_BEFORE_START
from .native import (
    MAX_CONTEXT_CHARS,
    MAX_ERROR_CHARS,
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
from .wire import Action, EndSession, FeedAudio, Notice, OpenSession, Reply, Verdict

VERSION = "2"
MEDIA_TYPE = "audio"
MEDIA_FORMAT = "PCMU"  # G.711 μ-law, one byte per sample per channel
MEDIA_RATE = 8000
CHANNELS = ("external", "internal")  # external: the customer's side of the call; internal: the agent's
DEFAULT_PARTIES = {"external": "caller", "internal": "agent"}
CONTEXT_KEY = "context"  # a customConfig / inputVariables entry that becomes the session's context
NULL_UUID = "00000000-0000-0000-0000-000000000000"  # the conversation id of Genesys's connection probe
CLIENT_TYPES = ("open", "close", "discarded", "error", "paused", "ping", "resumed", "update")
CLOSE_REASONS = ("end", "error", "disconnect", "reconnect")
MAX_TEXT_CHARS = 65535  # a text message longer than this is refused, as the reference server does
MAX_FRAME_SECONDS = 2.0  # audio in one binary message, per channel (Genesys sends fractions of a second)
MAX_AFTER_DISCONNECT = 500  # messages read after a `disconnect` while waiting for `close` (10 s of 20 ms frames)
# Errors after which the connection cannot go on: `disconnect`, then the close the native protocol gives them.
FATAL = ("start_timeout", "too_many_messages")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DURATION = re.compile(r"PT(\d+(?:\.\d*)?|\.\d+)S")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")


def party_parameter(channel: str) -> str:
    """The customConfig / inputVariables entry that names a channel's party: external_party, internal_party."""
    return f"{channel}_party"


def parse_duration(value, what: str) -> float:
    """An AudioHook duration ("PT1.5S", "PT0S") in seconds, else `bad_message`."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ProtocolError("bad_message", f"AudioHook {what} must be a duration like \"PT1.5S\", got {show(value)}")
    return float(match.group(1))


def is_uuid(value) -> bool:
    """A UUID in its 8-4-4-4-12 hexadecimal form."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


@dataclass(frozen=True)
class Handshake:
    """What the server shell found in the WebSocket upgrade request."""

    session_id: str | None  # Audiohook-Session-Id
    organization_id: str | None  # Audiohook-Organization-Id
    correlation_id: str | None = None  # Audiohook-Correlation-Id
    refusal: str | None = None  # why the API key or signature was refused; None: authenticated


@dataclass(frozen=True)
class Media:
    """One media format: type, format, rate and the channels in their order in each frame."""

    channels: tuple[str, ...]
    format: str = MEDIA_FORMAT
    rate: int = MEDIA_RATE
    type: str = MEDIA_TYPE

    def to_dict(self) -> dict:
        return {"type": self.type, "format": self.format, "channels": list(self.channels), "rate": self.rate}


class AudioHookState(enum.Enum):
    """Where an AudioHook session is in its life."""

    AWAITING_OPEN = "awaiting_open"
    ACTIVE = "active"  # opened: audio flows
    PAUSED = "paused"  # the client paused its audio
    DISCONNECTING = "disconnecting"  # the server sent `disconnect`: only `close` (and `ping`) are answered
    CLOSED = "closed"  # `closed` sent: nothing more is read


def supported(offer) -> Media | None:
    """The offered format as a `Media` when this server takes it, else None."""
    if not isinstance(offer, Mapping):
        return None
    channels = offer.get("channels")
    if (offer.get("type") != MEDIA_TYPE or offer.get("format") != MEDIA_FORMAT or offer.get("rate") != MEDIA_RATE
            or isinstance(offer.get("rate"), bool) or not isinstance(channels, list) or not 1 <= len(channels) <= 2
            or len(set(map(str, channels))) != len(channels) or not all(c in CHANNELS for c in channels)):
        return None
    return Media(tuple(channels))


def choose_media(offers) -> Media | None:
    """The format to take from those offered: the first stereo one (each voice analyzed apart), else the first mono."""
    taken = [m for m in map(supported, offers) if m is not None]
    stereo = [m for m in taken if len(m.channels) == 2]
    return (stereo or taken or [None])[0]


def _describe(offers) -> str:
    shown = []
    for offer in offers[:4]:
        if isinstance(offer, Mapping):
            shown.append(f"{offer.get('format')}/{offer.get('rate')} {offer.get('channels')}")
        else:
            shown.append(show(offer))
    return "; ".join(shown) + (" ..." if len(offers) > 4 else "") if shown else "none"


class AudioHookStream:
    """One `/ws/audiohook` connection: AudioHook v2's message sequence, its audio and its replies.

    `handshake` is what the upgrade request said (its session id, organization, and whether its
    credentials passed); `max_frame_bytes` caps a binary message (default: MAX_FRAME_SECONDS of
    stereo PCMU). Every error is answered with one `disconnect` and the session then only waits
    for the client's `close`, as the protocol has it; errors that end the connection at once
    (no `open` in time, too many messages) are FATAL.
    """

    source = "audiohook"
    max_messages_before_start = AUDIOHOOK_BEFORE_START

    def __init__(self, handshake: Handshake, max_frame_bytes: int | None = None):
        self.handshake = handshake
        self.max_frame_bytes = max_frame_bytes or round(MAX_FRAME_SECONDS * MEDIA_RATE * len(CHANNELS))
        self.state = AudioHookState.AWAITING_OPEN
        self.session_id = handshake.session_id if is_uuid(handshake.session_id) else None
        self.seq = 0  # the server's last message number
        self.clientseq = 0  # the client's last message number
        self.media: Media | None = None  # the format chosen in `opened`
        self.parties: dict[str, str] = {}  # channel -> party name, when both channels are analyzed
        self.analyzing = False  # an analysis session is open (not for a connection probe, nor before `opened`)
        self.probe = False  # Genesys's connection probe: opened and closed, nothing analyzed
        self.samples = 0  # samples received per channel
        self.position = 0.0  # the client's latest stream position, seconds
        self.language: str | None = None
        self.rtt: float | None = None  # the round-trip time the client last measured (ping), seconds
        self.client_errors: list[dict] = []  # the client's `error` messages (code, message), the first few
        self.close_reason: str | None = None
        self.after_disconnect = 0
        self.ignored_audio = 0  # binary messages dropped (a probe's, or in flight after `disconnect`)

    # -- as a WireProtocol (stream.protocol.wire) --
    @property
    def done(self) -> bool:
        """True once `closed` is sent."""
        return self.state is AudioHookState.CLOSED

    def handle(self, text: str | None, data: bytes | None) -> list[Action]:
        """One WebSocket message -> the server's actions."""
        if self.state is AudioHookState.CLOSED:
            raise ProtocolError("already_stopped", "AudioHook sent a message after the session was closed")
        if self.state is AudioHookState.DISCONNECTING:
            self.after_disconnect += 1
            if self.after_disconnect > MAX_AFTER_DISCONNECT:
                raise ProtocolError("too_many_messages",
                                    f"more than {MAX_AFTER_DISCONNECT} messages after `disconnect` without `close`")
            if text is None:
                self.ignored_audio += 1
                return []
            return self._text(text, closing_only=True)
        if text is None:
            return self._audio(data or b"")
        return self._text(text)

    def refused(self) -> None:
        """The server could not open the analysis session: `opened` was not sent, so its number is free again."""
        self.seq -= 1
        self.analyzing = False

    def fail(self, exc: EmostreamError, started: bool) -> Verdict:
        """Any error: one `disconnect` (reason `unauthorized` for credentials, else `error`), then wait for `close`.

        Errors after `disconnect` are not answered again; errors after `closed` only close the
        connection where the native protocol's code does (a session that failed while flushing).
        """
        code = getattr(exc, "code", "error")
        if self.state is AudioHookState.CLOSED:
            return Verdict(None, close_code(code))
        fatal = code in FATAL
        if self.state is AudioHookState.DISCONNECTING:
            return Verdict(None, CloseCode.POLICY if fatal else None)
        reason = "unauthorized" if code in ("unauthorized", "forbidden") else "error"
        info = f"{code}: {exc}"
        if len(info) > MAX_ERROR_CHARS:
            info = info[: MAX_ERROR_CHARS - 3] + "..."
        self.state = AudioHookState.DISCONNECTING
        return Verdict(self._message("disconnect", {"reason": reason, "info": info}),
                       (close_code(code) or CloseCode.POLICY) if fatal else None)

    # -- messages --
    def _message(self, kind: str, parameters: dict) -> dict:
        """A server message, numbered."""
        self.seq += 1
        return {"version": VERSION, "type": kind, "seq": self.seq, "clientseq": self.clientseq,
                "id": self.session_id or NULL_UUID, "parameters": parameters}

    def _text(self, text: str, closing_only: bool = False) -> list[Action]:
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError("message_too_large",
                                f"AudioHook text messages must be at most {MAX_TEXT_CHARS} characters, got {len(text)}")
        message = loads_object(text)
        kind = self._check_envelope(message, strict=not closing_only)
        if closing_only and kind not in ("close", "ping"):
            return []  # after `disconnect` only the close transaction matters
        params = message["parameters"]
        if kind == "open":
            return self._open(params)
        if kind == "close":
            return self._close(params)
        if kind == "ping":
            rtt = params.get("rtt")
            if rtt is not None:
                self.rtt = parse_duration(rtt, "ping `rtt`")
            return [Reply(self._message("pong", {}))]
        if kind == "error":
            return self._client_error(params)
        if self.state is AudioHookState.AWAITING_OPEN:
            raise ProtocolError("not_started", f"AudioHook sent {kind} before the open transaction")
        if kind == "update":
            language = params.get("language")
            if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
                raise ProtocolError("bad_message", f"AudioHook update needs a `language` like \"en-US\", got {show(language)}")
            self.language = language
            return []
        if kind == "paused":
            if self.state is not AudioHookState.ACTIVE:
                return []  # already paused: the message only confirms it
            self.state = AudioHookState.PAUSED
            return self._notice({"event": "paused", "position": self.position})
        start = parse_duration(params.get("start"), f"{kind} `start`")
        discarded = parse_duration(params.get("discarded"), f"{kind} `discarded`")
        if kind == "resumed":
            if self.state is not AudioHookState.PAUSED:
                return []  # not paused: nothing to resume
            self.state = AudioHookState.ACTIVE
        return self._notice({"event": kind, "position": self.position, "start": start, "discarded": discarded})

    def _check_envelope(self, message: Mapping, strict: bool = True) -> str:
        """The fields every client message has, its numbering and its session; returns its `type`.

        Not `strict` (after `disconnect`, whose cause may have been the numbering): `seq` need only
        grow, so that the client's `close` is still answered."""
        if message.get("version") != VERSION:
            raise ProtocolError("bad_message", f"AudioHook `version` must be \"{VERSION}\", got {show(message.get('version'))}")
        kind = message.get("type")
        if not isinstance(kind, str):
            raise ProtocolError("unknown_type", f"AudioHook messages need a string `type`, got {show(kind)}")
        seq = message.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or not (
                seq == self.clientseq + 1 if strict else seq > self.clientseq):
            raise ProtocolError("bad_message", f"AudioHook `seq` must be {self.clientseq + 1} (one more than the "
                                f"previous message's), got {show(seq)}")
        self.clientseq = seq
        serverseq = message.get("serverseq")
        if not isinstance(serverseq, int) or isinstance(serverseq, bool) or not 0 <= serverseq <= self.seq:
            raise ProtocolError("bad_message", f"AudioHook `serverseq` must be an integer from 0 to {self.seq} (the "
                                f"server's messages so far), got {show(serverseq)}")
        sid = message.get("id")
        if not is_uuid(sid):
            raise ProtocolError("bad_message", f"AudioHook `id` must be the session's UUID, got {show(sid)}")
        if self.session_id is None:
            self.session_id = sid  # no Audiohook-Session-Id header: the first message names the session
        elif sid.lower() != self.session_id.lower():
            raise ProtocolError("bad_message", f"AudioHook message for session {show(sid)} on session {self.session_id}")
        self.position = parse_duration(message.get("position"), "`position`")
        if not isinstance(message.get("parameters"), dict):
            raise ProtocolError("bad_message", f"AudioHook `parameters` must be an object, got {show(message.get('parameters'))}")
        if kind not in CLIENT_TYPES:
            raise ProtocolError("unknown_type", f"{show(kind)} is not an AudioHook client message; known: "
                                f"{', '.join(CLIENT_TYPES)}")
        return kind

    def _open(self, params: Mapping) -> list[Action]:
        if self.state is not AudioHookState.AWAITING_OPEN:
            raise ProtocolError("already_started", "AudioHook sent a second open")
        if self.handshake.refusal is not None:
            raise ProtocolError("unauthorized", self.handshake.refusal)
        org = params.get("organizationId")
        if not is_uuid(org):
            raise ProtocolError("bad_message", f"AudioHook open needs `organizationId` as a UUID, got {show(org)}")
        if self.handshake.organization_id is not None and org.lower() != self.handshake.organization_id.lower():
            raise ProtocolError("unauthorized", "the open's organizationId is not the Audiohook-Organization-Id "
                                "the connection was made for")
        conversation = params.get("conversationId")
        if not is_uuid(conversation):
            raise ProtocolError("bad_message", f"AudioHook open needs `conversationId` as a UUID, got {show(conversation)}")
        offers = params.get("media")
        if not isinstance(offers, list):
            raise ProtocolError("bad_message", f"AudioHook open needs `media` as a list, got {show(offers)}")
        participant = params.get("participant", {})
        config, variables = params.get("customConfig", {}), params.get("inputVariables", {})
        for name, value in (("participant", participant), ("customConfig", config), ("inputVariables", variables)):
            if not isinstance(value, dict):
                raise ProtocolError("bad_message", f"AudioHook open `{name}` must be an object, got {show(value)}")
        language = params.get("language")
        if language is not None and (not isinstance(language, str) or not _LANGUAGE.fullmatch(language)):
            raise ProtocolError("bad_message", f"AudioHook open `language` must be like \"en-US\", got {show(language)}")
        self.language = language
        opened: dict = {"startPaused": False}
        if params.get("supportedLanguages") is True:
            opened["supportedLanguages"] = []  # emotion is analyzed in any language; none is transcribed
        if conversation == NULL_UUID:  # Genesys checks that the server answers: no call, nothing to analyze
            media = choose_media(offers)
            self.probe, self.media = True, media
            self.state = AudioHookState.ACTIVE
            return [Reply(self._message("opened", {"media": [media.to_dict()] if media else [], **opened}))]
        media = choose_media(offers)
        if media is None:
            raise ProtocolError("unsupported_encoding",
                                f"no offered media format is supported: this server takes {MEDIA_FORMAT} at {MEDIA_RATE} Hz, "
                                f"channels external and internal or either alone; offered: {_describe(offers)}")
        settings = {**_strings(config), **_strings(variables)}  # an input variable overrides the integration's value
        parties = self._parties(media, settings)
        try:
            metadata = check_metadata({"audiohook": self._metadata(org, conversation, participant, media, parties,
                                                                   config, variables)})
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"customConfig and inputVariables are kept as the session's metadata: "
                                f"{exc.message}") from None
        start = StartMessage(
            sample_rate=MEDIA_RATE,
            encoding="mulaw",
            channels=len(media.channels),
            session_id=f"audiohook-{self.session_id.lower()}",
            context=_context(settings.get(CONTEXT_KEY)),
            metadata=metadata,
            split_channels=bool(parties),
            parties=tuple(parties.values()),
        )
        self.media, self.parties = media, parties
        self.state = AudioHookState.ACTIVE
        self.analyzing = True
        opened_message = self._message("opened", {"media": [media.to_dict()], **opened})
        return [OpenSession(start, start.parties, "int16"), Reply(opened_message)]

    def _parties(self, media: Media, settings: Mapping) -> dict[str, str]:
        """Channel -> party name when both channels are analyzed; {} for one."""
        for channel in CHANNELS:
            if party_parameter(channel) in settings and channel not in media.channels:
                raise ProtocolError("bad_parties", f"{party_parameter(channel)!r} names the {channel} channel, which "
                                    f"is not streamed (media: {', '.join(media.channels)})")
        if len(media.channels) < 2:
            return {}
        names = [settings.get(party_parameter(c), DEFAULT_PARTIES[c]) for c in media.channels]
        with party_errors():
            check_party_names(names, "the party names (customConfig / inputVariables external_party, internal_party)")
        return dict(zip(media.channels, names))

    def _metadata(self, org: str, conversation: str, participant: Mapping, media: Media, parties: dict,
                  config: dict, variables: dict) -> dict:
        """What the session records about the call: ids, channels, parties and the Architect settings.

        The participant's phone numbers and name (`ani`, `aniName`, `dnis`) are left out: they
        would reach every monitor, MQTT and the recordings."""
        body = {
            "session_id": self.session_id,
            "organization_id": org,
            "conversation_id": conversation,
            "correlation_id": self.handshake.correlation_id,
            "participant_id": participant.get("id") if isinstance(participant.get("id"), str) else None,
            "channels": list(media.channels),
            "language": self.language,
            "custom_config": config,
            "input_variables": variables,
        }
        if parties:
            body["parties"] = dict(parties)
        return {k: v for k, v in body.items() if v is not None}

    def _close(self, params: Mapping) -> list[Action]:
        reason = params.get("reason")
        if reason not in CLOSE_REASONS:
            raise ProtocolError("bad_message", f"AudioHook close `reason` must be one of {', '.join(CLOSE_REASONS)}, "
                                f"got {show(reason)}")
        self.close_reason = reason
        self.state = AudioHookState.CLOSED
        actions: list[Action] = [Reply(self._message("closed", {}))]
        if self.analyzing:
            actions.append(EndSession(reply=False))  # after `closed`: the client need not wait for the flush
        return actions

    def _client_error(self, params: Mapping) -> list[Action]:
        code, message = params.get("code"), params.get("message")
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
            raise ProtocolError("bad_message", "AudioHook error needs an integer `code` and a string `message`")
        if len(self.client_errors) < 8:
            self.client_errors.append({"code": code, "message": message[:200]})
        return []

    def _notice(self, body: dict) -> list[Action]:
        """A gap in the audio, for the monitors and the recording: where the analysis stands (`time`) and
        the client's position; a probe has no session to note it in."""
        if not self.analyzing:
            return []
        return [Notice({**body, "time": round(self.samples / MEDIA_RATE, 3)})]

    def _audio(self, data: bytes) -> list[Action]:
        if self.state is AudioHookState.AWAITING_OPEN:
            raise ProtocolError("audio_before_start", "AudioHook sent audio before the open transaction completed")
        if self.state is AudioHookState.PAUSED:
            raise ProtocolError("bad_message", "AudioHook sent audio while its stream is paused (after `paused`)")
        if len(data) > self.max_frame_bytes:
            raise ProtocolError("message_too_large", f"AudioHook audio frames must be at most {self.max_frame_bytes} "
                                f"bytes, got {len(data)}")
        if not self.analyzing or self.media is None:
            self.ignored_audio += 1  # a connection probe's: nothing is analyzed
            return []
        channels = len(self.media.channels)
        if len(data) % channels:
            raise ProtocolError("odd_byte_count", f"AudioHook audio of {channels} channels must be whole frames of "
                                f"{channels} bytes, got {len(data)} bytes")
        if not data:
            return []
        samples = mulaw.decode(data)
        if channels > 1:
            samples = samples.reshape(-1, channels)
        self.samples += len(samples)
        return [FeedAudio(np.ascontiguousarray(samples))]


def _strings(settings: Mapping) -> dict[str, str]:
    """The string entries of customConfig / inputVariables (the only ones that name parties or a context)."""
    return {k: v for k, v in settings.items() if isinstance(k, str) and isinstance(v, str)}


def _context(value: str | None) -> str | None:
    return check_context(value[:MAX_CONTEXT_CHARS] if isinstance(value, str) else None)


__all__ = [
    "CHANNELS",
    "CLIENT_TYPES",
    "DEFAULT_PARTIES",
    "MAX_FRAME_SECONDS",
    "MAX_TEXT_CHARS",
    "MEDIA_FORMAT",
    "MEDIA_RATE",
    "NULL_UUID",
    "VERSION",
    "AudioHookState",
    "AudioHookStream",
    "Handshake",
    "Media",
    "choose_media",
    "is_uuid",
    "parse_duration",
    "party_parameter",
    "supported",
]
