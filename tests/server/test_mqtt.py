"""MQTT publishing against a real mosquitto broker and an independent mosquitto_sub subscriber.

Every test starts a private broker on a free loopback port; stopping and restarting it is how a
broker outage is made. The subscriber keeps a persistent session (`mosquitto_sub -c`) on a broker
with persistence, so it misses nothing while it reconnects after the restart: what these tests
check is the publisher, not the subscriber's reconnection race. Debian packages: mosquitto,
mosquitto-clients. When they are missing the tests fail (they do not skip).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from models.errors import ConfigError
from server_harness import free_port, start_server
from stream.engine.events import DualEmotion, Info, Review, Segment, Transition, Window
from stream.protocol.native import event_message
from stream.server.mqtt import MqttPublisher, parse_url, qos_for

LABEL_NAMES = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")


def _tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.fail(f"{name} is not installed: these tests need the Debian packages mosquitto and "
                    f"mosquitto-clients (apt-get install mosquitto mosquitto-clients; scripts/setup.sh does it)")
    return path


# ---- a private broker and an independent subscriber ---------------------------------------------
class Broker:
    """`mosquitto -c FILE` on a free loopback port; stop() and start() again to make an outage."""

    def __init__(self, folder: Path):
        self.exe = _tool("mosquitto")
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # persistence only keeps the test subscriber's session across the restart
            f"persistence true\npersistence_location {folder}/\n"
            "queue_qos0_messages true\nmax_queued_messages 0\n"
            # as root mosquitto would switch to the user "mosquitto", who cannot write our tmp dir
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        )
        self.log = folder / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=open(self.log, "a"),
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"mosquitto did not listen on {self.port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Subscriber:
    """`mosquitto_sub -c -q 1 -t 'PREFIX/#'`: records (qos, topic, payload) as they arrive."""

    def __init__(self, broker: Broker, prefix: str):
        self.broker, self.prefix = broker, prefix
        self.received: list[tuple[int, str, dict]] = []
        self.ident = f"test-sub-{broker.port}-{zlib.crc32(prefix.encode())}"  # one session per subscriber
        self.process = subprocess.Popen(
            [_tool("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port), "-i", self.ident, "-c",
             "-q", "1", "-F", "%q %t %p", "-t", f"{prefix}/#"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_ready()

    def _read(self) -> None:
        for line in self.process.stdout:
            qos, topic, payload = line.rstrip("\n").split(" ", 2)
            self.received.append((int(qos), topic, json.loads(payload)))

    def _wait_ready(self) -> None:
        """Publish probes until one comes back: the subscription is then in place."""
        probe = f"{self.prefix}/_probe/probe"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            subprocess.run([_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(self.broker.port), "-q", "1",
                            "-t", probe, "-m", "{}"], check=True, timeout=5)
            if self.wait(lambda r: any(t == probe for _, t, _ in r), 0.3):
                self.received.clear()
                return
        pytest.fail("mosquitto_sub did not receive a probe message")

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.received)):
                return True
            time.sleep(0.02)
        return predicate(list(self.received))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)


@pytest.fixture()
def broker(tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture()
def subscriber(broker):
    sub = Subscriber(broker, "t")
    yield sub
    sub.close()


def unique(received, qos=None, kind=None):
    """(topic, payload) in order of first arrival, duplicates (at-least-once) removed."""
    seen, out = set(), []
    for q, topic, payload in received:
        key = (topic, json.dumps(payload, sort_keys=True))
        if key in seen or (kind is not None and payload.get("type") != kind) or (qos is not None and q != qos):
            continue
        seen.add(key)
        out.append((topic, payload))
    return out


def assert_windows_in_order_with_one_gap(emitted: list, received: list, max_gap: int) -> None:
    """QoS 0 windows arrive in order and few are lost: those already written to the broker's
    socket when it stopped (on a loaded machine the broker may also shed a few at restart; QoS 0
    allows it). Windows published during the outage are queued, so losses stay small."""
    positions = [emitted.index(w) for w in received]
    assert positions == sorted(positions)
    missing = sorted(set(range(len(emitted))) - set(positions))
    assert len(missing) <= max_gap, missing


# ---- real event dicts ---------------------------------------------------------------------------
def scores(i: int) -> dict:
    p = np.random.default_rng(i).dirichlet(np.ones(9))
    return dict(zip(LABEL_NAMES, map(float, p)))


def window(sid: str, i: int) -> dict:
    s = scores(i)
    return event_message(sid, Window(i, i // 20, i * 0.1, i * 0.1 + 0.4, s, s, "neutral", s["neutral"]))


def alert(sid: str, i: int) -> dict:
    """A flagged transition, a review or a dual_emotion, numbered i."""
    t = i * 0.1
    kind = i % 3
    if kind == 0:
        return event_message(sid, Transition(t, t + 0.3, i, "fearful", "disgusted", True))
    if kind == 1:
        return event_message(sid, Review(i, t, t + 1, "fearful", "disgusted", 0.05, "fearful and disgusted too close"))
    return event_message(sid, DualEmotion(i, t, t + 1, ("fearful", "disgusted"), {"fearful": 0.7, "disgusted": 0.68},
                                          0.02, "both peaks above 0.6"))


def run(coro):
    return asyncio.run(coro)


async def until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# ---- unit level ---------------------------------------------------------------------------------
def test_url_prefix_and_qos_rules():
    assert parse_url("mqtt://127.0.0.1:1884").port == 1884 and parse_url("mqtt://broker").port == 1883
    a = parse_url("mqtt://user:p%40ss@broker.local:1999")
    assert (a.username, a.password, a.host) == ("user", "p@ss", "broker.local") and "p@ss" not in str(a)
    for bad in ("", "broker:1883", "http://h:1883", "mqtt://", "mqtt://h:99999", "mqtt://h:x",
                "mqtt://h:1883/topic", "mqtt://h:0"):
        with pytest.raises(ConfigError):
            MqttPublisher(bad)
    for bad in ("", "/", "a/+/b", "a/#", "a//b"):
        with pytest.raises(ConfigError):
            MqttPublisher("mqtt://h", prefix=bad)
    with pytest.raises(ConfigError):
        MqttPublisher("mqtt://h", max_buffer=0)
    pub = MqttPublisher("mqtt://h", prefix="site/a/")
    assert pub.topic(window("call-1", 0)) == "site/a/call-1/all/window"
    assert pub.topic({"type": "window", "session_id": "a/b+#"}) == "site/a/a_b__/all/window"
    assert pub.topic({"type": "window", "session_id": "c", "party": "caller"}) == "site/a/c/caller/window"
    s = scores(0)
    assert qos_for(window("c", 1)) == 0
    assert qos_for(event_message("c", Transition(1.0, 1.3, 0, "happy", "sad", False))) == 0
    assert all(qos_for(alert("c", i)) == 1 for i in range(3))
    assert qos_for(event_message("c", Segment(0, 0.0, 1.0, "sad", 0.4, s, s, 7))) == 1
    for kind in ("session_started", "session_ended", "overload"):
        assert qos_for({"type": kind, "session_id": "c"}) == 1
    assert qos_for({"type": "telephony", "session_id": "c"}) == 0


def test_full_queue_drops_oldest_qos0_first_and_counts():
    pub = MqttPublisher("mqtt://127.0.0.1:1", max_buffer=5)  # never started: nothing is sent
    for i in range(3):
        pub.publish(alert("c", i))
    for i in range(10):
        pub.publish(window("c", i))
    assert (pub.queued, pub.dropped, pub.dropped_alerts) == (5, 8, 0)
    assert [json.loads(e.payload)["index"] for _, e in pub._q0] == [8, 9]
    for i in range(3, 7):
        pub.publish(alert("c", i))
    assert (pub.queued, pub.dropped, pub.dropped_alerts) == (5, 12, 2)  # only alerts left: oldest go
    pub.publish({"type": "window", "session_id": "c", "bad": float("nan"), "obj": object()})  # never raises
    assert pub.dropped == 13


def test_start_and_stop_with_the_broker_down_do_not_block(tmp_path):
    async def main():
        pub = MqttPublisher(f"mqtt://127.0.0.1:{free_port()}", flush_timeout=0.5)
        t = time.perf_counter()
        await pub.start()
        assert time.perf_counter() - t < 0.05
        pub.publish(alert("c", 0))
        await asyncio.sleep(0.5)
        assert not pub.connected and pub.queued == 1
        t = time.perf_counter()
        await pub.stop()
        assert time.perf_counter() - t < 1.5
        pub.publish(alert("c", 1))  # after stop: counted, not raised
        assert pub.dropped == 1

    run(main())


# ---- publisher against the real broker ----------------------------------------------------------
def test_events_arrive_on_their_topics_as_emitted(broker, subscriber):
    s = scores(3)
    info = event_message("call-1", Info("tiny", True, LABEL_NAMES, {"window_seconds": 0.4}, "random weights"))
    sent = [
        {"type": "session_started", "session_id": "call-1", "source": "stream", "info": info},
        info, window("call-1", 0), window("call-2", 0), window("call-1", 1),
        event_message("call-1", Transition(0.5, 0.8, 0, "neutral", "sad", False)),
        alert("call-1", 0), alert("call-1", 1), alert("call-2", 2),
        event_message("call-1", Segment(0, 0.0, 1.2, "sad", 0.3, s, s, 9)),
        {"type": "overload", "message": "behind", "queue_depth": 64, "session_id": "call-2"},
        {"type": "telephony", "session_id": "call-2", "event": "dtmf", "digit": "1"},
        {"type": "session_ended", "session_id": "call-1", "summary": {"status": "complete"}},
    ]

    async def main():
        pub = MqttPublisher(broker.url, prefix="t")
        await pub.start()
        for m in sent:
            pub.publish(m)
        assert await until(lambda: pub.published == len(sent), 10), pub.stats()
        await pub.stop()
        return pub

    pub = run(main())
    assert subscriber.wait(lambda r: len(r) >= len(sent), 10)
    expected = [(qos_for(m), f"t/{m['session_id']}/all/{m['type']}", m) for m in sent]
    assert subscriber.received == expected
    assert [q for q, _, _ in subscriber.received] == [1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1]
    assert (pub.published, pub.dropped, pub.connects) == (len(sent), 0, 1)


def test_buffer_while_broker_is_down_then_deliver_in_order(broker, subscriber):
    """Messages published before the first connection wait; the oldest windows are dropped when full."""
    broker.stop()  # the subscriber's session (and subscription) survives in the broker's database

    async def main():
        pub = MqttPublisher(broker.url, prefix="t", max_buffer=10)
        await pub.start()
        sent = []
        for i in range(20):
            sent.append(window("c", i))
            if i % 7 == 0:
                sent.append(alert("c", i))
        for m in sent:
            pub.publish(m)
        await asyncio.sleep(0.3)
        assert not pub.connected and pub.queued == 10 and pub.dropped == len(sent) - 10
        await asyncio.to_thread(broker.start)
        assert await until(lambda: pub.queued == 0, 10), pub.stats()
        await pub.stop()
        return sent

    sent = run(main())
    alerts = [m for m in sent if qos_for(m)]
    kept = alerts + [window("c", i) for i in range(13, 20)]
    kept.sort(key=sent.index)
    assert subscriber.wait(lambda r: len(unique(r)) >= len(kept), 15)
    assert [p for _, p in unique(subscriber.received)] == kept


def test_broker_restart_mid_stream_loses_no_alert_and_never_blocks(broker, subscriber):
    async def main():
        pub = MqttPublisher(broker.url, prefix="t")
        await pub.start()
        assert await until(lambda: pub.connected, 5)
        sent, outage_calls, down = [], [], False
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def outage():
            nonlocal down
            await asyncio.sleep(1.0)
            down = True
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(broker.start)
            down = False

        restart = asyncio.create_task(outage())
        i = 0
        while loop.time() - t0 < 4.5:  # windows every 10 ms, an alert every 70 ms, two sessions
            sid = f"call-{i % 2}"
            batch = [window(sid, i)] + ([alert(sid, i)] if i % 7 == 0 else [])
            for m in batch:
                t = time.perf_counter()
                pub.publish(m)
                if down:
                    outage_calls.append(time.perf_counter() - t)
                sent.append(m)
            i += 1
            await asyncio.sleep(0.01)
        await restart
        assert await until(lambda: pub.queued == 0, 15), pub.stats()
        await pub.stop()
        return pub, sent, outage_calls

    pub, sent, outage_calls = run(main())
    alerts = [(f"t/{m['session_id']}/all/{m['type']}", m) for m in sent if qos_for(m)]
    assert subscriber.wait(lambda r: len(unique(r, qos=1)) >= len(alerts), 15)
    received = unique(subscriber.received, qos=1)
    assert received == alerts  # none missing, none altered, in the order emitted (hence per topic)
    assert len(outage_calls) > 100 and max(outage_calls) < 0.005, max(outage_calls)
    assert pub.connects >= 2 and pub.dropped == 0
    # QoS 0 windows: queued during the outage, delivered after it, in order (one in flight when the
    # broker stopped may be lost: QoS 0).
    assert_windows_in_order_with_one_gap([m for m in sent if m["type"] == "window"],
                                         [p for _, p in unique(subscriber.received, qos=0)], 25)


# ---- the real server ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pcm(speech_silence_speech):
    return (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype(np.int16)


def test_server_publishes_every_alert_and_segment_across_a_broker_restart(broker, tiny_model_dir, tmp_path, pcm):
    sub = Subscriber(broker, "emostream")
    server = start_server(tiny_model_dir, tmp_path, "--mqtt", broker.url)
    try:
        async def session():
            messages = []
            headers = {"Authorization": f"Bearer {server.token}"}
            async with connect(f"{server.ws}/ws/stream", additional_headers=headers, max_size=None) as ws:
                async def read():
                    try:
                        async for raw in ws:
                            messages.append(json.loads(raw))
                    except ConnectionClosed:
                        pass

                reader = asyncio.create_task(read())
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                          "session_id": "mqtt-1"}))
                audio, step = pcm.tobytes(), 3200  # 0.1 s per message, in real time
                t0 = time.monotonic()
                for n, i in enumerate(range(0, len(audio), step)):
                    if n == 20:  # 2 s in: the broker goes away for 2 s
                        await asyncio.to_thread(broker.stop)
                        t_stop = time.monotonic()
                    if n == 40:
                        await asyncio.to_thread(broker.start)
                    await ws.send(audio[i : i + step])
                    await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.1 - time.monotonic()))
                await ws.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(reader, 60)
            return messages, t_stop

        messages, _ = run(session())
        assert messages[-1]["type"] == "summary"
        ended = lambda r: any(p["type"] == "session_ended" for _, _, p in r)
        assert sub.wait(ended, 20), "session_ended never arrived over MQTT"
        got = unique(sub.received)
        qos = {(t, json.dumps(p, sort_keys=True)): q for q, t, p in sub.received}
        important = [m for m in messages if qos_for(m) and m["type"] not in ("overload",)]
        assert [m["type"] for m in important].count("segment") == 2
        mqtt_important = [p for t, p in got if qos_for(p) and p["type"] not in ("session_started", "session_ended", "overload")]
        assert mqtt_important == important  # every segment and alert, exactly, in order
        for t, p in got:
            assert t == f"emostream/mqtt-1/all/{p['type']}"
            assert qos[(t, json.dumps(p, sort_keys=True))] == qos_for(p)
        kinds = [p["type"] for _, p in got]
        assert kinds[0] == "session_started" and kinds[-1] == "session_ended"
        assert got[-1][1]["summary"] == messages[-1]["stats"]
        assert_windows_in_order_with_one_gap([m for m in messages if m["type"] == "window"],
                                             [p for _, p in got if p["type"] == "window"], 10)
        # The server sends `info` to the client and MQTT gets it inside session_started.
        assert [got[0][1]["info"]] == [m for m in messages if m["type"] == "info"]
        print("over MQTT:", {k: kinds.count(k) for k in sorted(set(kinds))})
    finally:
        server.stop()
        sub.close()
