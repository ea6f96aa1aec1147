"""emostream on Ray Serve: two ingress replicas and one scorer replica on a local Ray started here.

One Ray instance serves the whole module (starting Ray and the replicas is the slow part on a
small machine); each test streams real speech through Serve's HTTP proxy over loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from dataclasses import replace

import httpx
import numpy as np
import pytest
import soxr
from websockets.asyncio.client import connect

from bench.drills import write_drill
from postgres_harness import postgres  # noqa: F401 — the session's PostgreSQL cluster, as a fixture
from ray_harness import TOKEN, assert_same_events, deploy, events_of, native, read_all, twilio
from server_harness import free_port
from stream.cli.replay import load_recording, run_replays
from stream.server.catalog import CATALOG_FILE
from stream.cli.main import main as cli_main


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory, postgres):  # noqa: F811
    """Two ingress replicas sharing one PostgreSQL catalog (a real server) and one recordings folder."""
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield deploy(tiny_model_dir, tmp_path_factory.mktemp("ray"), ingress_replicas=2, scorer_replicas=1,
                     ingress_port=free_port(), catalog=postgres.create_database("ray"))  # fmt: skip
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def pcm(speech_silence_speech):
    return (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def reference(pcm, tiny_model_dir, tmp_path_factory):
    """The events `emostream analyze` gives for the audio: what the single-process server emits too."""
    tmp = tmp_path_factory.mktemp("reference")
    with wave.open(str(tmp / "speech.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(pcm.tobytes())
    assert cli_main(["analyze", str(tmp / "speech.wav"), "--granularity", "frame", "--model-dir", str(tiny_model_dir),
                     "--device", "cpu", "--out", str(tmp / "out"), "-q"]) == 0  # fmt: skip
    lines = next((tmp / "out").glob("speech_*")).joinpath("events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


FEED = {"snapshot", "session_started", "session_ended", "digest", "alert", "alert_acknowledged", "subscribed",
        "unsubscribed", "error"}


async def subscribe_all(ws, seen: list) -> None:
    """Subscribe the monitor to every session it sees start (docs/monitor.md), whichever replica runs it."""
    asked = set()
    while True:
        for m in list(seen):
            if m["type"] == "session_started" and (sid := m["session"]["session_id"]) not in asked:
                asked.add(sid)
                await ws.send(json.dumps({"type": "subscribe", "session_id": sid}))
        await asyncio.sleep(0.02)


def followed(monitor: list[dict], sid: str) -> list[dict]:
    """A subscribed session's messages on a monitor: the `subscribed` reply's events, then the later ones."""
    replies = [i for i, m in enumerate(monitor) if m["type"] == "subscribed" and m["session_id"] == sid]
    assert replies, f"the monitor never subscribed to {sid}"
    i = replies[0]
    return monitor[i]["events"] + [m for m in monitor[i + 1 :] if m.get("session_id") == sid and m["type"] not in FEED]


def test_streams_on_both_replicas_reach_every_monitor(app, pcm, reference):
    """Native and Twilio streams run concurrently; a monitor on each replica sees every session."""
    samples8k = (soxr.resample(pcm / 32768, 16000, 8000) * 32767).astype(np.int16)

    async def run():
        seen: tuple[list, list] = ([], [])
        monitors = [await connect(f"{app.ws}/ws/monitor", additional_headers=app.headers) for _ in seen]
        readers = [asyncio.create_task(read_all(ws, into)) for ws, into in zip(monitors, seen)]
        followers = [asyncio.create_task(subscribe_all(ws, into)) for ws, into in zip(monitors, seen)]
        # Serve's proxy sends a new connection to the replica with fewer open ones: one monitor each.
        for _ in range(100):
            watching = [r["watching"] for r in app.health()["ingress_replicas"].values()]
            if watching == [True, True]:
                break
            await asyncio.sleep(0.2)
        assert watching == [True, True], "the two monitors did not land on the two replicas"
        await asyncio.sleep(0.5)  # every replica has heard that the other one watches
        # Paced at twice real time: the monitors subscribe while the native sessions are live.
        sessions = await asyncio.gather(native(app, pcm, "ray-a", pace=0.05), native(app, pcm, "ray-b", pace=0.05),
                                        twilio(app, samples8k, "MZray"))  # fmt: skip
        for _ in range(100):
            if all(sum(m["type"] == "session_ended" for m in s) == 3 for s in seen):
                break
            await asyncio.sleep(0.1)
        for _ in range(50):  # (the catalog is written a moment after the summary)
            listed = (await asyncio.to_thread(httpx.get, f"{app.http}/api/sessions", headers=app.headers,
                                              timeout=30)).json()["sessions"]  # fmt: skip
            if {"ray-a", "ray-b", "twilio-MZray"} <= {s["session_id"] for s in listed}:
                break
            await asyncio.sleep(0.2)
        for task in followers:
            task.cancel()
        for ws, reader in zip(monitors, readers):
            await ws.close()
            await reader
        return sessions, seen, listed

    (a, b, _), seen, listed = asyncio.run(run())
    for messages in (a, b):
        assert messages[-1]["type"] == "summary" and messages[-1]["stats"]["status"] == "complete"
        assert_same_events(events_of(messages), reference)
    ids = {"ray-a", "ray-b", "twilio-MZray"}
    assert ids <= {s["session_id"] for s in listed}
    for monitor in seen:  # each replica's monitor saw every session, whichever replica ran it
        assert monitor[0]["type"] == "snapshot"
        assert {m["session"]["session_id"] for m in monitor if m["type"] == "session_started"} == ids
        assert {m["session_id"] for m in monitor if m["type"] == "session_ended"} == ids
        assert not any(m["type"] == "window" and m["session_id"] not in ids for m in monitor)
        for sid in ("ray-a", "ray-b"):  # a subscription replays the session's events from its `info` on
            assert_same_events(events_of(followed(monitor, sid)), reference)
        (call,) = [m for m in monitor if m["type"] == "session_started" and m["session"]["source"] == "twilio"]
        assert [i["type"] for i in call["info"].values()] == ["info"]  # its one track's `info`, by party
    for sid in ids:  # recordings are complete, in the one configured root
        meta = json.loads((app.recordings / sid / "session.json").read_text())
        assert meta["status"] == "complete"
        recorded = [json.loads(line) for line in (app.recordings / sid / "events.jsonl").read_text().splitlines()]
        if sid != "twilio-MZray":  # (the monitors follow the native sessions in full)
            assert [e["type"] for e in recorded] == [e["type"] for e in events_of(followed(seen[0], sid))]
    with wave.open(str(app.recordings / "ray-a" / "audio.wav")) as w:
        assert np.array_equal(np.frombuffer(w.readframes(w.getnframes()), "<i2"), pcm)


def test_healthz_reports_every_deployment_and_predict_uses_the_scorer(app, pcm, tmp_path):
    health = app.health()
    assert health["status"] == "ok" and health["random_weights"] is True
    assert {name: d["status"] for name, d in health["deployments"].items()} == {
        "Ingress": "HEALTHY", "Scorer": "HEALTHY", "SessionHub": "HEALTHY"}
    assert health["deployments"]["Ingress"]["replicas"] == {"RUNNING": 2}
    assert health["scorer"]["jobs"] > 0 and len(health["ingress_replicas"]) == 2
    assert httpx.get(f"{app.http}/api/sessions", timeout=30).status_code == 401  # the token still guards
    with wave.open(str(tmp_path / "clip.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(pcm.tobytes())
    with open(tmp_path / "clip.wav", "rb") as f:  # a whole file, scored on a scorer replica
        r = httpx.post(f"{app.http}/api/predict", headers=app.headers, files={"file": ("clip.wav", f, "audio/wav")},
                       data={"granularity": "frame"}, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    assert len(r.json()["segments"]) == 2 and abs(sum(r.json()["scores"].values()) - 1) < 1e-4


def test_ingress_replicas_take_websockets_on_their_shared_port(app, pcm, reference):
    """--ingress-port: streams reach the replicas without Serve's proxy, and analyze the same."""
    direct = replace(app, port=app.ingress_port)
    assert direct.health()["status"] == "ok"

    async def run():
        return await asyncio.gather(*(native(direct, pcm, f"direct-{k}") for k in range(4)))

    for messages in asyncio.run(run()):
        assert messages[-1]["type"] == "summary" and messages[-1]["stats"]["status"] == "complete"
        assert_same_events(events_of(messages), reference)
    wanted = {f"direct-{k}" for k in range(4)}
    for _ in range(50):  # (the catalog is written a moment after the summary)
        listed = {s["session_id"] for s in httpx.get(f"{app.http}/api/sessions", headers=app.headers, timeout=30).json()["sessions"]}
        if wanted <= listed:
            break
        time.sleep(0.2)
    assert wanted <= listed


def test_two_ingress_replicas_write_one_postgresql_catalog_and_each_lists_the_others_sessions(app, postgres, tmp_path):  # noqa: F811
    """Replayed calls land on both replicas (the kernel spreads --ingress-port connections); each lists them all."""
    direct = replace(app, port=app.ingress_port)
    write_drill(tmp_path, "shared", seconds=4.0)
    recording = load_recording(tmp_path / "shared")[0]
    busiest: dict[str, int] = {}

    async def run():
        replays = asyncio.create_task(run_replays([recording], direct.ws, token=TOKEN, speed=2.0, as_many=12,
                                                  echo=False, out=open("/dev/null", "w")))  # fmt: skip
        while not replays.done():
            for replica, seen in (await asyncio.to_thread(app.health))["ingress_replicas"].items():
                busiest[replica] = max(busiest.get(replica, 0), seen["sessions"])
            await asyncio.sleep(0.2)
        return await replays

    totals = asyncio.run(run())
    assert totals.done == 12 and totals.failed == 0
    assert len(busiest) == 2 and all(busiest.values()), busiest  # both replicas ran some of the calls
    ids = {f"replay-shared-{k}" for k in range(1, 13)}
    answered: dict[str, set[str]] = {}
    for _ in range(60):  # a kept-alive connection stays with the replica that accepted it
        with httpx.Client(base_url=direct.http, headers=app.headers, timeout=30) as client:
            replica = client.get("/healthz").json()["replica"]
            if replica not in answered:
                deadline = time.monotonic() + 20
                while not ids <= answered.get(replica, set()) and time.monotonic() < deadline:
                    page = client.get("/api/sessions", params={"source": "replay", "limit": 500}).json()
                    answered[replica] = {s["session_id"] for s in page["sessions"] if s["status"] == "complete"}
                    time.sleep(0.2)
        if len(answered) == 2:
            break
    assert len(answered) == 2 and all(ids <= seen for seen in answered.values()), answered
    database = app.catalog.rsplit("/", 1)[1]
    assert int(postgres.sql("SELECT count(*) FROM sessions WHERE session_id LIKE 'replay-shared-%'", database)) == 12
    assert not (app.recordings / CATALOG_FILE).exists()  # the shared database, not a file per folder


def test_a_scorer_replica_killed_mid_stream_loses_no_window(app, pcm, reference):
    import ray
    from ray import serve

    scorer = serve.get_deployment_handle("Scorer", app_name="emostream")

    def scorer_replicas() -> list[str]:
        return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Scorer#" in a["name"]]

    (victim,) = scorer_replicas()

    async def run():
        task = asyncio.create_task(native(app, pcm, "ray-kill"))
        while (await scorer.stats.remote())["running"] == 0:  # kill it in the middle of a forward pass
            assert not task.done()
            await asyncio.sleep(0.01)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed_before_end = not task.done()
        return await task, killed_before_end

    messages, killed_before_end = asyncio.run(run())
    assert killed_before_end
    assert messages[-1]["type"] == "summary" and messages[-1]["stats"]["status"] == "complete"
    assert_same_events(events_of(messages), reference)  # every window, scored by the replacement
    deadline = time.monotonic() + 60
    while scorer_replicas() in ([], [victim]):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    retried = {}
    for _ in range(30):
        health = app.health()
        retried[health["replica"]] = health["retried_jobs"]
        if len(retried) == 2:
            break
    assert sum(retried.values()) > 0


def test_an_ingress_replica_killed_mid_stream_leaves_a_repaired_recording(app, pcm):
    """Its stream ends abnormally, the other replica goes on, Serve's replacement repairs the recording."""
    import ray

    async def run():
        messages: list = []
        task = asyncio.create_task(native(app, pcm, "ray-crash", pace=0.1))
        while True:  # wait until the session is live on some replica, then kill that replica
            owners = [r for r, v in app.health()["ingress_replicas"].items() if v["sessions"] and v["age_seconds"] < 1]
            if owners:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # some audio recorded
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].endswith(owners[0])]
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        try:
            messages = await task
        except Exception as exc:  # the connection dropped: what a client sees of a crashed replica
            messages = [{"type": "closed", "error": repr(exc)}]
        other = await native(app, pcm[: 16000 * 3], "ray-after-crash")  # the application goes on
        return messages, other

    messages, other = asyncio.run(run())
    assert not any(m["type"] == "summary" for m in messages)
    assert other[-1]["type"] == "summary" and other[-1]["stats"]["status"] == "complete"
    deadline = time.monotonic() + 120
    folder = app.recordings / "ray-crash"
    while json.loads((folder / "session.json").read_text())["status"] == "live":
        assert time.monotonic() < deadline, "the replacement replica did not repair the recording"
        time.sleep(1.0)
    meta = json.loads((folder / "session.json").read_text())
    assert meta["status"] == "interrupted"
    while True:  # the repair reaches the shared catalog too
        listed = httpx.get(f"{app.http}/api/sessions", params={"status": "interrupted"}, headers=app.headers, timeout=30)
        if "ray-crash" in {s["session_id"] for s in listed.json()["sessions"]}:
            break
        assert time.monotonic() < deadline, "the catalog still lists the crashed session as live"
        time.sleep(1.0)
    with wave.open(str(folder / "audio.wav")) as w:  # a readable WAV holding the audio up to the crash
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert 16000 <= len(got) < len(pcm) and np.array_equal(got, pcm[: len(got)])
