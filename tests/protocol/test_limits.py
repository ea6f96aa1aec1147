"""Bounds on what a client can make the server hold or echo (issue 12, findings 1, 5, 9, 11, 12)."""

from __future__ import annotations

import json

import pytest

from stream.protocol.native import (
    MAX_ERROR_CHARS,
    ClientStream,
    ProtocolError,
    State,
    error,
    parse_client_text,
)
from stream.protocol.twilio import MAX_IGNORED_KINDS, TwilioStream

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}


def start_text(**fields) -> str:
    return json.dumps({**START, **fields})


def test_deeply_nested_metadata_is_refused():
    deep = "[" * 600 + "1" + "]" * 600  # 1.2 KB: far under the size limit
    with pytest.raises(ProtocolError) as info:
        parse_client_text(start_text(metadata={"x": 0}).replace("0}", deep + "}"))
    assert info.value.code == "bad_start" and "deep" in info.value.message
    shallow: object = 1
    for _ in range(10):
        shallow = {"k": shallow}
    assert parse_client_text(start_text(metadata={"x": shallow})).metadata == {"x": shallow}


@pytest.mark.parametrize("text", [
    '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","metadata":{"x":1e400}}',
    '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","metadata":{"x":[-1e999]}}',
    '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","metadata":{"x":"\\ud800"}}',
    '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","context":"a \\ud800 b"}',
])
def test_values_that_cannot_be_recorded_are_refused_at_start(text):
    with pytest.raises(ProtocolError) as info:
        parse_client_text(text)
    assert info.value.code == "bad_start"


@pytest.mark.parametrize("fields", [
    {"encoding": "x" * 500_000}, {"sample_rate": "9" * 500_000}, {"session_id": "y" * 500_000},
    {"channels": ["z" * 500_000]}, {"metadata": ["w" * 500_000]}, {"z" * 500_000: 1},
])
def test_errors_echo_at_most_a_short_piece_of_the_value(fields):
    with pytest.raises(ProtocolError) as info:
        parse_client_text(start_text(**fields))
    message = error(info.value.code, info.value.message)["message"]
    assert len(message) <= MAX_ERROR_CHARS and len(info.value.message) < 1000


def test_unknown_type_echo_is_cut():
    with pytest.raises(ProtocolError) as info:
        parse_client_text(json.dumps({"type": "q" * 100_000}))
    assert info.value.code == "unknown_type" and len(info.value.message) < 300


def test_a_refused_start_lets_the_client_send_another():
    stream = ClientStream()
    first = stream.receive_text(start_text(session_id="taken"))
    assert first.session_id == "taken" and stream.state is State.STREAMING
    stream.refuse_start()  # the server found the id in use
    assert stream.state is State.AWAITING_START and stream.start is None
    second = stream.receive_text(start_text(session_id="free"))
    assert second.session_id == "free" and stream.start == second


def test_twilio_unknown_events_are_counted_in_bounded_memory():
    stream = TwilioStream()
    for i in range(500):
        assert stream.receive(json.dumps({"event": f"{i:06d}" + "n" * 10_000})) == []
    assert len(stream.ignored) <= MAX_IGNORED_KINDS + 1
    assert sum(stream.ignored.values()) == 500
    assert all(len(name) <= 64 for name in stream.ignored)


def test_twilio_errors_echo_little():
    stream = TwilioStream()
    with pytest.raises(ProtocolError) as info:
        stream.receive(json.dumps({"event": "media" + "m" * 100_000, "sequenceNumber": "x" * 100_000}))
    assert len(info.value.message) < 300
