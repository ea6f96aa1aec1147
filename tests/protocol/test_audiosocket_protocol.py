"""Asterisk AudioSocket, sans I/O: frames cut from any TCP reads, the UUID's session and leg, every refusal."""

from __future__ import annotations

import numpy as np
import pytest

from stream.protocol.audiosocket import (
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    AudioSocketStream,
    FrameReader,
    audio_frames,
    call_for,
    encode_frame,
    uuid_frame,
)
from stream.protocol.closing import CloseCode
from stream.protocol.native import ProtocolError
from stream.protocol.wire import EndSession, FeedAudio, Notice, OpenSession

UUID = "40325ec2-5efd-4bd3-805f-53576e581d13"
CALL = "40325ec2-5efd-4bd3-805f"


def tone(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, n).astype(np.int16)


def feed(wire: AudioSocketStream, data: bytes) -> list:
    return wire.handle(None, data)


def test_frames_are_cut_the_same_whatever_the_reads():
    samples = tone(1600)
    data = uuid_frame(UUID) + audio_frames(samples) + encode_frame(KIND_DTMF, b"5") + encode_frame(KIND_HANGUP)
    whole = FrameReader().feed(data)
    assert [f.kind for f in whole] == [0x01] + [0x10] * 10 + [KIND_DTMF, KIND_HANGUP]
    for size in (1, 2, 3, 7, 320, 1000):
        reader, frames = FrameReader(), []
        for i in range(0, len(data), size):
            frames += reader.feed(data[i : i + size])
        assert frames == whole and reader.pending == 0
    assert np.array_equal(np.frombuffer(b"".join(f.payload for f in whole[1:11]), "<i2"), samples)


def test_a_call_at_8khz_opens_at_its_first_audio_and_feeds_every_sample():
    wire, samples = AudioSocketStream(peer="127.0.0.1:5000"), tone(4000)
    assert feed(wire, uuid_frame(UUID)) == [] and not wire.done
    actions = feed(wire, audio_frames(samples))
    assert isinstance(actions[0], OpenSession)
    start = actions[0].start
    assert (start.sample_rate, start.encoding, start.channels, start.session_id) == (8000, "pcm_s16le", 1, UUID)
    assert actions[0].parties == () and actions[0].sample_format == "int16"
    assert start.metadata == {"audiosocket": {"uuid": UUID, "peer": "127.0.0.1:5000"}}
    fed = [a for a in actions if isinstance(a, FeedAudio)]
    assert all(a.party is None for a in fed) and np.array_equal(np.concatenate([a.samples for a in fed]), samples)
    assert feed(wire, encode_frame(KIND_DTMF, b"#")) == [Notice({"event": "dtmf", "digit": "#"})]
    assert feed(wire, encode_frame(KIND_HANGUP)) == [EndSession(reply=False)] and wire.done
    assert wire.ends_on_close  # a close without hangup is a stop too


@pytest.mark.parametrize(("rate", "kind"), [(16000, 0x12), (32000, 0x14), (44100, 0x15), (48000, 0x16)])
def test_higher_rate_kinds_give_their_rate(rate, kind):
    wire = AudioSocketStream()
    actions = feed(wire, uuid_frame(UUID) + encode_frame(kind, tone(rate // 50).tobytes()))
    assert actions[0].start.sample_rate == rate


def test_the_leg_convention_names_call_and_party():
    assert call_for(UUID) == call_for(UUID.upper())
    plain = call_for(UUID)
    assert (plain.session_id, plain.leg, plain.party) == (UUID, None, None)
    leg = call_for(f"{CALL}-000000000002", ("customer", "counsellor"))
    assert (leg.session_id, leg.leg, leg.party) == (CALL, 2, "counsellor")
    assert call_for(f"{CALL}-000000000001").party == "caller"
    assert call_for(f"{CALL}-000000000010").leg is None  # not the pattern: a session of its own
    with pytest.raises(ProtocolError, match="leg 3") as exc:
        call_for(f"{CALL}-000000000003")
    assert exc.value.code == "bad_start"


def test_a_leg_opens_the_call_with_every_party_and_feeds_its_own():
    wire = AudioSocketStream(("caller", "agent"))
    actions = feed(wire, uuid_frame(f"{CALL}-000000000002") + audio_frames(tone(800)))
    opened = actions[0]
    assert opened.start.session_id == CALL and opened.parties == ("caller", "agent")
    assert opened.start.metadata["audiosocket"]["leg"] == 2 and opened.start.metadata["audiosocket"]["party"] == "agent"
    assert {a.party for a in actions[1:]} == {"agent"} and wire.party == "agent"
    assert feed(wire, encode_frame(KIND_DTMF, b"1"))[0].body == {"event": "dtmf", "digit": "1", "track": "agent"}


def refusal(wire: AudioSocketStream, data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as exc:
        feed(wire, data)
    return exc.value


def started() -> AudioSocketStream:
    wire = AudioSocketStream(max_frame_bytes=4096)
    feed(wire, uuid_frame(UUID) + audio_frames(tone(160)))
    return wire


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (audio_frames(tone(160)), "audio_before_start", "before the UUID"),
        (encode_frame(0x01, b"short"), "bad_message", "16 bytes"),
        (encode_frame(0x42, b"x"), "unknown_type", "0x42"),
        (uuid_frame(UUID) + encode_frame(0x11, tone(240).tobytes()), "unsupported_rate", "12000 Hz"),
        (uuid_frame(UUID) + encode_frame(0x18, tone(100).tobytes()), "unsupported_rate", "192000 Hz"),
        (uuid_frame(UUID) + encode_frame(0x10, b"\x00\x01\x02"), "odd_byte_count", "3 bytes"),
        (uuid_frame(UUID) + encode_frame(0x10, bytes(16002)), "message_too_large", "16000 bytes"),
        (uuid_frame(UUID) + uuid_frame(UUID), "already_started", "second UUID"),
        (uuid_frame(f"{CALL}-000000000009"), "bad_start", "leg 9"),
    ],
)
def test_each_bad_input_before_the_session_is_refused_and_closes(data, code, words):
    wire = AudioSocketStream()
    exc = refusal(wire, data)
    assert exc.code == code and words in str(exc)
    verdict = wire.fail(exc, started=False)
    assert verdict.reply is None and verdict.close is not None  # nothing goes back; the socket closes


def test_errors_after_the_start_skip_the_frame_unless_they_close():
    wire = started()
    for data, code in ((encode_frame(0x42, b"?"), "unknown_type"), (encode_frame(0x10, b"\x01"), "odd_byte_count"),
                       (encode_frame(KIND_DTMF, b"12"), "bad_message")):
        exc = refusal(wire, data)
        assert exc.code == code and wire.fail(exc, started=True).close is None  # the call's analysis goes on
    assert isinstance(feed(wire, audio_frames(tone(160)))[0], FeedAudio)
    changed = refusal(wire, encode_frame(0x12, tone(320).tobytes()))
    assert changed.code == "unsupported_rate" and "changed from 8000 to 16000" in str(changed)
    assert wire.fail(changed, started=True).close == CloseCode.POLICY
    too_big = refusal(wire, encode_frame(0x10, bytes(4098)))
    assert too_big.code == "message_too_large" and wire.fail(too_big, started=True).close == CloseCode.TOO_BIG


def test_error_frames_end_the_session_and_text_is_refused():
    wire = started()
    assert feed(wire, encode_frame(KIND_ERROR, b"\x02")) == [EndSession(reply=False)]
    assert wire.asterisk_error == (2, "frame forwarding error")  # for the server's log
    assert wire.done and refusal(wire, audio_frames(tone(160))).code == "already_stopped"
    with pytest.raises(ProtocolError) as exc:
        AudioSocketStream().handle("{}", None)
    assert exc.value.code == "binary_expected"


def test_hangup_or_dtmf_before_audio_opens_nothing():
    wire = AudioSocketStream()
    assert feed(wire, uuid_frame(UUID) + encode_frame(KIND_DTMF, b"3")) == []
    assert feed(wire, encode_frame(KIND_HANGUP)) == [] and wire.done
    assert wire.ignored["dtmf before audio"] == 1


def test_dtmf_is_bounded_by_the_audio_received():
    wire = started()
    notices = sum(len(feed(wire, encode_frame(KIND_DTMF, b"9"))) for _ in range(100))
    assert notices == 33 and wire.ignored["too many dtmf"] == 67  # 32 + 4 per second of its 0.02 s, rounded up


def test_party_names_are_checked():
    with pytest.raises(ProtocolError) as exc:
        AudioSocketStream(("caller", "all"))
    assert exc.value.code == "bad_parties"


def test_a_bad_frame_among_several_costs_only_itself():
    wire, samples = started(), tone(480)
    data = audio_frames(samples[:160]) + encode_frame(0x42, b"?") + audio_frames(samples[160:])
    first = feed(wire, data)  # what came before the bad frame
    assert [len(a.samples) for a in first] == [160]
    with pytest.raises(ProtocolError) as exc:  # then the bad frame's error
        feed(wire, b"")
    assert exc.value.code == "unknown_type"
    rest = feed(wire, b"")  # then what came after it
    assert np.array_equal(np.concatenate([a.samples for a in rest]), samples[160:])
