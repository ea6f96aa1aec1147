"""Split sessions end to end: the real server, real WebSocket clients, stereo and Twilio's two tracks."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from server_harness import start_server
from party_helpers import same_events
from test_server import _reader, events_of, stream


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
