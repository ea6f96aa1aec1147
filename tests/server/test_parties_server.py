"""Split sessions end to end: the real server, real WebSocket clients, stereo and Twilio's two tracks."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import numpy as np
import pytest
import soxr
from audio_fixtures import write_stereo16, write_wav16
from party_helpers import same_events
from server_harness import start_server
from test_server import _reader, events_of, stream
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stream.protocol import mulaw


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    s = start_server(tiny_model_dir, tmp_path_factory.mktemp("parties"), "--max-wait-ms", "20")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def voices(two_voices):
    return tuple((np.clip(x, -1, 1) * 32767).astype(np.int16) for x in two_voices)


def plain(message: dict) -> dict:
    """An event as a mono session of that voice alone would send it."""
    return {k: v for k, v in message.items() if k not in ("session_id", "party")}


def test_stereo_split_gives_each_party_the_events_of_its_channel_alone(server, voices):
    caller, agent = voices
    stereo = np.stack([caller, agent], axis=1).astype("<i2").tobytes()
    start = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 2, "split_channels": True,
             "parties": ["caller", "counsellor"], "session_id": "stereo-1"}
    messages, code = asyncio.run(stream(server, stereo, start, 6400))
    assert code == 1000
    assert messages[0]["type"] == "ready" and messages[0]["parties"] == ["caller", "counsellor"]
    split = events_of(messages)
    assert {e["party"] for e in split} == {"caller", "counsellor"}
    for party, mono, sid in (("caller", caller, "mono-caller"), ("counsellor", agent, "mono-agent")):
        alone, _ = asyncio.run(stream(server, mono.astype("<i2").tobytes(),
                                      {"sample_rate": 16000, "encoding": "pcm_s16le", "session_id": sid}, 3200))
        assert all("party" not in e for e in events_of(alone))  # unsplit sessions are as before
        same_events([plain(e) for e in split if e["party"] == party], [plain(e) for e in events_of(alone)])
    stats = messages[-1]["stats"]
    assert set(stats["parties"]) == {"caller", "counsellor"}
    for party in ("caller", "counsellor"):
        assert stats["parties"][party]["events"]["segment"] == sum(
            1 for e in split if e["party"] == party and e["type"] == "segment")
    # The recording keeps each voice in its own file; the API serves each.
    folder = server.recordings / "stereo-1"
    meta = json.loads((folder / "session.json").read_text())
    assert meta["parties"] == ["caller", "counsellor"] and meta["status"] == "complete"
    for party, mono in (("caller", caller), ("counsellor", agent)):
        assert np.array_equal(np.frombuffer((folder / f"audio-{party}.wav").read_bytes()[44:], "<i2"), mono)
        served = httpx.get(f"{server.http}/api/sessions/stereo-1/audio", params={"party": party}, headers=server.headers)
        assert served.status_code == 200 and served.content == (folder / f"audio-{party}.wav").read_bytes()
    missing = httpx.get(f"{server.http}/api/sessions/stereo-1/audio", headers=server.headers)
    assert missing.status_code == 400 and missing.json()["code"] == "party_required"


@pytest.mark.parametrize(
    ("start", "code"),
    [
        ({"channels": 1, "split_channels": True}, "bad_split"),
        ({"channels": 2, "split_channels": True, "parties": ["a", "b", "c"]}, "bad_parties"),
        ({"channels": 2, "parties": ["a", "b"]}, "bad_parties"),
    ],
)
def test_bad_split_starts_get_an_error_and_the_connection_goes_on(server, start, code):
    async def run():
        got = []
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", **start}))
            got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
            got.append(json.loads(await ws.recv()))  # a corrected start still works
            await ws.send(json.dumps({"type": "stop"}))
            reader = asyncio.create_task(_reader(ws, got))
            await asyncio.wait_for(reader, 30)
        return got

    got = asyncio.run(run())
    assert got[0]["type"] == "error" and got[0]["code"] == code
    assert got[1]["type"] == "ready" and got[-1]["type"] == "summary"


def twilio_call(tracks: dict[str, np.ndarray], stream_sid: str, params: dict | None = None) -> list[str]:
    """A Twilio call's messages: each track's 20 ms media interleaved as Twilio sends them."""
    payloads = {track: mulaw.encode(x) for track, x in tracks.items()}
    msgs = [{"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
             "start": {"accountSid": "AC1", "streamSid": stream_sid, "callSid": "CA1", "tracks": list(tracks),
                       "customParameters": {"token": "s3cret", **(params or {})},
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}]
    seq = 2
    for i, start in enumerate(range(0, max(len(p) for p in payloads.values()), 160)):
        for track, payload in payloads.items():
            msgs.append({"event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                         "media": {"track": track, "chunk": str(i + 1), "timestamp": str(i * 20),
                                   "payload": base64.b64encode(payload[start : start + 160]).decode()}})
            seq += 1
    msgs.append({"event": "stop", "sequenceNumber": str(seq), "streamSid": stream_sid, "stop": {}})
    return [json.dumps(m) for m in msgs]


def run_twilio(server, messages: list[str]) -> tuple[list[dict], int]:
    async def run():
        async with connect(f"{server.ws}/ws/twilio") as tw:
            for m in messages:
                await tw.send(m)
            await tw.wait_closed()
            return tw.close_code

    code = asyncio.run(run())
    sid = "twilio-" + json.loads(messages[1])["streamSid"]
    lines = (server.recordings / sid / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], code


def test_twilio_both_tracks_give_each_party_the_events_of_its_track_alone(server, two_voices):
    caller, agent = (np.clip(soxr.resample(x, 16000, 8000), -1, 1) * 32767 for x in two_voices)
    caller, agent = caller.astype(np.int16), agent.astype(np.int16)
    both, code = run_twilio(server, twilio_call({"inbound": caller, "outbound": agent}, "MZboth",
                                                {"outbound_party": "counsellor"}))
    assert code == 1000 and {e["party"] for e in both} == {"caller", "counsellor"}
    meta = json.loads((server.recordings / "twilio-MZboth" / "session.json").read_text())
    assert meta["parties"] == ["caller", "counsellor"] and meta["status"] == "complete"
    assert meta["metadata"]["twilio"]["parties"] == {"inbound": "caller", "outbound": "counsellor"}
    assert set(meta["summary"]["parties"]) == {"caller", "counsellor"}
    for party, voice, sid in (("caller", caller, "MZcaller"), ("counsellor", agent, "MZagent")):
        alone, _ = run_twilio(server, twilio_call({"inbound": voice}, sid))
        assert all("party" not in e for e in alone)
        same_events([plain(e) for e in both if e["party"] == party], [plain(e) for e in alone])
        wav = (server.recordings / "twilio-MZboth" / f"audio-{party}.wav").read_bytes()[44:]
        assert np.array_equal(np.frombuffer(wav, "<i2"), mulaw.decode(mulaw.encode(voice)))


def test_twilio_unknown_track_parameter_closes_with_a_policy_code(server, two_voices):
    voice = (two_voices[0][:8000] * 1000).astype(np.int16)
    _, code = asyncio.run(_twilio_close(server, twilio_call({"inbound": voice}, "MZbad", {"track": "sideways"})))
    assert code == 1008
    assert not (server.recordings / "twilio-MZbad").exists()  # nothing was started


async def _twilio_close(server, messages):
    async with connect(f"{server.ws}/ws/twilio") as tw:
        try:
            for m in messages:
                await tw.send(m)
        except ConnectionClosed:
            pass  # the server closed the connection mid-call, as it should
        await tw.wait_closed()
        return None, tw.close_code


def test_predict_splits_channels_like_analyze(server, voices, tmp_path):
    caller, agent = (v.astype(np.float32) / 32767 for v in voices)
    stereo = write_stereo16(tmp_path / "call.wav", caller, agent).read_bytes()

    def predict(data: bytes, **form):
        return httpx.post(f"{server.http}/api/predict", headers=server.headers, timeout=120,
                          files={"file": ("call.wav", data, "audio/wav")}, data={"granularity": "frame", **form})

    split = predict(stereo, split_channels="true", parties="caller,agent")
    assert split.status_code == 200, split.text
    body = split.json()
    assert body["split_channels"] is True and list(body["parties"]) == ["caller", "agent"]
    for party, voice in (("caller", caller), ("agent", agent)):
        alone = predict(write_wav16(tmp_path / f"{party}.wav", voice).read_bytes()).json()
        theirs = body["parties"][party]
        for key in ("timestamp", "source", "channel"):
            theirs.pop(key, None), alone.pop(key, None)
        assert theirs == alone
    bad = predict(stereo, split_channels="true", parties="a,b,c")
    assert bad.status_code == 422 and bad.json()["code"] == "bad_parties"
    mono = predict(write_wav16(tmp_path / "mono.wav", caller).read_bytes(), split_channels="true")
    assert mono.status_code == 422 and "nothing to split" in mono.json()["message"]
    assert predict(stereo, parties="a,b").json()["code"] == "bad_parties"


def test_replaying_each_party_recording_gives_its_live_events(server, voices, tiny_model_dir, tmp_path):
    from stream.cli.main import main as cli_main

    stereo = np.stack(voices, axis=1).astype("<i2").tobytes()
    start = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 2, "split_channels": True,
             "parties": ["caller", "agent"], "session_id": "replay-split"}
    messages, _ = asyncio.run(stream(server, stereo, start, 6400))
    live = events_of(messages)
    for party in ("caller", "agent"):
        wav = server.recordings / "replay-split" / f"audio-{party}.wav"
        out = tmp_path / party
        assert cli_main(["analyze", str(wav), "--granularity", "frame", "--model-dir", str(tiny_model_dir),
                         "--device", "cpu", "--out", str(out), "-q"]) == 0
        [folder] = list(out.iterdir())
        replay = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
        same_events([plain(e) for e in live if e["party"] == party], replay)
