"""The JSON-then-PCM connectors end to end: Vonage, jambonz and FreeSWITCH's audio fork over loopback.

Each platform is played by a plain `websockets` client sending what its documents say it sends: one
JSON text preamble, then binary L16, then the close that ends the call. The reference is always the
same audio sent to /ws/stream.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import soxr
from party_helpers import same_events
from server_harness import start_server
from test_server import events_of, stream
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    s = start_server(tiny_model_dir, tmp_path_factory.mktemp("json_pcm"), "--max-wait-ms", "20",
                     "--max-message-bytes", "65536", token=TOKEN)
    yield s
    s.stop()


def pcm(x: np.ndarray, rate: int = 16000) -> np.ndarray:
    x = soxr.resample(x, 16000, rate) if rate != 16000 else x
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def plain(message: dict) -> dict:
    return {k: v for k, v in message.items() if k not in ("session_id", "party")}


async def platform_call(server, path: str, preamble: dict | str, audio: bytes, piece: int = 640, query: str = "",
                        subprotocols=None, headers=None, after: list | None = None):
    """One platform connection: preamble, audio in 20 ms pieces, then close. Returns (close code, reason, subprotocol)."""
    url = f"{server.ws}{path}?{query or 'token=' + TOKEN}"
    async with connect(url, subprotocols=subprotocols, additional_headers=headers) as ws:
        try:
            await ws.send(preamble if isinstance(preamble, str) else json.dumps(preamble))
            for i in range(0, len(audio), piece):
                await ws.send(audio[i : i + piece])
            for message in after or ():
                await ws.send(message)
        except ConnectionClosed:
            pass
        selected = ws.subprotocol
    return ws.close_code, ws.close_reason, selected


def recorded(server, sid: str, timeout: float = 60) -> tuple[dict, list[dict]]:
    """A session's session.json once it ended, and its recorded events."""
    folder = server.recordings / sid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "session.json").exists():
            meta = json.loads((folder / "session.json").read_text())
            if meta.get("status") != "live":
                return meta, [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
        time.sleep(0.1)
    raise AssertionError(f"session {sid} did not end")


def reference(server, samples: np.ndarray, rate: int, sid: str) -> list[dict]:
    messages, code = asyncio.run(stream(server, samples.astype("<i2").tobytes(),
                                        {"sample_rate": rate, "encoding": "pcm_s16le", "session_id": sid}, 6400))
    assert code == 1000
    return events_of(messages)


def test_a_jambonz_stereo_stream_is_split_into_two_parties(server, two_voices):
    caller, agent = (pcm(x, 8000) for x in two_voices)
    stereo = np.stack([caller, agent], axis=1).astype("<i2").tobytes()
    hello = {"callSid": "jz-stereo-1", "from": "+15083084809", "to": "+15083728299", "sampleRate": 8000,
             "mixType": "stereo", "metadata": {"parties": ["customer", "counsellor"]}}
    code, _, selected = asyncio.run(platform_call(server, "/ws/jambonz", hello, stereo, piece=640,
                                                  subprotocols=["audio.jambonz.org"],
                                                  after=[json.dumps({"event": "dtmf", "dtmf": "4", "duration": "100"})]))
    assert selected == "audio.jambonz.org" and code == 1000
    meta, events = recorded(server, "jambonz-jz-stereo-1")
    assert meta["status"] == "complete" and meta["source"] == "jambonz" and meta["parties"] == ["customer", "counsellor"]
    assert meta["metadata"]["jambonz"]["callSid"] == "jz-stereo-1" and meta["channels"] == 2
    for party, voice in (("customer", caller), ("counsellor", agent)):
        same_events([plain(e) for e in events if e["party"] == party],
                    [plain(e) for e in reference(server, voice, 8000, f"ref-jz-{party}")])
        audio = (server.recordings / "jambonz-jz-stereo-1" / f"audio-{party}.wav").read_bytes()[44:]
        assert np.array_equal(np.frombuffer(audio, "<i2"), voice)


def test_a_vonage_call_gives_the_events_of_the_same_audio_sent_to_ws_stream(server, speech_silence_speech):
    samples = pcm(speech_silence_speech.samples)
    hello = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "uuid": "vg-1", "agent": "42"}
    code, _, selected = asyncio.run(platform_call(
        server, "/ws/vonage", hello, samples.astype("<i2").tobytes(), query="x=1", headers={"Authorization": f"Bearer {TOKEN}"},
        after=[json.dumps({"event": "websocket:dtmf", "digit": "9", "duration": 250})]))
    assert code == 1000 and selected is None
    meta, events = recorded(server, "vonage-vg-1")
    assert meta["status"] == "complete" and meta["source"] == "vonage" and meta["metadata"]["vonage"]["agent"] == "42"
    same_events([plain(e) for e in events], [plain(e) for e in reference(server, samples, 16000, "ref-vonage")])


def test_a_freeswitch_audio_fork_at_8k(server, speech_silence_speech):
    samples = pcm(speech_silence_speech.samples, 8000)
    hello = {"uuid": "fs-77", "sampleRate": "8k", "mixType": "mono", "line": "support"}
    code, _, selected = asyncio.run(platform_call(server, "/ws/audiofork", hello, samples.astype("<i2").tobytes(),
                                                  piece=320, subprotocols=["audio.drachtio.org"]))
    assert code == 1000 and selected == "audio.drachtio.org"
    meta, events = recorded(server, "audiofork-fs-77")
    assert meta["status"] == "complete" and meta["metadata"]["audiofork"]["line"] == "support"
    same_events([plain(e) for e in events], [plain(e) for e in reference(server, samples, 8000, "ref-fork")])


BAD = [
    ("/ws/vonage", {"event": "websocket:connected", "content-type": "audio/pcmu;rate=8000"}, "unsupported_encoding"),
    ("/ws/vonage", {"event": "websocket:connected", "content-type": "audio/l16;rate=24000"}, "unsupported_rate"),
    ("/ws/vonage", {"event": "hello"}, "bad_start"),
    ("/ws/jambonz", {"callSid": "x1", "sampleRate": 64000, "mixType": "stereo"}, "unsupported_rate"),
    ("/ws/jambonz", {"callSid": "x2", "sampleRate": 8000, "mixType": "surround"}, "bad_start"),
    ("/ws/jambonz", {"callSid": "x3", "sampleRate": 8000, "mixType": "stereo", "parties": ["a", "a"]}, "bad_parties"),
    ("/ws/audiofork", {"uuid": "x4", "mixType": "mono"}, "bad_start"),
    ("/ws/audiofork", "[1, 2]", "bad_json"),
]


def test_each_bad_preamble_is_refused_and_never_affects_a_running_call(server, speech_silence_speech):
    samples = pcm(speech_silence_speech.samples)
    hello = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "uuid": "vg-alongside"}

    async def bad(path, preamble):
        async with connect(f"{server.ws}{path}?token={TOKEN}") as ws:
            await ws.send(preamble if isinstance(preamble, str) else json.dumps(preamble))
            try:
                await ws.send(bytes(640))  # audio after a refused preamble is never analyzed
            except ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code, ws.close_reason

    async def audio_first():
        async with connect(f"{server.ws}/ws/jambonz?token={TOKEN}") as ws:
            await ws.send(bytes(640))
            await ws.wait_closed()
            return ws.close_code, ws.close_reason

    async def oversize():
        async with connect(f"{server.ws}/ws/vonage?token={TOKEN}") as ws:
            await ws.send(json.dumps({**hello, "uuid": "vg-big"}))
            try:
                await ws.send(bytes(70000))
            except ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code

    async def run():
        good = asyncio.ensure_future(platform_call(server, "/ws/vonage", hello, samples.astype("<i2").tobytes()))
        closes = [await bad(path, preamble) for path, preamble, _ in BAD]
        closes.append(await audio_first())
        big = await oversize()
        await good
        return closes, big

    closes, big = asyncio.run(run())
    assert closes == [(1008, code) for *_, code in BAD] + [(1008, "audio_before_start")]
    assert big == 1009
    for sid in ("jambonz-x1", "jambonz-x2", "jambonz-x3", "audiofork-x4"):
        assert not (server.recordings / sid).exists()
    meta, _ = recorded(server, "vonage-vg-alongside")
    assert meta["status"] == "complete"
    assert meta["summary"]["duration_seconds"] == pytest.approx(len(samples) / 16000, abs=0.01)


def test_the_connectors_need_the_stream_credential(server):
    async def handshake(query: str):
        async with connect(f"{server.ws}/ws/jambonz{query}", subprotocols=["audio.jambonz.org"]):
            pass

    for query in ("", "?token=wrong"):
        with pytest.raises(InvalidStatus) as exc:
            asyncio.run(handshake(query))
        assert exc.value.response.status_code == 401
    asyncio.run(handshake(f"?token={TOKEN}"))  # accepted; closing before the preamble starts nothing


def test_a_call_id_already_recorded_is_refused(server, speech_silence_speech):
    samples = pcm(speech_silence_speech.samples, 8000)[:8000].astype("<i2").tobytes()
    hello = {"callSid": "jz-twice", "sampleRate": 8000, "mixType": "mono"}
    first = asyncio.run(platform_call(server, "/ws/jambonz", hello, samples, subprotocols=["audio.jambonz.org"]))
    assert first[0] == 1000 and recorded(server, "jambonz-jz-twice")[0]["status"] == "complete"

    async def again():
        async with connect(f"{server.ws}/ws/jambonz?token={TOKEN}", subprotocols=["audio.jambonz.org"]) as ws:
            await ws.send(json.dumps(hello))
            await ws.wait_closed()  # the server closes: the platform never does first here
            return ws.close_code, ws.close_reason

    assert asyncio.run(again()) == (1008, "session_in_use")
