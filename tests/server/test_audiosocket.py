"""Asterisk AudioSocket end to end: a real server, real TCP connections over loopback, real speech.

Asterisk is played by plain asyncio sockets writing what res_audiosocket writes: the UUID frame,
20 ms audio frames, DTMF, a hangup (or just the close). The reference for every call is the same
audio sent to /ws/stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import soxr
from party_helpers import same_events
from server_harness import free_port, start_server
from test_server import events_of, stream

from stream.protocol.audiosocket import KIND_DTMF, KIND_HANGUP, audio_frames, encode_frame, uuid_frame
from stream.server.audiosocket_options import allowed_networks, is_allowed
from stream.server.audiosocket_server import AudioSocketListener
from stream.server.metrics import ServerMetrics
from stream.server.settings import ServerSettings

CALL = "5b0c1d2e-3f40-4152-8364"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = free_port()
    s = start_server(tiny_model_dir, tmp_path_factory.mktemp("audiosocket"), "--audiosocket-port", str(port),
                     "--audiosocket-allow", "127.0.0.1", "--audiosocket-parties", "customer,counsellor",
                     "--max-wait-ms", "20", "--start-timeout", "3")
    s.audiosocket = port
    yield s
    s.stop()


def at_8k(x: np.ndarray) -> np.ndarray:
    return (np.clip(soxr.resample(x, 16000, 8000), -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def voice(speech_silence_speech):
    return at_8k(speech_silence_speech.samples)


@pytest.fixture(scope="module")
def voices(two_voices):
    return tuple(at_8k(x) for x in two_voices)


def plain(message: dict) -> dict:
    return {k: v for k, v in message.items() if k not in ("session_id", "party")}


async def call(port: int, data: bytes, piece: int = 4096, hangup: bool = True) -> bytes:
    """One AudioSocket connection: write `data` in pieces, hang up (or only close our side), wait for the server's close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(0, len(data), piece):
            writer.write(data[i : i + piece])
            await writer.drain()
        if hangup:
            writer.write(encode_frame(KIND_HANGUP))
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 120)  # the server writes nothing, then closes
    finally:
        writer.close()


def recorded(server, sid: str, timeout: float = 60) -> tuple[dict, list[dict]]:
    """A session's session.json once it is no longer live, and its recorded events."""
    folder = server.recordings / sid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "session.json").exists():
            meta = json.loads((folder / "session.json").read_text())
            if meta.get("status") != "live":
                lines = (folder / "events.jsonl").read_text().splitlines()
                return meta, [json.loads(line) for line in lines]
        time.sleep(0.1)
    raise AssertionError(f"session {sid} did not end")


def reference(server, samples: np.ndarray, sid: str) -> list[dict]:
    """The events of `samples` sent to /ws/stream at 8 kHz."""
    messages, code = asyncio.run(stream(server, samples.astype("<i2").tobytes(),
                                        {"sample_rate": 8000, "encoding": "pcm_s16le", "session_id": sid}, 3200))
    assert code == 1000
    return events_of(messages)


def test_an_audiosocket_call_at_8khz_gives_the_events_of_the_same_audio_sent_to_ws_stream(server, voice):
    uuid = "0f6a2b7c-1d2e-4f30-8a1b-2c3d4e5f6a7b"
    data = uuid_frame(uuid) + audio_frames(voice[:8000]) + encode_frame(KIND_DTMF, b"5") + audio_frames(voice[8000:])
    assert asyncio.run(call(server.audiosocket, data)) == b""  # nothing is ever written to Asterisk
    meta, events = recorded(server, uuid)
    assert meta["status"] == "complete" and meta["source"] == "audiosocket" and meta["sample_rate"] == 8000
    assert meta["metadata"]["audiosocket"]["uuid"] == uuid and "parties" not in meta
    assert any(e["type"] == "segment" for e in events)
    same_events([plain(e) for e in events], [plain(e) for e in reference(server, voice, "ref-8k")])
    audio = (server.recordings / uuid / "audio.wav").read_bytes()[44:]
    assert np.array_equal(np.frombuffer(audio, "<i2"), voice)


def test_a_close_without_hangup_ends_the_call_as_well_at_16khz(server, speech_silence_speech):
    uuid = "1a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c7d"
    samples = (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype(np.int16)
    asyncio.run(call(server.audiosocket, uuid_frame(uuid) + audio_frames(samples, 16000), piece=333, hangup=False))
    meta, events = recorded(server, uuid)
    assert meta["status"] == "complete" and meta["sample_rate"] == 16000
    messages, _ = asyncio.run(stream(server, samples.astype("<i2").tobytes(),
                                     {"sample_rate": 16000, "encoding": "pcm_s16le", "session_id": "ref-16k"}, 6400))
    same_events([plain(e) for e in events], [plain(e) for e in events_of(messages)])


async def two_legs(port: int, voices, call_id: str = CALL, rates=(8000, 8000)) -> None:
    """Both legs of one call on two connections at once, their 20 ms frames interleaved, then both hang up.

    A leg the server closes (refused) is written to no more."""
    legs = []
    for n, (voice, rate) in enumerate(zip(voices, rates), 1):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(uuid_frame(f"{call_id}-00000000000{n}"))
        legs.append([reader, writer, audio_frames(voice, rate), True])
    step = 323 * 10  # ten frames of 8 kHz audio at a time
    for i in range(0, max(len(leg[2]) for leg in legs), step):
        for leg in legs:
            if not leg[3]:
                continue
            try:
                leg[1].write(leg[2][i : i + step])
                await leg[1].drain()
            except ConnectionError:
                leg[3] = False
            if i == 0:
                await asyncio.sleep(0.5)  # leg 1's audio opens the call, whichever connection the server reads first
    for reader, writer, _, open_ in legs:
        if open_:
            writer.write(encode_frame(KIND_HANGUP))
            writer.write_eof()
    for reader, writer, _, _ in legs:
        try:
            await asyncio.wait_for(reader.read(), 120)
        except ConnectionError:
            pass
        writer.close()


def test_two_legs_of_one_call_are_one_session_of_two_parties(server, voices):
    asyncio.run(two_legs(server.audiosocket, voices))
    meta, events = recorded(server, CALL)
    assert meta["status"] == "complete" and meta["parties"] == ["customer", "counsellor"]
    assert {e["party"] for e in events} == {"customer", "counsellor"}
    for party, voice in zip(("customer", "counsellor"), voices):
        same_events([plain(e) for e in events if e["party"] == party],
                    [plain(e) for e in reference(server, voice, f"ref-{party}")])
        audio = (server.recordings / CALL / f"audio-{party}.wav").read_bytes()[44:]
        assert np.array_equal(np.frombuffer(audio, "<i2"), voice)


def test_a_leg_at_another_rate_is_refused_and_the_call_goes_on(server, voices):
    call_id = "6c1d2e3f-4051-4263-9475"
    asyncio.run(two_legs(server.audiosocket, (voices[0], np.zeros(32000, np.int16)), call_id, rates=(8000, 16000)))
    meta, events = recorded(server, call_id)
    assert meta["status"] == "complete" and meta["parties"] == ["customer", "counsellor"]
    assert {e["type"] for e in events if e["party"] == "counsellor"} == {"info"}  # its leg never joined
    assert meta["summary"]["parties"]["customer"]["duration_seconds"] == pytest.approx(len(voices[0]) / 8000, abs=0.01)
    assert "call 6c1d2e3f-4051-4263-9475 runs at 8000 Hz" in server.log.read_text()


async def refused(port: int, data: bytes) -> bytes:
    """A connection whose bytes the server refuses: it closes without writing anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()


BAD = [
    ("audio before the UUID", audio_frames(np.zeros(160, np.int16)), "audio_before_start"),
    ("unknown kind", uuid_frame("7d2e3f40-5162-4374-8586-000000000000") + encode_frame(0x42, b"?"), "unknown_type"),
    ("12 kHz", uuid_frame("8e3f4051-6273-4485-9697-000000000000") + encode_frame(0x11, bytes(480)), "unsupported_rate"),
    ("oversize", uuid_frame("9f405162-7384-4596-a7a8-000000000000") + encode_frame(0x10, bytes(16002)),
     "message_too_large"),
    ("short UUID", encode_frame(0x01, b"\x01\x02"), "bad_message"),
    ("leg 3 of 2", uuid_frame("a0516273-8495-46a7-b8b9-000000000003"), "bad_start"),
]


def test_each_bad_input_is_refused_and_never_affects_a_running_call(server, voice):
    async def run():
        good = asyncio.ensure_future(call(server.audiosocket, uuid_frame("b1627384-95a6-47b8-89ca-dbecfd0e1f20")
                                          + audio_frames(voice), piece=640))
        answers = [await refused(server.audiosocket, data) for _, data, _ in BAD]
        silent_started = time.monotonic()
        answers.append(await refused(server.audiosocket, uuid_frame("c2738495-a6b7-48c9-9adb-ecfd0e1f2031")))
        waited = time.monotonic() - silent_started
        await good
        return answers, waited

    answers, waited = asyncio.run(run())
    assert answers == [b""] * (len(BAD) + 1)
    assert 2.5 < waited < 15  # a UUID and no audio: closed at --start-timeout (3 s)
    log = server.log.read_text()
    for name, _, code in BAD:
        assert f"closed: {code} (" in log, name  # each close names its error code in the log
    for sid in ("7d2e3f40-5162-4374-8586-000000000000", "9f405162-7384-4596-a7a8-000000000000",
                "c2738495-a6b7-48c9-9adb-ecfd0e1f2031"):
        assert not (server.recordings / sid).exists()  # nothing was started
    meta, _ = recorded(server, "b1627384-95a6-47b8-89ca-dbecfd0e1f20")
    assert meta["status"] == "complete" and meta["summary"]["duration_seconds"] == pytest.approx(len(voice) / 8000, abs=0.01)


def test_an_unknown_kind_mid_call_is_skipped_and_a_rate_change_ends_the_call(server, voice):
    skipped = "d3849506-b7c8-49da-abec-fd0e1f203142"
    asyncio.run(call(server.audiosocket, uuid_frame(skipped) + audio_frames(voice[:4000]) + encode_frame(0x42, b"x")
                     + audio_frames(voice[4000:])))
    meta, _ = recorded(server, skipped)
    assert meta["status"] == "complete" and meta["summary"]["duration_seconds"] == pytest.approx(len(voice) / 8000, abs=0.01)
    changed = "e4950617-c8d9-4aeb-bcfd-0e1f20314253"
    asyncio.run(call(server.audiosocket, uuid_frame(changed) + audio_frames(voice[:4000])
                     + encode_frame(0x12, bytes(640)), hangup=False))
    meta, _ = recorded(server, changed)
    assert meta["status"] == "unsupported_rate"


def test_the_allow_list_closes_other_addresses_unread():
    networks = allowed_networks("10.0.0.0/8, 192.168.1.5")
    assert is_allowed("10.2.3.4", networks) and is_allowed("::ffff:192.168.1.5", networks)
    assert not is_allowed("127.0.0.1", networks) and not is_allowed("not-an-address", networks)
    assert is_allowed("::1", allowed_networks(None)) and not is_allowed("10.0.0.1", allowed_networks(None))

    async def run():
        settings = ServerSettings(audiosocket_port=free_port(), audiosocket_allow="10.0.0.0/8")
        fake = SimpleNamespace(settings=settings, metrics=ServerMetrics())
        listener = AudioSocketListener(fake)
        await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(uuid_frame("f5a61728-d9ea-4bfc-8d0e-1f2031425364"))
            try:
                answer = await asyncio.wait_for(reader.read(), 10)
            except ConnectionResetError:  # closed with our bytes unread: the kernel resets
                answer = b""
            writer.close()
        finally:
            await listener.stop()
        return answer, fake.metrics

    answer, metrics = asyncio.run(run())
    assert answer == b""
    assert metrics.sessions_refused.labels("audiosocket_address")._value.get() == 1


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"audiosocket_port": 70000}, "1-65535"),
        ({"audiosocket_port": 7860}, "differ from --port"),
        ({"audiosocket_port": 9092, "audiosocket_allow": "10.0.0.0/8,nowhere"}, "'nowhere' is not an address"),
        ({"audiosocket_port": 9092, "audiosocket_parties": "caller,caller"}, "distinct"),
        ({"audiosocket_port": 9092, "audiosocket_parties": ",".join(f"p{i}" for i in range(10))}, "at most 9"),
    ],
)
def test_audiosocket_options_are_checked_at_start(options, words):
    from models.errors import ConfigError

    ServerSettings(audiosocket_port=9092, audiosocket_allow="10.0.0.0/8, ::1").check()
    with pytest.raises(ConfigError, match=words):
        ServerSettings(**options).check()


def test_a_second_connection_for_a_connected_leg_is_refused(server, voice):
    call_id = "7e2f3041-5263-4485-96a7"

    async def run():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.audiosocket)
        writer.write(uuid_frame(f"{call_id}-000000000001") + audio_frames(voice[:8000]))
        await writer.drain()
        await asyncio.sleep(0.5)  # the call is open
        answer = await refused(server.audiosocket, uuid_frame(f"{call_id}-000000000001") + audio_frames(voice[:800]))
        writer.write(audio_frames(voice[8000:]) + encode_frame(KIND_HANGUP))
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 120)
        writer.close()
        return answer

    assert asyncio.run(run()) == b""
    meta, _ = recorded(server, call_id)
    assert meta["status"] == "complete"
    assert meta["summary"]["parties"]["customer"]["duration_seconds"] == pytest.approx(len(voice) / 8000, abs=0.01)
    assert f"call {call_id} already has its customer leg connected" in server.log.read_text()
