"""The live server end to end: a real server process, real WebSocket and HTTP clients on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import wave

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from audio_fixtures import write_wav16
from server_harness import ROOT, start_server, unbatched
from stream.cli.main import main as cli_main
from stream.client import Client
from stream.protocol import mulaw
from stream.protocol.native import SAMPLE_BYTES, decode_frames

CHUNK = 0.1
DECISION_FIELDS = {"emotion", "model_emotion", "profile", "enhanced", "withheld", "steps", "quality", "fusion",
                   "focus", "cues", "evidence"}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    (tmp / "audio").mkdir()
    s = start_server(tiny_model_dir, tmp, "--audio-root", str(tmp / "audio"), "--max-wait-ms", "50")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pcm(speech_silence_speech):
    return (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype(np.int16)


async def _reader(ws, into: list):
    try:
        async for raw in ws:
            into.extend(unbatched(json.loads(raw)))  # (a monitor's held deltas come in a `batch`)
    except ConnectionClosed:
        pass


async def stream(server, audio: bytes, start: dict, bytes_per_chunk: int, pace: float = 0.0):
    """Run one native session through stream.client; returns (messages, close code)."""
    channels = start.get("channels", 1)
    frames = decode_frames(audio, start["encoding"], channels)  # the bytes as the client sends them again
    step = bytes_per_chunk // (SAMPLE_BYTES[start["encoding"]] * channels)
    async with Client(server.ws, token=server.token, **start) as client:
        for i in range(0, len(frames), step):
            await client.send(frames[i : i + step])
            if pace:
                await asyncio.sleep(pace)
        return await client.finish(120), client.close_code


def events_of(messages, kind=None):
    skip = {"ready", "summary", "error", "overload"}
    return [m for m in messages if m["type"] not in skip and (kind is None or m["type"] == kind)]


def test_native_stream_end_to_end_and_recording(server, pcm, speech_silence_speech):
    messages, code = asyncio.run(
        stream(server, pcm.tobytes(), {"sample_rate": 16000, "encoding": "pcm_s16le", "session_id": "call-1",
                                        "context": "crisis hotline", "metadata": {"line": 7}}, 3200)
    )
    assert code == 1000
    assert messages[0]["type"] == "ready" and messages[0]["session_id"] == "call-1"
    assert messages[-1]["type"] == "summary"
    events = events_of(messages)
    assert events[0]["type"] == "info" and events[0]["random_weights"] is True
    assert events[0]["precision"] == "float32"  # the tests' EMOSTREAM_DTYPE
    assert len(events_of(messages, "segment")) == 2 and events_of(messages, "window")
    assert all(e["session_id"] == "call-1" for e in events)
    # The context picked its domain profile, and every segment carries the decision layer's fields.
    assert events[0]["profile"]["name"] == "crisis_hotline" and events[0]["profile"]["neutral"] is True
    for seg in events_of(messages, "segment"):
        assert set(seg["decision"]) == DECISION_FIELDS and seg["decision"]["profile"] == "crisis_hotline"
        assert seg["decision"]["quality"]["ok"] is True and seg["decision"]["quality"]["band"] == "wideband"
    # The recording holds exactly the received audio and the emitted events.
    folder = server.recordings / "call-1"
    with wave.open(str(folder / "audio.wav")) as w:
        assert w.getframerate() == 16000
        assert np.array_equal(np.frombuffer(w.readframes(w.getnframes()), "<i2"), pcm)
    recorded = [json.loads(l) for l in (folder / "events.jsonl").read_text().splitlines()]
    assert [r["type"] for r in recorded] == [e["type"] for e in events]
    meta = json.loads((folder / "session.json").read_text())
    assert meta["status"] == "complete" and meta["metadata"] == {"line": 7} and meta["context"] == "crisis hotline"
    # The HTTP API lists and serves it.
    api = httpx.get(f"{server.http}/api/sessions/call-1", headers=server.headers).json()
    assert api["session_id"] == "call-1"
    listed = httpx.get(f"{server.http}/api/sessions", headers=server.headers).json()["sessions"]
    assert "call-1" in [s["session_id"] for s in listed]
    audio = httpx.get(f"{server.http}/api/sessions/call-1/audio", headers=server.headers)
    assert audio.status_code == 200 and audio.content == (folder / "audio.wav").read_bytes()
    served = httpx.get(f"{server.http}/api/sessions/call-1/events", headers=server.headers)
    assert [json.loads(l) for l in served.text.split("\n") if l] == recorded


def test_replaying_a_recording_gives_the_live_events(server, pcm, tiny_model_dir, tmp_path):
    messages, _ = asyncio.run(
        stream(server, (pcm / 32768).astype("<f4").tobytes(),
               {"sample_rate": 16000, "encoding": "pcm_f32le", "session_id": "replay-1"}, 6400)
    )
    live = events_of(messages)
    wav = server.recordings / "replay-1" / "audio.wav"
    assert cli_main(["analyze", str(wav), "--granularity", "frame", "--model-dir", str(tiny_model_dir),
                     "--device", "cpu", "--out", str(tmp_path), "-q"]) == 0
    out = next(tmp_path.glob("audio_*"))
    replay = [json.loads(l) for l in (out / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in replay] == [e["type"] for e in live]
    for a, b in zip(live, replay):
        for key in ("start", "end", "time", "index", "segment", "dominant", "emotion", "from", "to"):
            assert a.get(key) == b.get(key), (key, a, b)
        for key in ("scores", "smoothed", "peaks"):
            if key in a:
                assert max(abs(a[key][l] - b[key][l]) for l in a[key]) < 1e-4
        if a["type"] == "segment":  # the decision layer decides the same on the recording
            for key in ("emotion", "model_emotion", "withheld", "enhanced", "steps"):
                assert a["decision"][key] == b["decision"][key]
            assert a["decision"]["quality"]["ok"] == b["decision"]["quality"]["ok"]


def twilio_messages(samples8k: np.ndarray, stream_sid="MZ123abc", call_sid="CA987", token="s3cret") -> list[str]:
    payload = mulaw.encode(samples8k)
    msgs = [{"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
             "start": {"accountSid": "AC1", "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
                       "customParameters": {"context": "crisis hotline", "token": token},
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}]
    seq = 2
    for i, start in enumerate(range(0, len(payload), 160)):  # 20 ms frames as Twilio sends them
        msgs.append({"event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                     "media": {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20),
                               "payload": base64.b64encode(payload[start : start + 160]).decode()}})
        seq += 1
    msgs.append({"event": "dtmf", "streamSid": stream_sid, "sequenceNumber": str(seq), "dtmf": {"track": "inbound_track", "digit": "5"}})
    msgs.append({"event": "mark", "sequenceNumber": str(seq + 1), "streamSid": stream_sid, "mark": {"name": "greeting"}})
    msgs.append({"event": "stop", "sequenceNumber": str(seq + 2), "streamSid": stream_sid, "stop": {"accountSid": "AC1", "callSid": call_sid}})
    return [json.dumps(m) for m in msgs]


async def subscribe_on_start(mon, seen: list, sid: str, timeout: float = 30) -> dict:
    """Wait on a monitor for `sid`'s session_started, subscribe to it, and return the `subscribed` reply."""
    for _ in range(int(timeout / 0.05)):
        if any(m["type"] == "session_started" and m["session"]["session_id"] == sid for m in seen):
            break
        await asyncio.sleep(0.05)
    await mon.send(json.dumps({"type": "subscribe", "session_id": sid}))
    for _ in range(int(timeout / 0.05)):
        replies = [m for m in seen if m["type"] in ("subscribed", "error") and m.get("session_id") == sid]
        if replies:
            return replies[0]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no subscribed reply for {sid}")


def test_twilio_stream_and_monitor_feed(server, speech_silence_speech):
    import soxr

    samples8k = (soxr.resample(speech_silence_speech.samples, 16000, 8000) * 32767).astype(np.int16)

    async def run():
        seen: list = []
        async with connect(f"{server.ws}/ws/monitor", additional_headers=server.headers) as mon:
            reader = asyncio.create_task(_reader(mon, seen))
            # Twilio sends no headers: the token travels as a <Parameter> of the start message.
            async with connect(f"{server.ws}/ws/twilio") as tw:
                messages = twilio_messages(samples8k)
                for m in messages[:2]:  # connected, start: the session starts
                    await tw.send(m)
                reply = await subscribe_on_start(mon, seen, "twilio-MZ123abc")  # its events, from its info on
                for m in messages[2:]:
                    await tw.send(m)
                await tw.wait_closed()
            for _ in range(200):
                if any(m["type"] == "session_ended" for m in seen):
                    break
                await asyncio.sleep(0.1)
            reader.cancel()
        return seen, reply

    seen, reply = asyncio.run(run())
    assert seen[0]["type"] == "snapshot"
    started = [m for m in seen if m["type"] == "session_started"]
    assert len(started) == 1 and started[0]["session"]["source"] == "twilio"
    session = started[0]["session"]
    sid = session["session_id"]
    assert session["metadata"]["twilio"]["call_sid"] == "CA987" and session["context"] == "crisis hotline"
    assert "s3cret" not in json.dumps(started[0])  # the token never reaches metadata
    assert reply["type"] == "subscribed" and reply["events"][0]["type"] == "info"
    mine = reply["events"] + [m for m in seen[seen.index(reply) + 1 :] if m.get("session_id") == sid]
    segments = [m for m in mine if m["type"] == "segment"]
    assert len(segments) == 2
    # 8 kHz telephony audio is recognised as such by the quality check.
    assert all(s["decision"]["quality"]["telephony"] and s["decision"]["quality"]["band"] == "telephony (8 kHz)"
               for s in segments)
    assert any(m["type"] == "telephony" and m["event"] == "dtmf" and m["digit"] == "5" for m in mine)
    assert mine[-1]["type"] == "session_ended" and mine[-1]["summary"]["status"] == "complete"
    meta = json.loads((server.recordings / sid / "session.json").read_text())
    assert meta["sample_rate"] == 8000 and meta["status"] == "complete"


def test_concurrent_streams_are_batched(server, pcm):
    async def run():
        start = {"sample_rate": 16000, "encoding": "pcm_s16le"}
        return await asyncio.gather(*(stream(server, pcm.tobytes(), start, 3200, pace=0.02) for _ in range(4)))

    before = _batch_counts(server)
    results = asyncio.run(run())
    after = _batch_counts(server)
    for messages, code in results:
        assert code == 1000 and len(events_of(messages, "segment")) == 2
    counts = [events_of(m, "window") for m, _ in results]
    assert len({len(c) for c in counts}) == 1  # same audio, same windows, whatever the batching
    batches, singles = after[0] - before[0], after[1] - before[1]
    assert batches > 0 and singles < batches, "some forward passes served several streams"


def _batch_counts(server) -> tuple[float, float]:
    text = httpx.get(f"{server.http}/metrics", headers=server.headers).text
    count = single = 0.0
    for line in text.splitlines():
        if line.startswith("emostream_batch_size_count"):
            count = float(line.split()[-1])
        if line.startswith('emostream_batch_size_bucket{le="1.0"}'):
            single = float(line.split()[-1])
    return count, single


def test_malformed_messages_get_errors_and_the_session_survives(server, pcm):
    async def run():
        got: list = []
        async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
            reader = asyncio.create_task(_reader(ws, got))
            await ws.send("{not json")
            await ws.send(json.dumps({"type": "dance"}))
            await ws.send(b"\x00\x01")  # audio before start
            await ws.send(json.dumps({"type": "start", "sample_rate": 22050, "encoding": "pcm_s16le"}))
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
            await ws.send(b"\x00\x01\x02")  # odd byte count
            await ws.send(pcm.tobytes())
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(reader, 120)
            return got, ws.close_code

    got, code = asyncio.run(run())
    codes = [m["code"] for m in got if m["type"] == "error"]
    assert codes == ["bad_json", "unknown_type", "audio_before_start", "unsupported_rate", "odd_byte_count"]
    assert code == 1000 and got[-1]["type"] == "summary"
    assert len(events_of(got, "segment")) == 2


def test_token_guards_every_endpoint_but_healthz(server):
    assert httpx.get(f"{server.http}/healthz").json() == {"status": "ok"}  # details need a credential
    health = httpx.get(f"{server.http}/healthz", headers=server.headers)
    assert health.status_code == 200 and health.json()["precision"] == "float32"
    assert health.json()["cuda_graphs"] == 0  # a CPU server launches its forwards as they come
    for path in ("/metrics", "/api/sessions", "/api/sessions/x", "/api/sessions/x/audio", "/api/sessions/x/events"):
        assert httpx.get(f"{server.http}{path}").status_code == 401, path
        assert httpx.get(f"{server.http}{path}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{server.http}/api/predict").status_code == 401

    async def ws_code(path, url_suffix="", headers=None):
        try:
            async with connect(f"{server.ws}{path}{url_suffix}", additional_headers=headers or {}) as ws:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except Exception as exc:  # handshake refused
            return getattr(getattr(exc, "response", None), "status_code", type(exc).__name__)

    for path in ("/ws/stream", "/ws/monitor"):
        assert asyncio.run(ws_code(path)) == 401, path  # the handshake is refused: no credential

    async def twilio_with(token):
        async with connect(f"{server.ws}/ws/twilio") as tw:
            for m in twilio_messages(np.zeros(1600, np.int16), stream_sid=f"MZ{token}", token=token)[:3]:
                await tw.send(m)
            await tw.wait_closed()
            return tw.close_code

    assert asyncio.run(twilio_with("wrong")) == 1008

    async def with_query_token():
        async with connect(f"{server.ws}/ws/monitor?token={server.token}") as ws:
            return json.loads(await ws.recv())["type"]

    assert asyncio.run(with_query_token()) == "snapshot"


def test_predict_upload_and_audio_path(server, speech_silence_speech, tiny_model_dir, tmp_path):
    wav = write_wav16(tmp_path / "clip.wav", speech_silence_speech.samples)
    with open(wav, "rb") as f:
        r = httpx.post(f"{server.http}/api/predict", headers=server.headers, timeout=120,
                       files={"file": ("clip.wav", f, "audio/wav")},
                       data={"granularity": "frame", "context": "medical", "extract_embedding": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert cli_main(["analyze", str(wav), "--granularity", "frame", "--model-dir", str(tiny_model_dir),
                     "--device", "cpu", "--out", str(tmp_path / "out"), "-q"]) == 0
    expected = json.loads(next((tmp_path / "out").glob("clip_*/result.json")).read_text())
    assert body["emotion"] == expected["emotion"] and body["context"] == "medical"
    assert max(abs(body["scores"][k] - expected["scores"][k]) for k in expected["scores"]) < 1e-5
    assert len(body["segments"]) == len(expected["segments"]) == 2
    # The API carries the same decision fields as the CLI and the live stream.
    assert set(body["decision"]) == set(expected["decision"]) == DECISION_FIELDS
    assert body["profile"]["name"] == "medical" and expected["profile"]["name"] == "general"
    assert all(set(seg["decision"]) == DECISION_FIELDS for seg in body["segments"])
    assert "review" in body and "review" in expected
    assert np.asarray(body["embedding"]).ndim == 2
    # audio_path: only inside --audio-root.
    (server.recordings.parent / "audio" / "inside.wav").write_bytes(wav.read_bytes())
    ok = httpx.post(f"{server.http}/api/predict", headers=server.headers, json={"audio_path": "inside.wav"}, timeout=120)
    assert ok.status_code == 200 and ok.json()["granularity"] == "utterance"
    bad = httpx.post(f"{server.http}/api/predict", headers=server.headers, json={"audio_path": "../recordings/x"})
    assert bad.status_code == 403
    junk = httpx.post(f"{server.http}/api/predict", headers=server.headers, files={"file": ("x.mp3", b"junk" * 100)})
    assert junk.status_code == 422 and junk.json()["code"] == "unsupported_format"


def test_public_bind_without_token_refuses_to_start(tiny_model_dir, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "server.py"), "--host", "0.0.0.0", "--model-dir", str(tiny_model_dir)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "--token" in proc.stderr


def test_kill_9_keeps_audio_and_events(tiny_model_dir, tmp_path, pcm):
    srv = start_server(tiny_model_dir, tmp_path, token=None)
    sent = 0

    async def run():
        nonlocal sent
        async with connect(f"{srv.ws}/ws/stream") as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "session_id": "crash"}))
            await ws.recv()
            data = pcm.tobytes()
            for i in range(0, len(data), 3200):  # real-time pace: 0.1 s per 0.1 s
                await ws.send(data[i : i + 3200])
                sent += len(data[i : i + 3200]) // 2
                await asyncio.sleep(0.1)
                if sent >= 16000 * 5:
                    os.kill(srv.process.pid, signal.SIGKILL)
                    break

    try:
        asyncio.run(run())
    except ConnectionClosed:
        pass
    srv.process.wait(10)
    folder = srv.recordings / "crash"
    with wave.open(str(folder / "audio.wav")) as w:
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(got) >= sent - 16000 * 1.2  # at most ~1 s lost (plus what was in flight)
    assert np.array_equal(got, pcm[: len(got)])
    lines = (folder / "events.jsonl").read_text().split("\n")
    assert lines[0] and all(json.loads(l) for l in lines[:-2])
    assert json.loads((folder / "session.json").read_text())["status"] == "live"
    assert cli_main(["repair", str(folder)]) == 0  # what an operator runs after a crash
    assert json.loads((folder / "session.json").read_text())["status"] == "interrupted"
    assert all(json.loads(l) for l in (folder / "events.jsonl").read_text().split("\n") if l)


def test_restarted_server_repairs_sessions_left_live(tiny_model_dir, tmp_path, pcm):
    from stream.server.recording import SessionRecorder

    rec = SessionRecorder(tmp_path / "recordings", "left-open", 16000, "int16", {})
    rec.write_audio(pcm[:20000])
    rec.write_event({"type": "info"})
    # No close(): as if the process had died. A new server makes it readable on start.
    srv = start_server(tiny_model_dir, tmp_path, token=None)
    try:
        meta = httpx.get(f"{srv.http}/api/sessions/left-open").json()
        assert meta["status"] == "interrupted" and meta["duration_seconds"] == pytest.approx(20000 / 16000)
    finally:
        srv.stop()


def test_limits_sessions_message_size_and_length(tiny_model_dir, tmp_path, pcm):
    srv = start_server(tiny_model_dir, tmp_path, "--max-sessions", "1", "--max-message-bytes", "20000",
                       "--max-session-seconds", "2", token=None)

    async def run():
        start = json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"})
        results = {}
        async with connect(f"{srv.ws}/ws/stream") as first:
            await first.send(start)
            await first.recv()
            # A second stream while the only slot is taken: refused, try again later.
            async with connect(f"{srv.ws}/ws/stream") as second:
                assert json.loads(await second.recv())["code"] == "server_full"  # said first, then closed
                with pytest.raises(ConnectionClosed):
                    await second.recv()
                results["second"] = second.close_code
            # Audio past the session length: error, final summary, policy close.
            got: list = []
            reader = asyncio.create_task(_reader(first, got))
            data = pcm[: 16000 * 3].tobytes()
            for i in range(0, len(data), 3200):
                await first.send(data[i : i + 3200])
            await asyncio.wait_for(reader, 60)
            results["long"] = (first.close_code, [m["type"] for m in got if m["type"] in ("error", "summary")],
                               [m.get("code") for m in got if m["type"] == "error"])
        async with connect(f"{srv.ws}/ws/stream", max_size=None) as big:
            await big.send(start)
            await big.recv()
            await big.send(b"\x00" * 40000)  # over --max-message-bytes
            with pytest.raises(ConnectionClosed):
                while True:
                    await big.recv()
            results["big"] = big.close_code
        return results

    try:
        results = asyncio.run(run())
    finally:
        srv.stop()
    assert results["second"] == 1013
    assert results["long"] == (1008, ["error", "summary"], ["session_too_long"])
    assert results["big"] == 1009
