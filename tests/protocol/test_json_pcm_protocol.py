"""The JSON-then-PCM family, sans I/O: each platform's preamble, stereo split into parties, every refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.protocol.closing import CloseCode
from stream.protocol.json_pcm import AUDIOFORK, JAMBONZ, VONAGE, JsonPcmStream, connector_session_id
from stream.protocol.native import SESSION_ID_RE, ProtocolError
from stream.protocol.wire import FeedAudio, Notice, OpenSession

VONAGE_HELLO = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "uuid": "aaaa-1111",
                "caller": "447700900000", "token": "must-not-be-kept"}
JAMBONZ_HELLO = {"callSid": "b8f2c6a4-1", "from": "+15083084809", "to": "+15083728299", "direction": "inbound",
                 "sampleRate": 8000, "mixType": "stereo", "metadata": {"campaign": "renewals"}}
FORK_HELLO = {"uuid": "fs-chan-7", "sampleRate": "16k", "mixType": "mono", "context": "support line"}


def pcm(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, n).astype(np.int16)


def opened(dialect, hello: dict) -> tuple[JsonPcmStream, OpenSession]:
    wire = JsonPcmStream(dialect, max_message_bytes=1 << 16)
    (action,) = wire.handle(json.dumps(hello), None)
    assert isinstance(action, OpenSession)
    return wire, action


def test_vonage_preamble_gives_a_mono_session_named_after_the_call():
    wire, action = opened(VONAGE, VONAGE_HELLO)
    start = action.start
    assert (start.sample_rate, start.encoding, start.channels, start.split_channels) == (16000, "pcm_s16le", 1, False)
    assert start.session_id == "vonage-aaaa-1111" and action.parties == ()
    assert start.metadata == {"vonage": {"event": "websocket:connected", "content-type": "audio/l16;rate=16000",
                                         "uuid": "aaaa-1111", "caller": "447700900000"}}  # never the token
    samples = pcm(320)
    (fed,) = wire.handle(None, samples.astype("<i2").tobytes())
    assert isinstance(fed, FeedAudio) and fed.party is None and np.array_equal(fed.samples, samples)
    assert wire.handle(json.dumps({"event": "websocket:dtmf", "digit": "7", "duration": 260}), None) == [
        Notice({"event": "dtmf", "digit": "7"})]
    assert wire.handle(json.dumps({"event": "websocket:notify"}), None) == []  # other events: counted, ignored
    assert wire.ignored["websocket:notify"] == 1 and not wire.done and wire.ends_on_close


def test_jambonz_stereo_is_split_into_caller_and_agent():
    wire, action = opened(JAMBONZ, JAMBONZ_HELLO)
    start = action.start
    assert (start.sample_rate, start.channels, start.split_channels) == (8000, 2, True)
    assert action.parties == start.parties == ("caller", "agent") and start.session_id == "jambonz-b8f2c6a4-1"
    assert start.metadata["jambonz"]["metadata"] == {"campaign": "renewals"}
    assert start.metadata["jambonz"]["parties"] == ["caller", "agent"]
    left, right = pcm(160, 1), pcm(160, 2)
    (fed,) = wire.handle(None, np.stack([left, right], axis=1).astype("<i2").tobytes())
    assert fed.samples.shape == (160, 2)
    assert np.array_equal(fed.samples[:, 0], left) and np.array_equal(fed.samples[:, 1], right)
    assert wire.handle(json.dumps({"event": "dtmf", "dtmf": "5", "duration": "120"}), None)[0].body["digit"] == "5"


def test_parties_may_be_renamed_from_the_preamble_or_its_metadata():
    _, top = opened(JAMBONZ, {**JAMBONZ_HELLO, "parties": ["customer", "counsellor"]})
    _, nested = opened(JAMBONZ, {**JAMBONZ_HELLO, "metadata": {"parties": ["customer", "counsellor"]}})
    assert top.parties == nested.parties == ("customer", "counsellor")


def test_audio_fork_reads_freeswitch_rates_and_mixed_is_one_signal():
    _, action = opened(AUDIOFORK, FORK_HELLO)
    assert action.start.sample_rate == 16000 and action.start.context == "support line"
    assert action.start.session_id == "audiofork-fs-chan-7"
    _, mixed = opened(AUDIOFORK, {"sampleRate": 8000, "mixType": "mixed"})
    assert mixed.start.channels == 1 and mixed.parties == () and mixed.start.session_id is None


def test_session_ids_stay_valid_and_distinct():
    for raw in ("CA123", "a b/c", "x" * 80, ".hidden", "é"):
        assert SESSION_ID_RE.fullmatch(connector_session_id("jambonz", raw))
    assert connector_session_id("vonage", "a b") != connector_session_id("vonage", "a_b")


@pytest.mark.parametrize(
    ("dialect", "first", "code", "words"),
    [
        (VONAGE, b"\x00\x00", "audio_before_start", "before the Vonage preamble"),
        (VONAGE, "not json", "bad_json", "JSON"),
        (VONAGE, {"event": "websocket:dtmf"}, "bad_start", "websocket:connected"),
        (VONAGE, {**VONAGE_HELLO, "content-type": "audio/pcmu;rate=8000"}, "unsupported_encoding", "audio/pcmu"),
        (VONAGE, {**VONAGE_HELLO, "content-type": "audio/l16;rate=24000"}, "unsupported_rate", "24000 Hz"),
        (VONAGE, {**VONAGE_HELLO, "content-type": "audio/l16"}, "bad_start", "rate=<Hz>"),
        (JAMBONZ, {"callSid": "x", "mixType": "stereo"}, "bad_start", "sampleRate"),
        (JAMBONZ, {**JAMBONZ_HELLO, "sampleRate": 64000}, "unsupported_rate", "64000 Hz"),
        (JAMBONZ, {**JAMBONZ_HELLO, "sampleRate": True}, "bad_start", "integer"),
        (JAMBONZ, {**JAMBONZ_HELLO, "mixType": "quad"}, "bad_start", "mono, mixed, stereo"),
        (JAMBONZ, {**JAMBONZ_HELLO, "parties": ["a", "a"]}, "bad_parties", "distinct"),
        (JAMBONZ, {**JAMBONZ_HELLO, "parties": ["a", "b", "c"]}, "bad_parties", "2 channels"),
        (AUDIOFORK, {**FORK_HELLO, "parties": ["a", "b"]}, "bad_parties", "stereo"),
        (AUDIOFORK, {**FORK_HELLO, "metadata": {"deep": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}}, "bad_start", "deep"),
    ],
)
def test_each_bad_preamble_is_refused_and_closes(dialect, first, code, words):
    wire = JsonPcmStream(dialect)
    with pytest.raises(ProtocolError) as exc:
        wire.handle(None, first) if isinstance(first, bytes) else wire.handle(
            first if isinstance(first, str) else json.dumps(first), None)
    assert exc.value.code == code and words in str(exc.value), str(exc.value)
    verdict = wire.fail(exc.value, started=False)
    assert verdict.reply is None and verdict.close == CloseCode.POLICY
    assert wire.preamble is None  # nothing was opened


def test_errors_after_the_preamble_skip_the_message_unless_they_close():
    wire, _ = opened(JAMBONZ, JAMBONZ_HELLO)
    for text, data, code in (("{bad", None, "bad_json"), (None, b"\x00\x01\x02", "odd_byte_count"),
                             (json.dumps({"event": "dtmf", "dtmf": 5}), None, "bad_message")):
        with pytest.raises(ProtocolError) as exc:
            wire.handle(text, data)
        assert exc.value.code == code and wire.fail(exc.value, started=True).close is None
    with pytest.raises(ProtocolError) as exc:
        wire.handle(None, bytes(1 << 17))
    assert exc.value.code == "message_too_large" and wire.fail(exc.value, started=True).close == CloseCode.TOO_BIG
    assert len(wire.handle(None, bytes(640))) == 1  # and audio goes on
