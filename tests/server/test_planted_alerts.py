"""Alerts end to end with the PLANTED fear/disgust model: MQTT across a broker restart, Twilio calls.

Random weights raise no alerts; the planted model (tests/models/test_planted.py) does on real
espeak speech, so the alert path is driven here by the real server, a real mosquitto broker
and real Twilio Media Streams messages.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server_harness import start_server, unbatched
from stream.server.alerts import alerts_in
from stream.server.mqtt import qos_for
from test_mqtt import Broker, Subscriber, unique
from test_server import subscribe_on_start, twilio_messages

ALERTS = ("transition", "review", "dual_emotion")


def is_alert(m: dict) -> bool:
    """Flagged transitions, review flags and dual-emotion reports: what a supervisor is alerted to."""
    return m["type"] in ("review", "dual_emotion") or (m["type"] == "transition" and m["flagged"])


def test_mqtt_delivers_planted_alerts_as_qos1_across_a_broker_restart(planted_model_dir, alert_speech, tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker, "emostream")
    server = start_server(planted_model_dir, tmp_path, "--mqtt", broker.url)
    pcm = (np.clip(alert_speech.samples, -1, 1) * 32767).astype(np.int16).tobytes()
    try:
        async def session():
            received: list[tuple[float, dict]] = []  # (client receipt time, message)
            async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers, max_size=None) as ws:
                async def read():
                    try:
                        async for raw in ws:
                            received.append((time.monotonic(), json.loads(raw)))
                    except ConnectionClosed:
                        pass

                reader = asyncio.create_task(read())
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                          "session_id": "planted-mqtt"}))
                step, t0 = 3200, time.monotonic()  # 0.1 s per message, in real time
                for n, i in enumerate(range(0, len(pcm), step)):
                    if n == 20:  # 2 s in, the broker goes away for 5 s while alerts keep coming
                        await asyncio.to_thread(broker.stop)
                        down = time.monotonic()
                    if n == 70:
                        await asyncio.to_thread(broker.start)
                        up = time.monotonic()
                    await ws.send(pcm[i : i + step])
                    await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.1 - time.monotonic()))
                await ws.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(reader, 60)
            return received, down, up

        received, down, up = asyncio.run(session())
        messages = [m for _, m in received]
        assert messages[-1]["type"] == "summary"
        alerts = [m for m in messages if is_alert(m)]
        kinds = {m["type"] for m in alerts}
        assert kinds == set(ALERTS), kinds  # flagged transitions, reviews and a dual report
        # Some alerts were raised while the broker was down: they had to wait in the queue.
        assert any(down <= t <= up for t, m in received if is_alert(m))

        assert sub.wait(lambda r: any(p["type"] == "session_ended" for _, _, p in r), 30)
        over_mqtt = [(t, p) for t, p in unique(sub.received) if is_alert(p)]
        assert [p for _, p in over_mqtt] == alerts  # every alert, once, in order, unchanged
        assert all(t == f"emostream/planted-mqtt/all/{p['type']}" for t, p in over_mqtt)  # unsplit: party "all"
        alert_qos = {q for q, _, p in sub.received if is_alert(p)}
        assert alert_qos == {1} and all(qos_for(m) == 1 for m in alerts)
        counts = {k: sum(p["type"] == k for _, p in over_mqtt) for k in ALERTS}
        print(f"alerts over MQTT across the restart: {len(over_mqtt)} {counts}")
    finally:
        server.stop()
        sub.close()
        broker.stop()


def test_twilio_call_raises_flagged_alerts(planted_model_dir, alert_speech, tmp_path):
    server = start_server(planted_model_dir, tmp_path)
    samples8k = (soxr.resample(alert_speech.samples, 16000, 8000) * 32767).astype(np.int16)
    try:
        async def call():
            seen: list = []
            async with connect(f"{server.ws}/ws/monitor", additional_headers=server.headers) as mon:
                async def read():
                    try:
                        async for raw in mon:
                            seen.extend(unbatched(json.loads(raw)))
                    except ConnectionClosed:
                        pass

                reader = asyncio.create_task(read())
                async with connect(f"{server.ws}/ws/twilio") as tw:
                    messages = twilio_messages(samples8k, stream_sid="MZplanted", call_sid="CAplanted")
                    for m in messages[:2]:  # connected, start
                        await tw.send(m)
                    reply = await subscribe_on_start(mon, seen, "twilio-MZplanted")  # the call's events too
                    for m in messages[2:]:
                        await tw.send(m)
                    await tw.wait_closed()
                for _ in range(300):
                    if any(m["type"] == "session_ended" for m in seen):
                        break
                    await asyncio.sleep(0.1)
                reader.cancel()
            return seen, reply

        seen, reply = asyncio.run(call())
        started = [m for m in seen if m["type"] == "session_started"]
        assert len(started) == 1 and started[0]["session"]["source"] == "twilio"
        sid = started[0]["session"]["session_id"]
        assert started[0]["session"]["planted"] == "fear-disgust"
        assert all(info["planted"] == "fear-disgust" for info in started[0]["info"].values())
        mine = reply["events"] + [m for m in seen[seen.index(reply) + 1 :] if m.get("session_id") == sid]
        flagged = {(m["from"], m["to"]) for m in mine if m["type"] == "transition" and m["flagged"]}
        # On 8 kHz μ-law audio the planted read-out still swings both ways: alerts in both directions.
        assert flagged == {("fearful", "disgusted"), ("disgusted", "fearful")}
        # The recording keeps the alerts the monitor saw.
        recorded = [json.loads(l) for l in (server.recordings / sid / "events.jsonl").read_text().splitlines()]
        key = lambda m: (m["type"], m.get("time", m.get("start")))  # noqa: E731
        assert [key(m) for m in recorded if is_alert(m)] == [key(m) for m in mine if is_alert(m)]
        # Every monitor got them as `alert` messages, numbered as a rebuild from the recording numbers them.
        alerts = [m["alert"] for m in seen if m["type"] == "alert"]
        assert [a["id"] for a in alerts] == [a.id for a in alerts_in(sid, recorded)]
        assert {a["kind"] for a in alerts} >= {"flagged"}
    finally:
        server.stop()
