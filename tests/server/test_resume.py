"""Resuming a stream whose connection dropped: one session, one recording, the gap recorded; strangers refused.

A real server on loopback; the connection is cut at the TCP level (no `stop`, no close frame), as a
network blip or a proxy restart does, then a new connection continues the session.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave

import numpy as np
import pytest
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server_harness import start_server
from stream.protocol import mulaw
from test_server import twilio_messages

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}
STEP = 3200  # 0.1 s of int16 at 16 kHz


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    srv = start_server(tiny_model_dir, tmp_path_factory.mktemp("resume"), "--resume-seconds", "5")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pcm(speech_silence_speech):
    return (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype("<i2")


async def _until_ready(ws) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if message["type"] in ("ready", "error"):
            return message


async def _drop(ws) -> None:
    """Cut the connection as a network failure does: no `stop`, no close frame."""
    ws.transport.abort()
    await asyncio.sleep(0.3)


async def _send(ws, audio: np.ndarray) -> None:
    for i in range(0, len(audio), STEP // 2):
        await ws.send(audio[i : i + STEP // 2].tobytes())


async def _finish(ws) -> list[dict]:
    await ws.send(json.dumps({"type": "stop"}))
    got = []
    try:
        async for raw in ws:
            got.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return got


def _recorded(server, sid: str) -> tuple[dict, list[dict], np.ndarray]:
    folder = server.recordings / sid
    with wave.open(str(folder / "audio.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    return json.loads((folder / "session.json").read_text()), events, audio


def test_a_dropped_stream_resumed_within_the_grace_period_is_one_session_with_all_its_audio(server, pcm):
    first, second = pcm[: len(pcm) // 2], pcm[len(pcm) // 2 :]

    async def call():
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
            await ws.send(json.dumps({**START, "session_id": "blip-1"}))
            ready = await _until_ready(ws)
            await _send(ws, first)
            await asyncio.sleep(0.5)
            await _drop(ws)
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
            await ws.send(json.dumps({**START, "session_id": "blip-1", "resume": True,
                                      "resume_token": ready["resume_token"]}))
            resumed = await _until_ready(ws)
            await _send(ws, second)
            return ready, resumed, await _finish(ws)

    ready, resumed, rest = asyncio.run(call())
    assert ready["type"] == "ready" and len(ready["resume_token"]) >= 16
    assert resumed["type"] == "ready" and resumed["session_id"] == "blip-1"
    assert resumed["resumed"]["received_seconds"] == pytest.approx(len(first) / 16000, abs=1e-3)
    assert 0 < resumed["resumed"]["gap_seconds"] < 5
    summary = rest[-1]
    assert summary["type"] == "summary" and summary["stats"]["status"] == "complete"
    assert summary["stats"]["duration_seconds"] == pytest.approx(len(pcm) / 16000, abs=1e-3)
    meta, events, audio = _recorded(server, "blip-1")
    assert meta["status"] == "complete" and np.array_equal(audio, pcm)  # every sample sent, in order, one file
    (gap,) = [e for e in events if e.get("event") == "reconnected"]
    assert gap["received_seconds"] == resumed["resumed"]["received_seconds"]
    windows = [e for e in events if e["type"] == "window"]
    assert windows[-1]["end"] > len(first) / 16000 + 1  # the analysis went on after the gap
    assert [w["index"] for w in windows] == list(range(len(windows)))  # one timeline, numbered on


def test_a_stranger_cannot_resume_and_a_session_not_waiting_is_refused(server, pcm):
    async def call():
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
            await ws.send(json.dumps({**START, "session_id": "blip-2"}))
            ready = await _until_ready(ws)
            await _send(ws, pcm[:16000])
            await _drop(ws)
        answers = []
        for start in ({**START, "session_id": "blip-2", "resume": True, "resume_token": "x" * 32},  # a stranger
                      {**START, "session_id": "blip-2"},  # the same id as a new session
                      {**START, "session_id": "blip-2", "resume": True, "resume_token": ready["resume_token"],
                       "encoding": "pcm_f32le"},  # another format
                      {**START, "session_id": "never-was", "resume": True, "resume_token": ready["resume_token"]}):
            async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
                await ws.send(json.dumps(start))
                answers.append(await _until_ready(ws))
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:  # the owner still can
            await ws.send(json.dumps({**START, "session_id": "blip-2", "resume": True,
                                      "resume_token": ready["resume_token"]}))
            owner = await _until_ready(ws)
            return answers, owner, await _finish(ws)

    answers, owner, rest = asyncio.run(call())
    assert [(a["type"], a.get("code")) for a in answers] == [
        ("error", "resume_refused"), ("error", "session_in_use"), ("error", "resume_refused"), ("error", "resume_refused")]
    assert owner["type"] == "ready" and rest[-1]["stats"]["status"] == "complete"


def test_without_a_resume_within_the_grace_period_the_session_ends_disconnected(server, pcm):
    async def call():
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
            await ws.send(json.dumps({**START, "session_id": "blip-3"}))
            ready = await _until_ready(ws)
            await _send(ws, pcm[:16000])
            await _drop(ws)
        await asyncio.sleep(6)  # --resume-seconds 5
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
            await ws.send(json.dumps({**START, "session_id": "blip-3", "resume": True,
                                      "resume_token": ready["resume_token"]}))
            return await _until_ready(ws)

    late = asyncio.run(call())
    assert (late["type"], late["code"]) == ("error", "resume_refused")
    meta, _, audio = _recorded(server, "blip-3")
    assert meta["status"] == "disconnected" and np.array_equal(audio, pcm[:16000])


def test_a_twilio_stream_reopened_for_the_same_call_continues_its_session(server, pcm):
    samples8k = (soxr.resample(pcm / 32768, 16000, 8000) * 32767).astype(np.int16)
    half = len(samples8k) // 2
    first = twilio_messages(samples8k[:half], stream_sid="MZfirst", call_sid="CAblip")[:-3]  # no dtmf, mark, stop
    second = twilio_messages(samples8k[half:], stream_sid="MZsecond", call_sid="CAblip")
    other = twilio_messages(samples8k[:8000], stream_sid="MZother", call_sid="CAother")

    async def call():
        async with connect(f"{server.ws}/ws/twilio") as ws:
            for message in first:
                await ws.send(message)
            await asyncio.sleep(1.0)
            await _drop(ws)
        for messages in (second, other):
            async with connect(f"{server.ws}/ws/twilio") as ws:
                for message in messages:
                    await ws.send(message)
                try:
                    await asyncio.wait_for(ws.wait_closed(), 60)
                except asyncio.TimeoutError:
                    pass

    asyncio.run(call())
    deadline = time.monotonic() + 30
    while json.loads((server.recordings / "twilio-MZfirst" / "session.json").read_text())["status"] == "live":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    meta, events, audio = _recorded(server, "twilio-MZfirst")
    assert meta["status"] == "complete" and meta["metadata"]["twilio"]["call_sid"] == "CAblip"
    expected = mulaw.decode(mulaw.encode(samples8k))  # what Twilio's μ-law carries, both streams of the call
    assert np.array_equal(audio, expected)
    assert any(e.get("event") == "reconnected" for e in events)
    assert not (server.recordings / "twilio-MZsecond").exists()  # the re-opened stream was no new session
    assert (server.recordings / "twilio-MZother").is_dir()  # another call is its own session


def test_the_python_client_resumes_by_itself_when_its_connection_drops(server, pcm):
    from stream.client import Client

    first, second = pcm[: len(pcm) // 2], pcm[len(pcm) // 2 :]

    async def call():
        async with Client(server.ws, token=server.token, session_id="blip-client", resume=True) as client:
            for i in range(0, len(first), STEP):
                await client.send(first[i : i + STEP])
            await asyncio.sleep(0.5)
            await _drop(client._ws)  # the network fails under it
            for i in range(0, len(second), STEP):
                await client.send(second[i : i + STEP])  # the first send reconnects and resumes
            return client.resumed, await client.finish(120)

    resumed, got = asyncio.run(call())
    assert resumed["received_seconds"] == pytest.approx(len(first) / 16000, abs=1e-3)
    assert got[-1]["type"] == "summary" and got[-1]["stats"]["status"] == "complete"
    meta, _, audio = _recorded(server, "blip-client")
    assert meta["status"] == "complete" and np.array_equal(audio, pcm)
