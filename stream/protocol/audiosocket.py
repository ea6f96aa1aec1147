"""Asterisk AudioSocket, sans I/O: TCP bytes in, the server's actions out.

AudioSocket (Asterisk's `AudioSocket()` application, its `AudioSocket/` channel driver and ARI's
external media with `encapsulation=audiosocket`) frames everything alike: a kind (1 byte), a
payload length (16 bits, big-endian), the payload. Asterisk sends the UUID the dialplan gave
(kind 0x01, 16 bytes) first, then signed-linear 16-bit little-endian mono audio (0x10 at 8 kHz;
Asterisk 22 and later also 0x11-0x18 for 12, 16, 24, 32, 44.1, 48, 96 and 192 kHz), DTMF digits
(0x03, one ASCII byte), an error (0xff, an optional code byte) and, when the call ends, a hangup
(0x00) or simply the socket's close.

`FrameReader` cuts the byte stream into `Frame`s, whatever the TCP segments; `AudioSocketStream`
is the `WireProtocol` (stream.protocol.wire) the server's socket loop drives. The UUID names the
session, and the dialplan can make two legs of one call one session of two parties (`call_for`):
docs/connectors/asterisk.md. The session opens at the first audio frame, whose kind gives the rate.
Every error is a `ProtocolError` with a registered code; AudioSocket takes no messages back, so
errors go to the server's log and the closing ones (all of them before the session runs) close
the socket — the caller's call goes on: the server never sends a hangup.
"""

from __future__ import annotations

import enum
import re
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from models.errors import EmostreamError
from vad import INPUT_RATES

from .closing import CloseCode
from .native import ProtocolError, StartMessage, check_metadata, check_party_names, close_code, party_errors
from .wire import Action, EndSession, FeedAudio, Notice, OpenSession, Verdict

HEADER_BYTES = 3
MAX_PAYLOAD = 0xFFFF  # the length field's range
KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_ERROR = 0xFF
# Audio kinds and their rates (Asterisk's res_audiosocket: slin, slin12 ... slin192).
AUDIO_KINDS = {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000, 0x15: 44100, 0x16: 48000,
               0x17: 96000, 0x18: 192000}
KIND_NAMES = {KIND_HANGUP: "hangup", KIND_UUID: "uuid", KIND_DTMF: "dtmf", KIND_ERROR: "error",
              **{kind: f"audio at {rate} Hz" for kind, rate in AUDIO_KINDS.items()}}
# What Asterisk's error payload means (docs.asterisk.org, AudioSocket protocol).
ASTERISK_ERRORS = {0x00: "no error", 0x01: "the calling party hung up", 0x02: "frame forwarding error",
                   0x04: "memory (allocation) error"}
DEFAULT_PARTIES = ("caller", "agent")  # the legs' party names unless --audiosocket-parties renames them
BEFORE_START = 16  # frames before the first audio frame (the UUID, DTMF digits, and slack)
MAX_FRAME_SECONDS = 1.0  # Asterisk sends 20 ms frames; one audio frame may carry at most this much
# DTMF digits copied to monitors and MQTT: at most a burst plus a few per second of audio.
NOTICE_BURST = 32
NOTICES_PER_SECOND = 4
# The leg convention: a UUID whose last group is eleven zeros and a digit 1-9 is leg N of the call
# that the first four groups name (docs/connectors/asterisk.md).
LEG_RE = re.compile(r"(?P<call>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4})-0{11}(?P<leg>[1-9])")


@dataclass(frozen=True)
class Frame:
    """One AudioSocket message."""

    kind: int
    payload: bytes


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """A frame as Asterisk writes it (for tests and tools; the server never writes one)."""
    if not 0 <= kind <= 0xFF or len(payload) > MAX_PAYLOAD:
        raise ValueError(f"kind must be a byte and the payload at most {MAX_PAYLOAD} bytes")
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def uuid_frame(value: str) -> bytes:
    """The first frame Asterisk sends: the dialplan's UUID, 16 bytes."""
    return encode_frame(KIND_UUID, uuidlib.UUID(value).bytes)


def audio_frames(samples: np.ndarray, rate: int = 8000, frame_ms: int = 20) -> bytes:
    """int16 samples as the audio frames Asterisk sends at `rate` (20 ms each by default)."""
    kind = {r: k for k, r in AUDIO_KINDS.items()}[rate]
    data = np.asarray(samples, dtype="<i2").tobytes()
    step = 2 * rate * frame_ms // 1000
    return b"".join(encode_frame(kind, data[i : i + step]) for i in range(0, len(data), step))


class FrameReader:
    """Cuts a byte stream into frames; keeps at most one incomplete frame (at most 3 + 65535 bytes)."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """Bytes as they arrived -> the frames now complete, in order."""
        self._buffer += data
        frames, at = [], 0
        while len(self._buffer) - at >= HEADER_BYTES:
            length = int.from_bytes(self._buffer[at + 1 : at + 3], "big")
            end = at + HEADER_BYTES + length
            if end > len(self._buffer):
                break
            frames.append(Frame(self._buffer[at], bytes(self._buffer[at + HEADER_BYTES : end])))
            at = end
        del self._buffer[:at]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame waiting for the rest."""
        return len(self._buffer)


@dataclass(frozen=True)
class CallLeg:
    """What a UUID names: the session, and the leg's party when the call comes in legs."""

    uuid: str  # the UUID as Asterisk's dialplan wrote it (lower case)
    session_id: str  # the whole UUID, or the call's part of it for a leg
    leg: int | None = None  # 1, 2, ... for a leg of a call split into parties
    party: str | None = None  # the leg's party name


def call_for(value: str, parties: tuple[str, ...] = DEFAULT_PARTIES) -> CallLeg:
    """The session a UUID names: `<call>-00000000000N` is leg N (party N of `parties`) of session `<call>`.

    Any other UUID is a session of its own, analyzed as one signal, with the UUID as its id.
    """
    text = str(uuidlib.UUID(value))
    match = LEG_RE.fullmatch(text)
    if match is None:
        return CallLeg(text, text)
    leg = int(match["leg"])
    if leg > len(parties):
        raise ProtocolError(
            "bad_start", f"AudioSocket UUID {text} names leg {leg}, but the server names {len(parties)} parties "
            f"({', '.join(parties)}: --audiosocket-parties)",
        )
    return CallLeg(text, match["call"], leg, parties[leg - 1])


class AudioSocketState(enum.Enum):
    """Where an AudioSocket connection is in its life."""

    AWAITING_UUID = "awaiting_uuid"
    AWAITING_AUDIO = "awaiting_audio"  # the UUID came; the first audio frame gives the rate and opens the session
    STREAMING = "streaming"
    ENDED = "ended"  # hangup or error frame


class AudioSocketStream:
    """One AudioSocket TCP connection's protocol state, as a WireProtocol.

    `parties` names the legs of calls that come in legs (leg 1, leg 2, ...). `handle` takes
    bytes (any number of frames, or part of one; the server's shell hands one frame per call) and
    returns the server's actions. The connection ends on a hangup or an error frame, or when Asterisk closes the
    socket (`ends_on_close`: its close is its stop).
    """

    source = "audiosocket"
    max_messages_before_start = BEFORE_START
    ends_on_close = True

    def __init__(self, parties: tuple[str, ...] = DEFAULT_PARTIES, max_frame_bytes: int = MAX_PAYLOAD, peer: str = ""):
        with party_errors():
            self.parties = check_party_names(list(parties), "--audiosocket-parties")
        self.max_frame_bytes = max_frame_bytes
        self.peer = peer  # the remote address, recorded in the session's metadata
        self.reader = FrameReader()
        self._backlog: list[Frame] = []  # frames after one that raised, handled at the next call
        self.state = AudioSocketState.AWAITING_UUID
        self.call: CallLeg | None = None
        self.rate: int | None = None
        self.audio_seconds = 0.0
        self.notices = 0
        self.ignored: Counter[str] = Counter()  # what was dropped, for logs
        self.asterisk_error: tuple[int, str] | None = None  # (code, meaning) of an error frame

    @property
    def done(self) -> bool:
        """True after a hangup or an error frame."""
        return self.state is AudioSocketState.ENDED

    @property
    def party(self) -> str | None:
        """This connection's party, when its call comes in legs."""
        return self.call.party if self.call else None

    def handle(self, text: str | None, data: bytes | None) -> list[Action]:
        """One read's bytes -> the server's actions: open at the first audio, feed, DTMF notices, end."""
        if text is not None:
            raise ProtocolError("binary_expected", "AudioSocket is a binary protocol")
        actions: list[Action] = []
        frames = self._backlog + self.reader.feed(data or b"")
        for i, frame in enumerate(frames):
            try:
                if self.state is AudioSocketState.ENDED:
                    raise ProtocolError(
                        "already_stopped", f"AudioSocket sent a {KIND_NAMES.get(frame.kind, hex(frame.kind))} frame "
                        "after its hangup")
                actions += self._frame(frame)
            except ProtocolError:
                # The error is this frame's alone: the actions so far are returned first (the error comes
                # at the next call), and the frames after it wait for the next call.
                if actions:
                    self._backlog = frames[i:]
                    return actions
                self._backlog = frames[i + 1 :]
                raise
        self._backlog = []
        return actions

    def refused(self) -> None:
        """Asterisk does not retry: the server closes the socket (see `fail`)."""

    def fail(self, exc: EmostreamError, started: bool) -> Verdict:
        """No messages go back; closing errors close, as does any error before the session runs or about the rate."""
        code = getattr(exc, "code", "error")
        close = close_code(code)
        if close is None and (not started or code == "unsupported_rate"):
            close = CloseCode.POLICY
        return Verdict(None, close)

    # -- frames --
    def _frame(self, frame: Frame) -> list[Action]:
        if frame.kind == KIND_UUID:
            return self._uuid(frame.payload)
        if frame.kind in AUDIO_KINDS:
            return self._audio(frame)
        if frame.kind == KIND_DTMF:
            return self._dtmf(frame.payload)
        if frame.kind == KIND_HANGUP:
            return self._end()
        if frame.kind == KIND_ERROR:  # Asterisk's side failed: the session ends as on a hangup; the shell logs why
            code = frame.payload[0] if frame.payload else 0
            self.asterisk_error = (code, ASTERISK_ERRORS.get(code, "an application-specific error"))
            return self._end()
        raise ProtocolError(
            "unknown_type", f"AudioSocket message kind 0x{frame.kind:02x} is not one of: 0x00 hangup, 0x01 uuid, "
            "0x03 dtmf, 0x10-0x18 audio, 0xff error",
        )

    def _uuid(self, payload: bytes) -> list[Action]:
        if self.state is not AudioSocketState.AWAITING_UUID:
            raise ProtocolError("already_started", "AudioSocket sent a second UUID")
        if len(payload) != 16:
            raise ProtocolError("bad_message", f"an AudioSocket UUID is 16 bytes, got {len(payload)}")
        self.call = call_for(str(uuidlib.UUID(bytes=payload)), self.parties)
        self.state = AudioSocketState.AWAITING_AUDIO
        return []

    def _audio(self, frame: Frame) -> list[Action]:
        rate = AUDIO_KINDS[frame.kind]
        if self.state is AudioSocketState.AWAITING_UUID:
            raise ProtocolError("audio_before_start", "AudioSocket audio before the UUID frame")
        limit = min(self.max_frame_bytes, int(2 * rate * MAX_FRAME_SECONDS))
        if len(frame.payload) > limit:
            raise ProtocolError(
                "message_too_large", f"AudioSocket audio frames must be at most {limit} bytes at {rate} Hz, "
                f"got {len(frame.payload)}")
        if rate not in INPUT_RATES:
            raise ProtocolError(
                "unsupported_rate", f"AudioSocket audio at {rate} Hz (kind 0x{frame.kind:02x}) is not analyzed; "
                f"send one of {', '.join(map(str, INPUT_RATES))} Hz (slin, slin16, slin32, slin44, slin48)")
        if self.rate is not None and rate != self.rate:
            raise ProtocolError(
                "unsupported_rate", f"AudioSocket audio changed from {self.rate} to {rate} Hz within one call")
        if len(frame.payload) % 2:
            raise ProtocolError(
                "odd_byte_count", f"AudioSocket audio of {len(frame.payload)} bytes is not whole 16-bit samples")
        samples = np.frombuffer(frame.payload, dtype="<i2").astype(np.int16)
        actions: list[Action] = []
        if self.state is AudioSocketState.AWAITING_AUDIO:
            self.rate = rate
            actions.append(self._open())
            self.state = AudioSocketState.STREAMING
        self.audio_seconds += len(samples) / rate
        actions.append(FeedAudio(samples, self.party))
        return actions

    def _open(self) -> OpenSession:
        call = self.call
        details = {"uuid": call.uuid, "peer": self.peer}
        if call.leg is not None:
            details.update(call=call.session_id, leg=call.leg, party=call.party)
        start = StartMessage(sample_rate=self.rate, encoding="pcm_s16le", channels=1, session_id=call.session_id,
                             metadata=check_metadata({"audiosocket": details}))
        return OpenSession(start, self.parties if call.leg is not None else (), "int16")

    def _dtmf(self, payload: bytes) -> list[Action]:
        if len(payload) != 1 or not 0x20 < payload[0] < 0x7F:
            raise ProtocolError("bad_message", f"an AudioSocket DTMF frame is one ASCII digit, got {payload[:8]!r}")
        if self.state is not AudioSocketState.STREAMING:
            self.ignored["dtmf before audio"] += 1  # no session to tag it with yet
            return []
        if self.notices >= NOTICE_BURST + NOTICES_PER_SECOND * self.audio_seconds:
            self.ignored["too many dtmf"] += 1
            return []
        self.notices += 1
        body = {"event": "dtmf", "digit": payload.decode("ascii")}
        if self.party is not None:
            body["track"] = self.party  # the leg's party, as a Twilio DTMF names its track
        return [Notice(body)]

    def _end(self) -> list[Action]:
        started = self.state is AudioSocketState.STREAMING
        self.state = AudioSocketState.ENDED
        return [EndSession(reply=False)] if started else []


__all__ = [
    "ASTERISK_ERRORS",
    "AUDIO_KINDS",
    "DEFAULT_PARTIES",
    "KIND_DTMF",
    "KIND_ERROR",
    "KIND_HANGUP",
    "KIND_UUID",
    "AudioSocketState",
    "AudioSocketStream",
    "CallLeg",
    "Frame",
    "FrameReader",
    "audio_frames",
    "call_for",
    "encode_frame",
    "uuid_frame",
]
