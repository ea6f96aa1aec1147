"""The `/ws/stream` protocol without sockets: start validation, audio decoding, server messages,
and the G.711 μ-law codec they rely on."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import EmostreamError
from stream.engine.events import Info, Transition, Window, to_dict
from stream.protocol import mulaw
from stream.protocol.closing import CloseCode
from stream.protocol.native import (
    CLOSING_ERRORS,
    ENCODINGS,
    ERROR_CODES,
    ClientStream,
    ProtocolError,
    StartMessage,
    State,
    StopMessage,
    close_code,
    decode_audio,
    error,
    event_message,
    overload,
    parse_client_text,
    ready,
    summary,
)
from vad import INPUT_RATES


def start(**fields) -> str:
    """A start message with valid defaults, fields overridden (None values are kept as null)."""
    body = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}
    body.update(fields)
    return json.dumps(body)


def code_of(text: str, **kw) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_client_text(text, **kw)
    return info.value.code


# ---------------------------------------------------------------------------------------------
# ProtocolError


def test_protocol_error_carries_code_per_instance():
    a, b = ProtocolError("bad_json", "x"), ProtocolError("odd_byte_count", "y")
    assert isinstance(a, EmostreamError)
    assert (a.code, b.code, str(a), b.message) == ("bad_json", "odd_byte_count", "x", "y")
    assert ProtocolError.code == EmostreamError.code  # the class attribute is untouched


def test_close_codes():
    assert close_code("message_too_large") == CloseCode.TOO_BIG == 1009
    assert close_code("overload") == CloseCode.TRY_AGAIN == 1013
    assert close_code("internal") == CloseCode.INTERNAL == 1011
    for code in ("session_too_long", "unauthorized", "twilio_format"):
        assert close_code(code) == CloseCode.POLICY == 1008
    # Message errors: the message is ignored and the session goes on.
    for code in ("bad_start", "odd_byte_count", "already_started", "bad_audio", "twilio_sequence"):
        assert close_code(code) is None
    assert set(CLOSING_ERRORS) <= set(ERROR_CODES)


def test_every_error_code_is_documented():
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    for code in ERROR_CODES:
        assert f"`{code}`" in doc, code


# ---------------------------------------------------------------------------------------------
# start / stop


def test_minimal_start():
    assert parse_client_text(start()) == StartMessage(16000, "pcm_s16le")
    m = parse_client_text(start())
    assert (m.channels, m.session_id, m.context, m.metadata) == (1, None, None, {})


def test_full_start():
    m = parse_client_text(
        start(
            sample_rate=8000, encoding="mulaw", channels=2, session_id="call-42_a.b",
            context="crisis line, night shift", metadata={"desk": 3, "tags": ["x"]},
        )
    )
    assert m == StartMessage(
        8000, "mulaw", 2, "call-42_a.b", "crisis line, night shift", {"desk": 3, "tags": ["x"]}
    )


def test_nulls_are_defaults():
    m = parse_client_text(start(session_id=None, context=None, metadata=None))
    assert (m.session_id, m.context, m.metadata) == (None, None, {})


@pytest.mark.parametrize("rate", INPUT_RATES)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_rate_and_encoding(rate, encoding):
    assert parse_client_text(start(sample_rate=rate, encoding=encoding)) == StartMessage(rate, encoding)


def test_stop():
    assert parse_client_text('{"type": "stop"}') == StopMessage()
    assert code_of('{"type": "stop", "now": true}') == "bad_message"


@pytest.mark.parametrize(
    "text, code",
    [
        ("not json", "bad_json"),
        ("", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('"start"', "bad_json"),
        ('{"type": "start", "sample_rate": NaN}', "bad_json"),
        ("{}", "unknown_type"),
        ('{"type": "hello"}', "unknown_type"),
        ('{"type": 1}', "unknown_type"),
        ('{"type": "audio", "data": "AAAA"}', "binary_expected"),
    ],
)
def test_bad_messages(text, code):
    assert code_of(text) == code


def test_unknown_type_names_allowed_values():
    with pytest.raises(ProtocolError, match="start, stop"):
        parse_client_text('{"type": "begin"}')


@pytest.mark.parametrize(
    "fields, code",
    [
        # sample_rate
        ({"sample_rate": "16000"}, "bad_start"),
        ({"sample_rate": 16000.0}, "bad_start"),
        ({"sample_rate": True}, "bad_start"),
        ({"sample_rate": None}, "bad_start"),
        ({"sample_rate": 22050}, "unsupported_rate"),
        ({"sample_rate": 0}, "unsupported_rate"),
        # encoding
        ({"encoding": 16}, "bad_start"),
        ({"encoding": "opus"}, "unsupported_encoding"),
        ({"encoding": "PCM_S16LE"}, "unsupported_encoding"),
        # channels
        ({"channels": "1"}, "bad_start"),
        ({"channels": 1.0}, "bad_start"),
        ({"channels": False}, "bad_start"),
        ({"channels": 0}, "unsupported_channels"),
        ({"channels": 3}, "unsupported_channels"),
        # session_id
        ({"session_id": ""}, "bad_start"),
        ({"session_id": ".hidden"}, "bad_start"),
        ({"session_id": "a/b"}, "bad_start"),
        ({"session_id": "a b"}, "bad_start"),
        ({"session_id": "é"}, "bad_start"),
        ({"session_id": "x" * 65}, "bad_start"),
        ({"session_id": 42}, "bad_start"),
        # context
        ({"context": 3}, "bad_start"),
        ({"context": "x" * 2001}, "bad_start"),
        # metadata
        ({"metadata": [1, 2]}, "bad_start"),
        ({"metadata": "x"}, "bad_start"),
        ({"metadata": {"blob": "x" * 8200}}, "bad_start"),
        # unknown field
        ({"rate": 16000}, "bad_start"),
    ],
)
def test_bad_start_field(fields, code):
    assert code_of(start(**fields)) == code


@pytest.mark.parametrize("missing", ["sample_rate", "encoding"])
def test_start_requires_rate_and_encoding(missing):
    body = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}
    del body[missing]
    with pytest.raises(ProtocolError, match=missing) as info:
        parse_client_text(json.dumps(body))
    assert info.value.code == "bad_start"


def test_limits_are_inclusive():
    m = parse_client_text(start(session_id="a" * 64, context="c" * 2000))
    assert len(m.session_id) == 64 and len(m.context) == 2000
    # 8192 bytes exactly as compact JSON: {"k":"..."} is 8 bytes of punctuation and key.
    assert parse_client_text(start(metadata={"k": "v" * 8184})).metadata["k"] == "v" * 8184
    assert code_of(start(metadata={"k": "v" * 8185})) == "bad_start"
    # Bytes, not characters: 3 bytes per "€".
    assert code_of(start(metadata={"k": "€" * 2800})) == "bad_start"


def test_error_messages_name_allowed_values():
    with pytest.raises(ProtocolError, match="8000, 16000, 32000, 44100, 48000") as info:
        parse_client_text(start(sample_rate=11025))
    with pytest.raises(ProtocolError, match="pcm_s16le, pcm_f32le, mulaw"):
        parse_client_text(start(encoding="wav"))
    with pytest.raises(ProtocolError, match="between 1 and 6"):
        parse_client_text(start(channels=7), max_channels=6)
    with pytest.raises(ProtocolError, match="allowed: sample_rate, encoding, channels"):
        parse_client_text(start(rate=1))
    assert "11025" in info.value.message


def test_max_channels_is_configurable():
    assert parse_client_text(start(channels=6), max_channels=6).channels == 6
    assert code_of(start(channels=2), max_channels=1) == "unsupported_channels"


# ---------------------------------------------------------------------------------------------
# decode_audio


def test_pcm_s16le_mono_exact():
    x = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    out = decode_audio(x.astype("<i2").tobytes(), "pcm_s16le", 1)
    assert out.dtype == np.int16 and out.flags.writeable
    np.testing.assert_array_equal(out, x)


def test_pcm_s16le_is_little_endian():
    assert decode_audio(b"\x01\x02", "pcm_s16le", 1).tolist() == [0x0201]


def test_pcm_s16le_stereo_average_in_int32():
    left = np.array([32767, -32768, 3, -3, 1, 100], dtype=np.int16)
    right = np.array([32767, -32768, 4, -4, 2, -100], dtype=np.int16)
    data = np.stack([left, right], axis=1).astype("<i2").tobytes()  # L R L R ...
    out = decode_audio(data, "pcm_s16le", 2)
    assert out.dtype == np.int16
    # No wrap-around at full scale; halves round to even.
    assert out.tolist() == [32767, -32768, 4, -4, 2, 0]


def test_pcm_f32le_mono_and_stereo():
    x = np.array([0.0, 0.5, -0.25, 1.0, -1.0, 0.125], dtype=np.float32)
    mono = decode_audio(x.astype("<f4").tobytes(), "pcm_f32le", 1)
    assert mono.dtype == np.float32
    np.testing.assert_array_equal(mono, x)
    stereo = decode_audio(x.astype("<f4").tobytes(), "pcm_f32le", 2)
    assert stereo.dtype == np.float32
    np.testing.assert_array_equal(stereo, [0.25, 0.375, -0.4375])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pcm_f32le_rejects_non_finite(bad):
    data = np.array([0.1, bad], dtype="<f4").tobytes()
    with pytest.raises(ProtocolError) as info:
        decode_audio(data, "pcm_f32le", 1)
    assert info.value.code == "bad_audio"


def test_mulaw_mono_and_stereo():
    data = bytes([0xFF, 0x00, 0x80, 0x7F, 0x10, 0x90])
    mono = decode_audio(data, "mulaw", 1)
    assert mono.dtype == np.int16
    np.testing.assert_array_equal(mono, mulaw.decode(data))
    stereo = decode_audio(data, "mulaw", 2)
    t = mulaw.DECODE_TABLE.astype(int)
    assert stereo.dtype == np.int16
    assert stereo.tolist() == [
        round((t[0xFF] + t[0x00]) / 2), round((t[0x80] + t[0x7F]) / 2), round((t[0x10] + t[0x90]) / 2)
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("channels", [1, 2])
def test_empty_message_is_no_samples(encoding, channels):
    out = decode_audio(b"", encoding, channels)
    assert out.shape == (0,) and out.dtype == (np.float32 if encoding == "pcm_f32le" else np.int16)


@pytest.mark.parametrize(
    "encoding, channels, n_bytes, frame",
    [
        ("pcm_s16le", 1, 3, 2),
        ("pcm_s16le", 2, 6, 4),
        ("pcm_f32le", 1, 6, 4),
        ("pcm_f32le", 2, 12, 8),
        ("mulaw", 2, 5, 2),
        ("mulaw", 3, 4, 3),
    ],
)
def test_odd_byte_count_says_sizes(encoding, channels, n_bytes, frame):
    with pytest.raises(ProtocolError) as info:
        decode_audio(bytes(n_bytes), encoding, channels)
    assert info.value.code == "odd_byte_count"
    assert f"got {n_bytes} bytes" in info.value.message and f"frame size {frame}" in info.value.message


def test_decode_audio_rejects_unknown_encoding_and_channels():
    with pytest.raises(ProtocolError) as info:
        decode_audio(b"", "flac", 1)
    assert info.value.code == "unsupported_encoding"
    with pytest.raises(ProtocolError) as info:
        decode_audio(b"", "mulaw", 0)
    assert info.value.code == "unsupported_channels"


@given(st.lists(st.integers(-32768, 32767), max_size=64), st.integers(1, 4))
def test_int16_channel_mean_is_the_rounded_mean(values, channels):
    values = values[: len(values) // channels * channels]
    x = np.array(values, dtype=np.int16)
    out = decode_audio(x.astype("<i2").tobytes(), "pcm_s16le", channels)
    expected = np.rint(np.array(values, dtype=np.float64).reshape(-1, channels).mean(axis=1))
    np.testing.assert_array_equal(out, expected.astype(np.int16))


# ---------------------------------------------------------------------------------------------
# ClientStream: the start -> audio* -> stop order


def test_client_stream_happy_path():
    s = ClientStream()
    assert s.state is State.AWAITING_START
    m = s.receive_text(start(sample_rate=8000, encoding="pcm_f32le", channels=2))
    assert s.state is State.STREAMING and s.start is m
    out = s.receive_binary(np.array([0.5, 0.25], dtype="<f4").tobytes())
    np.testing.assert_array_equal(out, np.array([0.375], dtype=np.float32))
    assert s.receive_text('{"type": "stop"}') == StopMessage()
    assert s.state is State.STOPPED


@pytest.mark.parametrize(
    "steps, code",
    [
        ([b"\x00\x00"], "audio_before_start"),
        (['{"type": "stop"}'], "not_started"),
        ([start(), start()], "already_started"),
        ([start(), '{"type": "stop"}', b"\x00\x00"], "already_stopped"),
        ([start(), '{"type": "stop"}', '{"type": "stop"}'], "already_stopped"),
        ([start(), b"\x00"], "odd_byte_count"),
    ],
)
def test_client_stream_order(steps, code):
    s = ClientStream()
    *ok, last = steps
    for step in ok:
        s.receive_binary(step) if isinstance(step, bytes) else s.receive_text(step)
    state, started = s.state, s.start
    with pytest.raises(ProtocolError) as info:
        s.receive_binary(last) if isinstance(last, bytes) else s.receive_text(last)
    assert info.value.code == code
    assert (s.state, s.start) == (state, started)  # a rejected message changes nothing


def test_client_stream_recovers_from_a_bad_start():
    s = ClientStream()
    with pytest.raises(ProtocolError):
        s.receive_text(start(sample_rate=22050))
    assert s.state is State.AWAITING_START
    assert s.receive_text(start(sample_rate=16000)).sample_rate == 16000


def test_client_stream_message_size_limit():
    s = ClientStream(max_message_bytes=100)
    s.receive_text(start())
    s.receive_binary(bytes(100))
    with pytest.raises(ProtocolError) as info:
        s.receive_binary(bytes(102))
    assert info.value.code == "message_too_large" and close_code(info.value.code) == 1009
    assert s.receive_binary(bytes(4)).shape == (2,)  # the state is unchanged by an error
    with pytest.raises(ProtocolError) as info:
        ClientStream(max_message_bytes=100).receive_text(start(context="x" * 100))
    assert info.value.code == "message_too_large"


# ---------------------------------------------------------------------------------------------
# Server -> client messages


def roundtrip(message: dict) -> dict:
    return json.loads(json.dumps(message, allow_nan=False))


def test_server_messages_are_json():
    params = {"sample_rate": 16000, "vad": {"aggressiveness": 2}}
    assert roundtrip(ready("s1", params)) == {
        "type": "ready", "session_id": "s1", "protocol": 1, "parameters": params,
    }
    assert roundtrip(error("bad_start", "no")) == {"type": "error", "code": "bad_start", "message": "no"}
    assert roundtrip(summary("s1", {"audio_seconds": 1.5, "segments": 2})) == {
        "type": "summary", "session_id": "s1", "stats": {"audio_seconds": 1.5, "segments": 2},
    }
    assert roundtrip(overload("behind", np.int64(7))) == {
        "type": "overload", "message": "behind", "queue_depth": 7,
    }
    assert roundtrip(overload("behind", 2, session_id="s1"))["session_id"] == "s1"


LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")


def test_event_message_is_the_event_plus_session_id():
    scores = {label: 1 / 9 for label in LABELS}
    events = [
        Info("iic/emotion2vec_plus_large", False, LABELS, {"sample_rate": 8000}),
        Window(3, 0, 1.2, 1.6, scores, scores, "neutral", 1 / 9),
        Transition(1.3, 1.6, 0, "fearful", "disgusted", True),
    ]
    for event in events:
        message = roundtrip(event_message("call-1", event))
        assert list(message)[:2] == ["type", "session_id"]
        assert message.pop("session_id") == "call-1"
        assert message == to_dict(event)
    assert roundtrip(event_message("call-1", events[2]))["from"] == "fearful"


# ---------------------------------------------------------------------------------------------
# G.711 μ-law


def test_mulaw_known_values():
    t = mulaw.DECODE_TABLE
    assert t.dtype == np.int16 and t.shape == (256,)
    assert (t[0xFF], t[0x7F], t[0x00], t[0x80]) == (0, 0, -32124, 32124)
    # The smallest steps of segment 0 are 8 apart; segment 7's are 1024 apart.
    assert (t[0xFE], t[0xFD], t[0x7E]) == (8, 16, -8)
    assert (t[0x81], t[0x80] - t[0x81]) == (31100, 1024)
    # Symmetric: byte b and b ^ 0x80 are negatives.
    np.testing.assert_array_equal(t[:128], -t[128:])
    # Monotonic within each half: 0x80..0xFF goes from +32124 down to 0.
    assert np.all(np.diff(t[128:].astype(int)) < 0)


def test_mulaw_decode_table_matches_audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # stdlib up to 3.12; the `audioop-lts` test dependency from 3.13 on
    reference = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype=np.int16)
    np.testing.assert_array_equal(mulaw.DECODE_TABLE, reference)
    # For non-negative samples the segment/step choice is identical too (negatives differ by
    # audioop's arithmetic shift at a few step edges, where ours has the smaller error).
    x = np.arange(0, 32768, dtype=np.int16)
    assert mulaw.encode(x) == audioop.lin2ulaw(x.astype("<i2").tobytes(), 2)


def test_mulaw_encode_inverts_decode():
    codes = np.arange(256, dtype=np.uint8)
    back = np.frombuffer(mulaw.encode(mulaw.DECODE_TABLE[codes]), dtype=np.uint8)
    expected = codes.copy()
    expected[0x7F] = 0xFF  # "negative zero" decodes to 0, which encodes as positive zero
    np.testing.assert_array_equal(back, expected)


def test_mulaw_roundtrip_error_bound_over_all_int16():
    x = np.arange(-32768, 32768, dtype=np.int16)
    y = mulaw.decode(mulaw.encode(x)).astype(np.int64)
    err = np.abs(y - x)
    # Half a step of the sample's segment: at most (|x| + 132) / 32, i.e. ~3 % near full scale.
    assert np.all(err <= (np.abs(x.astype(np.int64)) + 132) / 32)
    assert err[np.abs(x.astype(np.int64)) < 8].max() <= 4
    assert err.max() == 644  # -32768 clipped to the largest code, -32124


def test_mulaw_encode_requires_int16():
    with pytest.raises(TypeError):
        mulaw.encode(np.zeros(4, dtype=np.float32))
    assert mulaw.encode(np.zeros((2, 3), dtype=np.int16)) == b"\xff" * 6


def test_mulaw_sine_snr():
    t = np.arange(8000) / 8000
    x = np.round(20000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    y = mulaw.decode(mulaw.encode(x)).astype(np.float64)
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x) ** 2))
    assert snr > 35  # G.711 gives ~38 dB on a loud tone
