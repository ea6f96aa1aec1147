"""Issue 17 hardening: shared recordings, silent streams, orphaned workers, MQTT memory.

Real components throughout: server processes over loopback sharing one recordings folder (as
replicas do), the engine's own core on an hour of silence, `kill -9` of a real server, and a
real mosquitto broker for the MQTT queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from server_harness import read_all, start_server
from stream.engine.analyzer import StreamCore
from stream.engine.config import AnalyzerConfig
from stream.engine.events import Window
from stream.engine.jobs import EvidenceJob
from stream.server.audit import AccessLog
from stream.server.mqtt import MqttPublisher
from stream.server.parties import PartyStream
from stream.server.recording import SessionRecorder
from stream.server.retention import SessionBusy, delete_session, sweep
from test_mqtt import Broker, Subscriber, alert, unique, until

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


# ---- finding 3: a session live on another replica is never deleted -----------------------------
@pytest.fixture(scope="module")
def replicas(tiny_model_dir, tmp_path_factory):
    """Two server processes on one recordings folder, as replicas behind a balancer share it."""
    shared = tmp_path_factory.mktemp("replicas")  # both keep their recordings in shared/recordings
    a = start_server(tiny_model_dir, shared, "--measure-processes", "0")
    b = start_server(tiny_model_dir, shared, "--measure-processes", "0")
    assert a.recordings == b.recordings
    yield a, b
    a.stop()
    b.stop()


def test_a_session_live_on_another_replica_cannot_be_deleted(replicas, speech):
    a, b = replicas

    async def go():
        async with connect(f"{b.ws}/ws/stream", additional_headers=b.headers) as ws:
            await ws.send(json.dumps({**START, "session_id": "live-on-b"}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(pcm16(speech[0][:16000]))
            async with httpx.AsyncClient() as client:
                refused = await client.delete(f"{a.http}/api/sessions/live-on-b", headers=a.headers)
            await ws.send(json.dumps({"type": "stop"}))
            await read_all(ws, [])
            return refused

    refused = asyncio.run(go())
    assert refused.status_code == 409 and refused.json()["code"] == "session_live", refused.text
    assert (b.recordings / "live-on-b" / "session.json").exists()
    # Once B has ended it, A deletes it.
    gone = httpx.delete(f"{a.http}/api/sessions/live-on-b", headers=a.headers)
    assert gone.status_code == 200 and not (a.recordings / "live-on-b").exists()


def test_retention_never_deletes_a_recording_another_process_writes(tmp_path):
    """Even a caller that knows of no live session (another replica's) leaves it alone."""
    recorder = SessionRecorder(tmp_path, "elsewhere", 16000, "int16", {})
    recorder.write_audio(np.zeros(1600, dtype=np.int16))
    audit = AccessLog(tmp_path)
    with pytest.raises(SessionBusy):
        delete_session(tmp_path, "elsewhere", audit, "retention", live=set(), reason="test")
    assert sweep(tmp_path, 0.0, set(), audit) == []
    assert (tmp_path / "elsewhere" / "session.json").exists()
    recorder.close({"status": "complete"})
    assert sweep(tmp_path, 0.0, set(), audit) == ["elsewhere"]


# ---- finding 10: arrival records stay bounded in silence ----------------------------------------
TWILIO_FRAME = 160  # 20 ms of 8 kHz μ-law, decoded


def test_an_hour_of_silent_twilio_media_keeps_few_arrival_records():
    core = StreamCore(replace(AnalyzerConfig(), sample_rate=8000), ("a", "b"), "m", True)
    party = PartyStream("inbound", core)
    silence = np.zeros(TWILIO_FRAME, dtype=np.int16)
    for i in range(3600 * 50):  # 180,000 media messages, and no window to ask about their arrival
        party.push(silence, i * 0.02)
    # What the VAD's pre-roll may still reach back to: a few seconds, not the hour.
    assert len(party._arrivals) < 500, len(party._arrivals)


def test_latency_figures_are_those_of_every_arrival_kept(scorer, speech_silence_speech):
    """Each window's arrival time equals the one the full arrival history gives (silence trims it).

    The model answers only every 37 pushes (0.74 s late), as a busy scheduler does: windows then
    ask about audio that arrived well before the newest.
    """
    audio = np.concatenate([np.zeros(16000 * 20, dtype=np.float32), speech_silence_speech.samples,
                            np.zeros(16000 * 20, dtype=np.float32), speech_silence_speech.samples])
    party = PartyStream(None, StreamCore(AnalyzerConfig(), scorer.labels, scorer.model_id, True))
    history: list[tuple[int, float]] = []  # every (samples received, when): the unbounded reference
    asked, longest = 0, 0

    def answer_and_check() -> None:
        nonlocal asked
        while jobs := party.core.pending_jobs():
            for job in jobs:
                party.core.complete(job, job.run() if isinstance(job, EvidenceJob) else scorer.score([job.audio])[0])
        for event in party.take_events():
            if isinstance(event, Window):
                sample = round(event.end * 16000)
                expected = next((t for got, t in history if got >= sample), history[-1][1])
                assert party.arrival_of(sample) == expected, (event.index, sample)
                asked += 1

    for n, start in enumerate(range(0, len(audio), 320)):
        party.push(audio[start : start + 320], n * 0.02)
        history.append((round(party.core.received_seconds * 16000), n * 0.02))
        longest = max(longest, len(party._arrivals))
        if n % 37 == 0:
            answer_and_check()
    party.core.finish()
    answer_and_check()
    assert asked > 20
    assert longest < len(history) // 4  # the silences were forgotten, not kept


# ---- finding 13: no measuring worker outlives a killed server -----------------------------------
def _ppid_and_start(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def _descendants(root: int) -> dict[int, int]:
    """Every process below `root`: pid -> start time."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (info := _ppid_and_start(int(d.name))):
            children.setdefault(info[0], []).append(int(d.name))
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if info := _ppid_and_start(pid):
            out[pid] = info[1]
        todo += children.get(pid, [])
    return out


def _running(pid: int, started: int) -> bool:
    """The same process still runs (a zombie nobody reaps has stopped; a reused pid is another)."""
    info = _ppid_and_start(pid)
    return info is not None and info[1] == started and info[2] != "Z"


def test_measuring_workers_die_with_a_killed_server(tiny_model_dir, tmp_path, speech_silence_speech):
    srv = start_server(tiny_model_dir, tmp_path, "--measure-processes", "2")
    helpers: dict[int, int] = {}
    try:
        async def one_session():  # its segments are measured in the pool: the workers are up
            got: list = []
            async with connect(f"{srv.ws}/ws/stream", additional_headers=srv.headers) as ws:
                await ws.send(json.dumps(START))
                data = pcm16(speech_silence_speech.samples)
                for i in range(0, len(data), 6400):
                    await ws.send(data[i : i + 6400])
                await ws.send(json.dumps({"type": "stop"}))
                await read_all(ws, got)
            return got

        assert any(m["type"] == "segment" for m in asyncio.run(one_session()))
        helpers = _descendants(srv.process.pid)
        workers = [p for p in helpers if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) >= 2, helpers
        os.kill(srv.process.pid, signal.SIGKILL)
        srv.process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(p, s) for p, s in helpers.items()):
            time.sleep(0.1)
        survivors = [p for p, s in helpers.items() if _running(p, s)]
    finally:
        srv.stop()
        for pid, started in _descendants(srv.process.pid).items() | helpers.items():
            if _running(pid, started):  # leave no orphan behind, whatever the outcome
                os.kill(pid, signal.SIGKILL)
    assert survivors == [], f"processes outlived the server: {survivors}"


# ---- finding 7: the MQTT queue is bounded in bytes ----------------------------------------------
MB = 1 << 20


def big(i: int) -> dict:
    """A QoS 0 message of about 1 MB (session metadata may be that large)."""
    return {"type": "telephony", "session_id": "c", "n": i, "blob": "x" * MB}


@pytest.fixture()
def broker(tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


def test_a_broker_outage_with_megabyte_messages_does_not_eat_memory(broker):
    broker.stop()

    async def main():
        pub = MqttPublisher(broker.url, prefix="t", flush_timeout=0.2)  # the server's defaults
        await pub.start()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(150):
            pub.publish(big(i))
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        stats = pub.stats()
        await pub.stop()
        return held, stats

    held, stats = asyncio.run(main())
    assert held < 80 * MB, f"{held / MB:.0f} MB held for 150 MB published to a broker that is down"
    assert stats["dropped"] > 0 and stats["queued"] < 150, stats


def test_the_byte_bound_drops_the_oldest_windows_and_keeps_alerts(broker):
    subscriber = Subscriber(broker, "t")
    broker.stop()

    async def main():
        pub = MqttPublisher(broker.url, prefix="t", max_buffer_bytes=4 * MB)
        await pub.start()
        sent = []
        for i in range(150):
            sent.append(big(i))
            if i % 50 == 0:
                sent.append(alert("c", i))
        for m in sent:
            pub.publish(m)
        pub.publish({"type": "telephony", "session_id": "c", "blob": "y" * 5 * MB})  # larger than the bound
        assert pub.stats()["queued_bytes"] <= 4 * MB and pub.dropped == 150 - 3 + 1, pub.stats()
        await asyncio.to_thread(broker.start)
        assert await until(lambda: pub.queued == 0, 20), pub.stats()
        await pub.stop()
        return sent

    try:
        sent = asyncio.run(main())
        kept = [m for m in sent if m["type"] != "telephony" or m["n"] >= 147]
        assert subscriber.wait(lambda r: len(unique(r)) >= len(kept), 20)
        assert [p for _, p in unique(subscriber.received)] == kept
    finally:
        subscriber.close()
