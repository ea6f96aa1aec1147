"""Twilio Media Streams without sockets: a realistic call's messages in, decoded audio out."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from stream.protocol import mulaw
from stream.protocol.native import SESSION_ID_RE, ProtocolError, close_code, parse_start
from stream.protocol.twilio import (
    Audio,
    Dtmf,
    Marked,
    Started,
    Stopped,
    TwilioState,
    TwilioStream,
    session_id_for,
    start_message_for,
)

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA5c4c3a2f1b0e9d8c7b6a5f4e3d2c1b0a"
ACCOUNT = "AC1234567890abcdef1234567890abcdef"
CHUNK = 160  # bytes of μ-law per media message: 20 ms at 8 kHz


class Call:
    """Builds Twilio's messages as Twilio sends them: JSON text, counters as decimal strings."""

    def __init__(self, tracks=("inbound",)):
        self.tracks = list(tracks)
        self.seq = 0
        self.chunks = {}

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, media_format=None, **extra) -> str:
        body = {
            "accountSid": ACCOUNT,
            "streamSid": STREAM,
            "callSid": CALL,
            "tracks": self.tracks,
            "customParameters": {"context": "crisis line", "desk": "3"},
            "mediaFormat": media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        body.update(extra)
        return json.dumps(
            {"event": "start", "sequenceNumber": self._next(), "start": body, "streamSid": STREAM}
        )

    def media(self, data: bytes, track="inbound", payload=None) -> str:
        n = self.chunks.get(track, 0) + 1
        self.chunks[track] = n
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": track,
                    "chunk": str(n),
                    "timestamp": str((n - 1) * 20),
                    "payload": base64.b64encode(data).decode("ascii") if payload is None else payload,
                },
                "streamSid": STREAM,
            }
        )

    def dtmf(self, digit="7") -> str:
        return json.dumps(
            {"event": "dtmf", "streamSid": STREAM, "sequenceNumber": self._next(),
             "dtmf": {"track": "inbound_track", "digit": digit}}
        )

    def mark(self, name="greeting-done") -> str:
        return json.dumps(
            {"event": "mark", "sequenceNumber": self._next(), "streamSid": STREAM, "mark": {"name": name}}
        )

    def stop(self) -> str:
        return json.dumps(
            {"event": "stop", "sequenceNumber": self._next(), "streamSid": STREAM,
             "stop": {"accountSid": ACCOUNT, "callSid": CALL}}
        )


def tone(seconds=1.0, freq=440.0, amplitude=12000) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def chunks(data: bytes, size=CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def code_of(stream: TwilioStream, text: str) -> str:
    with pytest.raises(ProtocolError) as info:
        stream.receive(text)
    return info.value.code


# ---------------------------------------------------------------------------------------------
# A whole call


def test_full_call_both_tracks():
    signal = tone(1.0)
    inbound = mulaw.encode(signal)
    outbound = mulaw.encode(tone(1.0, freq=1000.0))
    call = Call(tracks=("inbound", "outbound"))
    s = TwilioStream(track="inbound")  # one track picked, as before both tracks were analyzed

    assert s.receive(call.connected()) == []
    [started] = s.receive(call.start())
    assert started == Started(
        stream_sid=STREAM, call_sid=CALL, account_sid=ACCOUNT, tracks=("inbound", "outbound"),
        custom_parameters={"context": "crisis line", "desk": "3"}, sample_rate=8000,
    )
    assert s.started is started and s.state is TwilioState.STREAMING

    audio: list[Audio] = []
    others = []
    for i, (a, b) in enumerate(zip(chunks(inbound), chunks(outbound), strict=True)):
        for event in s.receive(call.media(a, "inbound")) + s.receive(call.media(b, "outbound")):
            assert isinstance(event, Audio)
            audio.append(event)
        if i == 10:
            others += s.receive(call.dtmf("5"))
        if i == 20:
            others += s.receive(call.mark("prompt"))
    assert others == [Dtmf("5", "inbound_track"), Marked("prompt")]
    assert s.receive(call.stop()) == [Stopped()]
    assert s.state is TwilioState.STOPPED

    # Only the inbound track, every chunk, in order, with Twilio's counters.
    assert len(audio) == 50
    assert [a.track for a in audio] == ["inbound"] * 50
    assert [a.chunk for a in audio] == list(range(1, 51))
    assert [a.timestamp_ms for a in audio] == list(range(0, 1000, 20))
    for a in audio:
        assert a.samples.dtype == np.int16 and a.samples.shape == (160,)
    samples = np.concatenate([a.samples for a in audio])
    np.testing.assert_array_equal(samples, mulaw.decode(inbound))
    # ... which is the original tone within μ-law's half-step error.
    err = np.abs(samples.astype(int) - signal.astype(int))
    assert np.all(err <= (np.abs(signal.astype(int)) + 132) / 32)


def test_token_parameter_is_kept_apart():
    s = TwilioStream()
    [started] = s.receive(Call().start(customParameters={"token": "s3cret", "context": "x"}))
    assert started.token == "s3cret" and started.custom_parameters == {"context": "x"}
    assert "s3cret" not in repr(started)
    assert "s3cret" not in json.dumps(start_message_for(started).metadata)
    [started] = TwilioStream().receive(Call().start())
    assert started.token is None


def test_outbound_track_can_be_the_analyzed_one():
    call = Call(tracks=("inbound", "outbound"))
    s = TwilioStream(track="outbound")
    s.receive(call.start())
    assert s.receive(call.media(b"\x00" * 4, "inbound")) == []
    [a] = s.receive(call.media(b"\xff\x80", "outbound"))
    assert a.track == "outbound" and a.samples.tolist() == [0, 32124]


def test_connected_is_optional_and_sequence_gaps_are_allowed():
    call = Call()
    s = TwilioStream()
    s.receive(call.start())
    call.seq += 5  # messages 2..6 never arrived
    [a] = s.receive(call.media(b"\xff" * 160))
    assert a.samples.shape == (160,) and s.last_sequence == 7


def test_unknown_events_are_ignored_and_counted():
    call = Call()
    s = TwilioStream()
    s.receive(call.start())
    future = json.dumps({"event": "transcription", "sequenceNumber": "2", "streamSid": STREAM, "x": {}})
    assert s.receive(future) == [] and s.receive(json.dumps({"event": "transcription"})) == []
    assert s.ignored == {"transcription": 2}
    call.seq = 2
    assert len(s.receive(call.media(b"\xff"))) == 1


def test_integer_counters_and_missing_optional_fields_are_accepted():
    s = TwilioStream()
    s.receive(Call().start())
    payload = base64.b64encode(b"\x80").decode()
    message = {"event": "media", "sequenceNumber": 2, "media": {"payload": payload}}
    [a] = s.receive(json.dumps(message))
    assert (a.track, a.chunk, a.timestamp_ms, a.samples.tolist()) == ("inbound", 0, 0, [32124])


def test_empty_payload_is_no_samples():
    call = Call()
    s = TwilioStream()
    s.receive(call.start())
    [a] = s.receive(call.media(b""))
    assert a.samples.shape == (0,) and a.samples.dtype == np.int16


# ---------------------------------------------------------------------------------------------
# Out of order


def started_stream() -> tuple[Call, TwilioStream]:
    call, s = Call(), TwilioStream()
    s.receive(call.connected())
    s.receive(call.start())
    return call, s


def test_media_before_start():
    call, s = Call(), TwilioStream()
    s.receive(call.connected())
    assert code_of(s, call.media(b"\xff")) == "twilio_sequence"


@pytest.mark.parametrize("kind", ["dtmf", "mark", "stop"])
def test_other_events_before_start(kind):
    call = Call()
    assert code_of(TwilioStream(), getattr(call, kind)()) == "twilio_sequence"


def test_start_twice():
    call, s = started_stream()
    assert code_of(s, call.start()) == "twilio_sequence"


def test_connected_after_start():
    call, s = started_stream()
    assert code_of(s, call.connected()) == "twilio_sequence"


@pytest.mark.parametrize("kind", ["media", "start", "stop", "connected", "mark", "unknown"])
def test_anything_after_stop(kind):
    call, s = started_stream()
    s.receive(call.stop())
    text = {
        "media": lambda: call.media(b"\xff"),
        "unknown": lambda: json.dumps({"event": "something_new"}),
    }.get(kind, getattr(call, kind, None))()
    with pytest.raises(ProtocolError, match="after stop") as info:
        s.receive(text)
    assert info.value.code == "twilio_sequence"


def test_sequence_number_going_back():
    call, s = started_stream()
    s.receive(call.media(b"\xff"))
    call.seq -= 1  # a repeated sequenceNumber
    assert code_of(s, call.media(b"\xff")) == "twilio_sequence"


def test_stream_sid_changing():
    call, s = started_stream()
    message = json.loads(call.media(b"\xff"))
    message["streamSid"] = "MZ" + "0" * 32
    assert code_of(s, json.dumps(message)) == "twilio_sequence"


# ---------------------------------------------------------------------------------------------
# Bad formats and payloads


@pytest.mark.parametrize(
    "media_format",
    [
        {"encoding": "audio/x-l16", "sampleRate": 8000, "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": "8000", "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2},
        {"sampleRate": 8000, "channels": 1},
    ],
)
def test_unsupported_media_format(media_format):
    with pytest.raises(ProtocolError, match="audio/x-mulaw at 8000 Hz") as info:
        TwilioStream().receive(Call().start(media_format=media_format))
    assert info.value.code == "twilio_format"


def test_analyzed_track_missing():
    assert code_of(TwilioStream(track="inbound"), Call(tracks=("outbound",)).start()) == "twilio_format"


@pytest.mark.parametrize("payload", ["not base64!", "AAA", "AA==AA==", "ÿÿÿÿ"])
def test_bad_base64_payload(payload):
    call, s = started_stream()
    assert code_of(s, call.media(b"", payload=payload)) == "bad_payload"


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"sequenceNumber": "1"}),  # no event
        json.dumps({"event": 5}),
        json.dumps({"event": "start", "sequenceNumber": "1"}),  # no start body
        json.dumps({"event": "start", "sequenceNumber": "x1", "start": {}}),
        json.dumps({"event": "start", "sequenceNumber": "-1", "start": {}}),
    ],
)
def test_malformed_messages(text):
    assert code_of(TwilioStream(), text) == "bad_message"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m["media"].pop("payload"),
        lambda m: m["media"].update(payload=123),
        lambda m: m["media"].update(chunk="one"),
        lambda m: m["media"].update(timestamp=-5),
        lambda m: m.pop("media"),
    ],
)
def test_malformed_media(mutate):
    call, s = started_stream()
    message = json.loads(call.media(b"\xff"))
    mutate(message)
    assert code_of(s, json.dumps(message)) == "bad_message"


@pytest.mark.parametrize("field", ["streamSid", "callSid", "accountSid"])
def test_start_needs_sids(field):
    message = json.loads(Call().start())
    del message["start"][field]
    assert code_of(TwilioStream(), json.dumps(message)) == "bad_message"


def test_start_with_bad_tracks_or_parameters():
    assert code_of(TwilioStream(), Call().start(tracks="inbound")) == "bad_message"
    assert code_of(TwilioStream(), Call().start(customParameters=["a"])) == "bad_message"


@pytest.mark.parametrize("text", ["", "{", "[]", "null"])
def test_not_json_objects(text):
    assert code_of(TwilioStream(), text) == "bad_json"


def test_only_an_unusable_stream_closes_the_connection():
    assert close_code("twilio_format") == 1008
    assert close_code("twilio_sequence") is None and close_code("bad_payload") is None


def test_track_argument_is_checked():
    with pytest.raises(ValueError, match="inbound, outbound"):
        TwilioStream(track="both")


# ---------------------------------------------------------------------------------------------
# Session ids and the native start a call amounts to


def started(sid: str, **params) -> Started:
    return Started(sid, CALL, ACCOUNT, ("inbound",), params)


def test_session_id_for_twilio_sid():
    assert session_id_for(started(STREAM)) == f"twilio-{STREAM}"


@pytest.mark.parametrize("sid", ["../../etc/passwd", "a b", "x" * 200, "é", ".", "MZ/1", "MZ_1"])
def test_session_id_for_odd_sids_is_safe_and_distinct(sid):
    sid_a = session_id_for(started(sid))
    assert SESSION_ID_RE.fullmatch(sid_a) and len(sid_a) <= 64
    assert session_id_for(started(sid)) == sid_a  # deterministic


def test_session_ids_stay_distinct_after_sanitising():
    ids = {session_id_for(started(s)) for s in ["MZ/1", "MZ_1", "MZ 1", "x" * 100, "x" * 101]}
    assert len(ids) == 5


def test_start_message_for_call():
    m = start_message_for(started(STREAM, context="crisis line", desk="3"))
    assert (m.sample_rate, m.encoding, m.channels) == (8000, "mulaw", 1)
    assert m.session_id == f"twilio-{STREAM}" and m.context == "crisis line"
    assert m.metadata["twilio"]["call_sid"] == CALL
    assert m.metadata["twilio"]["custom_parameters"] == {"context": "crisis line", "desk": "3"}
    # It passes the native validation unchanged.
    names = ("sample_rate", "encoding", "channels", "session_id", "context", "metadata")
    fields = {k: getattr(m, k) for k in names}
    assert parse_start(fields, max_channels=1) == m
    assert start_message_for(started(STREAM, context="x" * 5000)).context == "x" * 2000
    assert start_message_for(started(STREAM)).context is None
