"""Replay end to end: a call recorded with the PLANTED model, played back by the real `emostream replay`
against a real server, watched through the monitor feed and a real mosquitto subscriber.

The replay must go through the real paths (feed, alerts, MQTT, recordings, metrics) with the recorded
events unchanged, and be marked `replay: true` wherever it shows, so nobody takes it for a live call.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server_harness import ROOT, start_server, unbatched
from stream.client import Client
from stream.server.alerts import alerts_in
from test_mqtt import Broker, Subscriber, unique

ORIGINAL = "drill-1"
REPLAY = f"replay-{ORIGINAL}-1"
MARKS = ("session_id", "replay")


@pytest.fixture(scope="module")
def floor(planted_model_dir, alert_speech, tmp_path_factory):
    """A server with MQTT and the planted model, and one call recorded on it (ORIGINAL)."""
    tmp = tmp_path_factory.mktemp("replay")
    broker = Broker(tmp / "broker")
    broker.start()
    sub = Subscriber(broker, "emostream")
    server = start_server(planted_model_dir, tmp, "--mqtt", broker.url, "--watch-token", "w4tch", "--max-wait-ms", "50")
    pcm = (np.clip(alert_speech.samples, -1, 1) * 32767).astype(np.int16)

    async def record():
        async with Client(server.ws, token=server.token, sample_rate=16000, session_id=ORIGINAL,
                          context="bank", metadata={"queue": "7"}) as client:  # fmt: skip
            for i in range(0, len(pcm), 3200):
                await client.send(pcm[i : i + 3200])
            return await client.finish(120)

    try:
        live = asyncio.run(record())
        assert live[-1]["type"] == "summary"
        assert sub.wait(lambda r: any(t == f"emostream/{ORIGINAL}/all/session_ended" for _, t, _ in r), 30)
        yield server, sub, live
    finally:
        server.stop()
        sub.close()
        broker.stop()


def recorded(server, sid: str) -> list[dict]:
    return [json.loads(line) for line in (server.recordings / sid / "events.jsonl").read_text().splitlines()]


def unmarked(message: dict) -> dict:
    return {k: v for k, v in message.items() if k not in MARKS}


def replay_cli(server, *args: str, token: str | None = "s3cret") -> list[str]:
    return [sys.executable, "-m", "stream.cli", "replay", *args, "--server", server.ws,
            *(["--token", token] if token else [])]  # fmt: skip


def test_a_replayed_call_goes_through_the_real_paths_marked_as_a_replay(floor):
    server, sub, live = floor
    original = recorded(server, ORIGINAL)
    files = {name: (server.recordings / ORIGINAL / name).read_bytes() for name in ("session.json", "events.jsonl")}
    assert any(e["type"] in ("review", "dual_emotion") for e in original)  # the planted model raised alerts

    async def drill():
        feed: list[dict] = []
        async with connect(f"{server.ws}/ws/monitor", additional_headers={"Authorization": "Bearer w4tch"},
                           max_size=None) as mon:  # fmt: skip
            async def read():
                try:
                    async for raw in mon:
                        for message in unbatched(json.loads(raw)):
                            feed.append(message)
                            if message["type"] == "session_started" and message["session"]["replay"]:
                                await mon.send(json.dumps({"type": "subscribe",
                                                           "session_id": message["session"]["session_id"]}))
                except ConnectionClosed:
                    pass

            reader = asyncio.create_task(read())
            env = dict(os.environ, EMOSTREAM_OFFLINE="1")
            cli = await asyncio.create_subprocess_exec(
                *replay_cli(server, str(server.recordings / ORIGINAL), "--speed", "20"), cwd=ROOT, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            output, _ = await asyncio.wait_for(cli.communicate(), 120)
            for _ in range(100):
                if any(m["type"] == "session_ended" and m["session_id"] == REPLAY for m in feed):
                    break
                await asyncio.sleep(0.1)
            reader.cancel()
        return cli.returncode, output.decode(), feed

    code, output, feed = asyncio.run(drill())
    assert code == 0, output
    assert f"{REPLAY} <- {ORIGINAL}: {len(original) - 1} events" in output and "ok" in output

    # The monitor feed lists it as a replay of the recording's model and context.
    (started,) = [m for m in feed if m["type"] == "session_started"]
    state = started["session"]
    assert (state["session_id"], state["source"], state["replay"], state["context"]) == (REPLAY, "replay", True, "bank")
    assert state["metadata"] == {"queue": "7"} and state["planted"] == "fear-disgust"
    # Its events, as a subscriber got them: the recorded ones, each marked, nothing else changed.
    (subscribed,) = [m for m in feed if m["type"] == "subscribed"]
    events = subscribed["events"] + [m for m in feed if m.get("session_id") == REPLAY
                                     and m["type"] not in ("session_ended", "subscribed")]  # fmt: skip
    assert all(e["session_id"] == REPLAY for e in events)
    assert all(e.get("replay") is True for e in events if e["type"] != "info")
    assert [unmarked(e) for e in events] == original
    # Its alerts: the recording's, same kinds, order, times and words, numbered in the replay's id.
    alerts = [m["alert"] for m in feed if m["type"] == "alert"]
    expected = alerts_in(REPLAY, original)
    assert alerts and [(a["id"], a["kind"], a["stream_time"], a["text"], a["party"]) for a in alerts] == [
        (a.id, a.kind, a.stream_time, a.text, a.party) for a in expected
    ]
    (ended,) = [m for m in feed if m["type"] == "session_ended"]
    assert ended["summary"]["replay"] is True and ended["summary"]["replay_of"] == ORIGINAL

    # MQTT: every payload of the replay says so; its events are the original's otherwise.
    assert sub.wait(lambda r: any(t == f"emostream/{REPLAY}/all/session_ended" for _, t, _ in r), 30)
    got = unique(sub.received)
    mine = [(t, p) for t, p in got if p.get("session_id") == REPLAY]
    assert mine and all(p["replay"] is True for _, p in mine), [p for _, p in mine if not p.get("replay")][:1]
    assert all(t.startswith(f"emostream/{REPLAY}/") for t, _ in mine)
    lifecycle = ("session_started", "session_ended")
    theirs = [unmarked(p) for t, p in got if p.get("session_id") == ORIGINAL and p["type"] not in lifecycle]
    assert [unmarked(p) for _, p in mine if p["type"] not in lifecycle] == theirs
    assert [p["type"] for _, p in mine if p["type"] in lifecycle] == list(lifecycle)

    # The replay's recording: events only, marked, the original's events; the original untouched.
    folder = server.recordings / REPLAY
    meta = json.loads((folder / "session.json").read_text())
    assert (meta["replay"], meta["replay_of"], meta["source"], meta["audio_kept"]) == (True, ORIGINAL, "replay", False)
    assert meta["status"] == "complete" and meta["replay_source"] == "native" and meta["planted"] == "fear-disgust"
    assert 0 < meta["duration_seconds"] <= json.loads(files["session.json"])["duration_seconds"]
    assert not list(folder.glob("*.wav"))
    assert recorded(server, REPLAY) == original
    assert {name: (server.recordings / ORIGINAL / name).read_bytes() for name in files} == files

    # The API and the metrics say so too.
    api = httpx.get(f"{server.http}/api/sessions/{REPLAY}", headers=server.headers, timeout=10).json()
    assert api["replay"] is True and api["replay_of"] == ORIGINAL
    metrics = httpx.get(f"{server.http}/metrics", headers=server.headers, timeout=10).text
    assert 'source="replay"' in metrics


def test_bad_replay_messages_get_clear_errors_and_leave_another_session_alone(floor):
    server, _, live = floor
    original = recorded(server, ORIGINAL)
    info = [e for e in original if e["type"] == "info"]
    meta = json.loads((server.recordings / ORIGINAL / "session.json").read_text())
    session = {k: meta[k] for k in ("session_id", "sample_rate", "encoding", "context", "metadata")}
    window = next(e for e in original if e["type"] == "window")

    async def run():
        headers = server.headers
        async with connect(f"{server.ws}/ws/replay", additional_headers=headers) as good, \
                connect(f"{server.ws}/ws/replay", additional_headers=headers) as bad:  # fmt: skip
            await good.send(json.dumps({"type": "replay_start", "session": session, "info": info}))
            ready = json.loads(await good.recv())
            answers = []
            for message in (b"\x00\x01", "not json", json.dumps({"type": "events", "events": [window]}),
                            json.dumps({"type": "replay_start", "session": {**session, "sample_rate": 11025},
                                        "info": info})):  # fmt: skip
                await bad.send(message)
                answers.append(json.loads(await bad.recv()))
            await bad.send(json.dumps({"type": "replay_start", "session": session, "info": info}))
            bad_ready = json.loads(await bad.recv())
            assert json.loads(await bad.recv())["type"] == "info"
            for events in ([{**window, "type": "overload"}], [{**window, "party": "caller"}], [{**window, "x": 1}],
                           [{**window, "end": "late"}], [window] * 1001):  # fmt: skip
                await bad.send(json.dumps({"type": "events", "events": events}))
                answers.append(json.loads(await bad.recv()))
            # Meanwhile the good replay goes on and ends normally.
            await good.send(json.dumps({"type": "events", "events": [e for e in original if e["type"] != "info"]}))
            await good.send(json.dumps({"type": "stop"}))
            got = [json.loads(raw) async for raw in good]
            await bad.send(json.dumps({"type": "stop"}))
            bad_rest = [json.loads(raw) async for raw in bad]
            return ready, answers, bad_ready, got, good.close_code, bad_rest, bad.close_code

    ready, answers, bad_ready, got, code, bad_rest, bad_code = asyncio.run(run())
    assert ready["type"] == "ready" and ready["replay"] is True and ready["replay_of"] == ORIGINAL
    assert [a["code"] for a in answers] == ["text_expected", "bad_json", "not_started", "bad_replay", "bad_event",
                                            "bad_event", "bad_event", "bad_event", "bad_event"]  # fmt: skip
    assert all(a["type"] == "error" and a["message"] for a in answers)
    assert "sample_rate" in answers[3]["message"] and "events[0]" in answers[5]["message"]
    assert bad_ready["type"] == "ready" and bad_ready["session_id"] != ready["session_id"]
    # The good one got every event back, marked, and its summary; the bad one ended cleanly too.
    assert code == 1000 and got[-1]["type"] == "summary" and not [m for m in got if m["type"] == "error"]
    events = [unmarked(m) for m in got if m["type"] not in ("info", "summary")]
    assert events == [e for e in original if e["type"] != "info"]
    assert bad_code == 1000 and bad_rest[-1]["type"] == "summary"
    assert bad_rest[-1]["stats"]["events"] == {"info": 1}  # none of the refused events was taken
    assert recorded(server, ready["session_id"]) == original


def test_replay_needs_the_stream_right(floor):
    server, _, _ = floor

    async def refused(headers) -> int:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{server.ws}/ws/replay", additional_headers=headers):
                pass
        return caught.value.response.status_code

    assert asyncio.run(refused({})) == 401  # refused at the handshake (docs/protocol.md): no credential
    assert asyncio.run(refused({"Authorization": "Bearer w4tch"})) == 403  # watching is not replaying
    result = subprocess.run(replay_cli(server, str(server.recordings / ORIGINAL), token="w4tch"), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "HTTP 403" in result.stderr


def test_as_many_cycles_the_recordings_and_a_monitor_joining_midway_sees_replays(floor):
    server, _, _ = floor
    original = recorded(server, ORIGINAL)
    before = {p.name for p in server.recordings.iterdir()}

    async def load():
        env = dict(os.environ, EMOSTREAM_OFFLINE="1")
        # The recordings folder: its replays are left out, so the one call is played three times at once.
        cli = await asyncio.create_subprocess_exec(
            *replay_cli(server, str(server.recordings), "--as-many", "3", "--speed", "2", "--no-echo"), cwd=ROOT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        snapshot = None
        while cli.returncode is None and snapshot is None:
            async with connect(f"{server.ws}/ws/monitor", additional_headers={"Authorization": "Bearer w4tch"},
                               max_size=None) as mon:  # fmt: skip
                first = json.loads(await mon.recv())
            if len(first["sessions"]) == 3:
                snapshot = first
            else:
                await asyncio.sleep(0.2)
        output, _ = await asyncio.wait_for(cli.communicate(), 120)
        return cli.returncode, output.decode(), snapshot

    code, output, snapshot = asyncio.run(load())
    assert code == 0, output
    assert snapshot is not None, output
    assert all(s["replay"] is True and s["source"] == "replay" and s["session_id"].startswith(f"replay-{ORIGINAL}-")
               for s in snapshot["sessions"])  # fmt: skip
    new = sorted({p.name for p in server.recordings.iterdir()} - before)
    assert len(new) == 3 and output.count(f"<- {ORIGINAL}:") == 3 and "replayed 3 session(s)" in output
    for sid in new:
        meta = json.loads((server.recordings / sid / "session.json").read_text())
        assert meta["replay_of"] == ORIGINAL and meta["status"] == "complete"
        assert recorded(server, sid) == original


def test_the_client_paces_events_by_stream_time_and_tick(tmp_path):
    """`emostream replay`'s sender: each event no earlier than its stream time / speed, in order, batched per tick."""
    from stream.cli.replay import _send_events, load_recording

    folder = tmp_path / "call"
    folder.mkdir()
    (folder / "session.json").write_text(json.dumps({"session_id": "call", "sample_rate": 16000, "duration_seconds": 3.0,
                                                     "encoding": "pcm_s16le", "status": "complete", "model_id": "m"}))
    windows = [{"type": "window", "index": i, "segment": 0, "start": i / 10, "end": i / 10 + 0.4, "scores": {},
                "smoothed": {}, "dominant": "neutral", "dominant_score": 0.5} for i in range(25)]  # fmt: skip
    lines = [json.dumps({"type": "info"})] + [json.dumps(w) for w in windows]
    (folder / "events.jsonl").write_text("\n".join(lines) + '\n{"type": "win')  # a torn last line is left out
    rec, skipped = load_recording(folder)
    assert (len(rec.texts), skipped, rec.duration, rec.start["session"]["session_id"]) == (25, 0, 3.0, "call")
    assert rec.start["info"] == [{"type": "info"}] and "status" not in rec.start["session"]

    class Socket:
        def __init__(self):
            self.sent = []

        async def send(self, text):
            self.sent.append((asyncio.get_running_loop().time(), json.loads(text)["events"]))

    async def run(speed, tick):
        ws = Socket()
        t0 = asyncio.get_running_loop().time()
        assert await _send_events(ws, rec, speed, t0, tick) == 25
        return t0, ws.sent

    t0, sent = asyncio.run(run(10.0, 0.1))
    assert [w["index"] for _, batch in sent for w in batch] == list(range(25))  # all, in order
    for at, batch in sent:
        assert at - t0 >= batch[0]["end"] / 10 - 0.005  # never before its time
    assert all(b - a >= 0.1 - 0.005 for (a, _), (b, _) in zip(sent, sent[1:]))  # at most one message a tick
    assert 2 <= len(sent) <= 6  # ~0.25 s of sending: events due within a tick share a message


def test_a_split_recording_replays_per_party_into_an_events_only_recording(tmp_path):
    """ReplaySession on its own: each party's events recorded as sent, counted, described and marked."""
    from stream.engine.events import from_dict
    from stream.server.recording import SessionRecorder
    from stream.server.replay_session import Replay, ReplaySession
    from stream.server.session import SessionSpec

    labels = ["angry", "fearful", "neutral"]
    info = {"type": "info", "model_id": "m", "random_weights": True, "labels": labels, "parameters": {"w": 0.4},
            "warning": "random", "profile": {"name": "general"}, "centroids": None, "planted": "fear-disgust",
            "precision": "float32"}  # fmt: skip

    def window(party, i, dominant):
        return {"type": "window", "party": party, "index": i, "segment": 0, "start": i / 10, "end": i / 10 + 0.4,
                "scores": dict.fromkeys(labels, 0.3), "smoothed": dict.fromkeys(labels, 0.3), "dominant": dominant,
                "dominant_score": 0.4}  # fmt: skip

    parties = ("caller", "agent")
    infos = {p: from_dict(info) for p in parties}
    replay = Replay("call-9", infos, "twilio", "2024-01-01T00:00:00+00:00")
    live = {"record": "audio+events"}
    meta = {"source": "replay", "parties": list(parties), **replay.info(live)}
    recorder = SessionRecorder(tmp_path, "replay-call-9-1", 8000, "int16", meta, keep_audio=False)
    published: list[list[dict]] = []
    spec = SessionSpec("replay-call-9-1", 8000, "mulaw", 1, None, {}, "replay", parties)
    session = ReplaySession(spec, replay, recorder, publish=published.append)
    events = [window("caller", 0, "neutral"), window("agent", 0, "fearful"), window("caller", 1, "angry")]
    session.play([(e["party"], e) for e in events])
    assert [m for batch in published for m in batch] == [
        {"type": "window", "session_id": "replay-call-9-1", **{k: v for k, v in e.items() if k != "type"},
         "replay": True} for e in events
    ]  # fmt: skip
    described = session.describe()
    assert described["replay"] is True and described["replay_of"] == "call-9" and described["planted"] == "fear-disgust"
    assert described["state"] == {"caller": {"emotion": "angry", "score": 0.4, "time": 0.5},
                                  "agent": {"emotion": "fearful", "score": 0.4, "time": 0.4}}  # fmt: skip
    summary = session.close()
    assert summary["parties"]["caller"]["events"] == {"info": 1, "window": 2} and summary["duration_seconds"] == 0.5
    lines = [json.loads(line) for line in (tmp_path / "replay-call-9-1" / "events.jsonl").read_text().splitlines()]
    assert lines == [{"type": "info", "party": p, **{k: v for k, v in info.items() if k != "type"}} for p in parties] + events
    saved = json.loads((tmp_path / "replay-call-9-1" / "session.json").read_text())
    assert (saved["replay"], saved["replay_of"], saved["record"], saved["audio_kept"]) == (True, "call-9", "events", False)
    assert saved["duration_seconds"] == 0.5 and saved["replay_source"] == "twilio"
    assert replay.info({"record": "none"})["record"] == "none"
