"""The monitor feed (docs/monitor.md) against the real server: real sockets, real sessions, real alerts.

The feed's routing on its own, with the budget at 1,000 calls: tests/server/test_monitor_feed.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server_harness import start_server, unbatched
from stream.client import Client
from stream.server.alerts import ALERT_KINDS, alerts_in

FEED_ONLY_NOW = {"snapshot", "session_started", "session_ended", "digest", "alert", "alert_acknowledged"}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    s = start_server(tiny_model_dir, tmp_path_factory.mktemp("monitor"), "--max-wait-ms", "20")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def voices(two_voices):
    return tuple((np.clip(x, -1, 1) * 32767).astype(np.int16) for x in two_voices)


class Monitor:
    """A /ws/monitor connection whose messages are read all along into `seen`."""

    def __init__(self, server):
        self.server = server
        self.seen: list[dict] = []

    async def __aenter__(self):
        self.ws = await connect(f"{self.server.ws}/ws/monitor", additional_headers=self.server.headers, max_size=None)
        self.task = asyncio.create_task(self._read())
        await self.wait(lambda m: m["type"] == "snapshot")
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.task

    async def _read(self):
        try:
            async for raw in self.ws:
                self.seen.extend(unbatched(json.loads(raw)))
        except ConnectionClosed:
            pass

    async def wait(self, pred, timeout: float = 60) -> dict:
        """The first message seen (so far or later) that `pred` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.seen:
                if pred(m):
                    return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no such message; seen {[m['type'] for m in self.seen][-20:]}")
            await asyncio.sleep(0.02)

    async def ask(self, message) -> dict:
        """Send a message; the next reply (subscribed, unsubscribed or error) that follows it."""
        n = len(self.seen)
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))
        return await self.wait(lambda m: m in self.seen[n:] and m["type"] in ("subscribed", "unsubscribed", "error"))


def client(server, **start) -> Client:
    return Client(server.ws, token=server.token, sample_rate=16000, encoding="pcm_s16le", **start)


async def send_audio(c: Client, frames: np.ndarray, step: int = 3200) -> None:
    for i in range(0, len(frames), step):
        await c.send(frames[i : i + step])
        await asyncio.sleep(0)


def test_snapshot_deltas_and_no_windows_without_a_subscription(server, voices):
    caller, agent = voices

    async def go():
        async with client(server, session_id="mon-live", metadata={"line": "7"}) as live:
            await send_audio(live, caller[: 16000 * 4])
            # Wait until a window was analyzed: the snapshot then shows where the call stands.
            async for m in live.messages():
                if m["type"] == "window":
                    break
            async with Monitor(server) as mon:
                stereo = np.stack([caller, agent], axis=1)
                async with client(server, session_id="mon-split", channels=2, split_channels=True,
                                  parties=["caller", "agent"]) as split:
                    await send_audio(split, stereo, 6400)
                    split_messages = await split.finish()
                await mon.wait(lambda m: m["type"] == "session_ended" and m["session_id"] == "mon-split")
                await mon.wait(lambda m: m["type"] == "digest" and "mon-split" in m["sessions"], 5)
                live_messages = await live.finish()
                await mon.wait(lambda m: m["type"] == "session_ended" and m["session_id"] == "mon-live")
                return mon.seen, split_messages, live_messages

    seen, split_messages, live_messages = asyncio.run(go())
    assert {m["type"] for m in seen} <= FEED_ONLY_NOW - {"alert", "alert_acknowledged"}  # no window, no segment
    snapshot = seen[0]
    assert snapshot["type"] == "snapshot" and snapshot["alerts"] == []
    (listed,) = [s for s in snapshot["sessions"] if s["session_id"] == "mon-live"]
    assert listed["metadata"] == {"line": "7"} and listed["parties"] == [] and listed["source"] == "native"
    assert listed["replay"] is False and listed["random_weights"] is True and listed["profile"] == "general"
    assert listed["state"]["all"]["emotion"] and listed["state"]["all"]["time"] > 0
    assert listed["alerts"] == 0 and listed["open_alerts"] == 0

    (begun,) = [m for m in seen if m["type"] == "session_started"]
    assert begun["session"]["session_id"] == "mon-split" and begun["session"]["parties"] == ["caller", "agent"]
    assert begun["session"]["state"] == {"caller": None, "agent": None}
    infos = [m for m in split_messages if m["type"] == "info"]
    assert begun["info"] == {m["party"]: m for m in infos} and set(begun["info"]) == {"caller", "agent"}

    (ended,) = [m for m in seen if m["type"] == "session_ended" and m["session_id"] == "mon-split"]
    assert ended["summary"] == split_messages[-1]["stats"]
    # The digests follow each party through its windows (what changed after the last one ends with the session).
    windows = {p: [[m["dominant"], round(m["dominant_score"], 2), round(m["end"], 1)] for m in split_messages
                   if m["type"] == "window" and m["party"] == p] for p in ("caller", "agent")}  # fmt: skip
    followed = {"caller": [], "agent": []}
    for m in seen:
        if m["type"] == "digest":
            for party, state in m["sessions"].get("mon-split", {}).get("s", {}).items():
                followed[party].append(state)
    for party, states in followed.items():
        assert states and all(s in windows[party] for s in states), party
        assert [s[2] for s in states] == sorted(s[2] for s in states)
    digests = [m for m in seen if m["type"] == "digest"]
    assert all(set(d) == {"type", "sessions"} for d in digests)
    assert any("mon-live" in d["sessions"] for d in digests)
    assert live_messages[-1]["type"] == "summary"


def test_subscribe_gets_the_sessions_events_as_its_client_gets_them(server, voices):
    caller, _ = voices

    async def go():
        async with Monitor(server) as mon:
            async with client(server, session_id="mon-sub") as c:
                await send_audio(c, caller[: 16000 * 2])
                reply = await mon.ask({"type": "subscribe", "session_id": "mon-sub"})
                await send_audio(c, caller[16000 * 2 :])
                messages = await c.finish()
            await mon.wait(lambda m: m["type"] == "session_ended" and m["session_id"] == "mon-sub")
            again = await mon.ask({"type": "subscribe", "session_id": "mon-sub"})  # ended: gone
            return reply, mon.seen, messages, again

    reply, seen, messages, again = asyncio.run(go())
    assert reply["type"] == "subscribed" and reply["session_id"] == "mon-sub"
    i = seen.index(reply)
    followed = reply["events"] + [m for m in seen[i + 1 :] if m.get("session_id") == "mon-sub"
                                  and m["type"] not in FEED_ONLY_NOW | {"error"}]  # fmt: skip
    own = [m for m in messages if m["type"] not in ("ready", "summary")]
    assert [m["type"] for m in followed][0] == "info"
    assert followed == own  # the same messages, in the same order, as the session's own client
    assert sum(m["type"] == "window" for m in followed) > 20
    assert again["type"] == "error" and again["code"] == "unknown_session"


def test_a_ninth_subscription_and_bad_messages_get_errors_and_the_feed_stays_open(server):
    async def go():
        clients = [client(server, session_id=f"mon-many-{i}") for i in range(9)]
        for c in clients:
            await c.open()
        try:
            async with Monitor(server) as mon:
                replies = [await mon.ask({"type": "subscribe", "session_id": f"mon-many-{i}"}) for i in range(9)]
                errors = [await mon.ask(m) for m in ("{nope", '{"type": "dance"}', b"\x00\x01", '{"type": "subscribe"}',
                                                     '{"type": "subscribe", "session_id": "nobody"}')]  # fmt: skip
                gone = await mon.ask({"type": "unsubscribe", "session_id": "mon-many-0"})
                ninth = await mon.ask({"type": "subscribe", "session_id": "mon-many-8"})
                return replies, errors, gone, ninth, mon.ws.close_code
        finally:
            for c in clients:
                await c.finish()

    replies, errors, gone, ninth, closed = asyncio.run(go())
    assert [r["type"] for r in replies] == ["subscribed"] * 8 + ["error"]
    assert replies[-1]["code"] == "too_many_subscriptions"
    assert [e["code"] for e in errors] == ["bad_json", "unknown_type", "bad_message", "bad_message", "unknown_session"]
    assert gone == {"type": "unsubscribed", "session_id": "mon-many-0"}
    assert ninth["type"] == "subscribed" and closed is None


def test_planted_alerts_reach_every_monitor_with_their_ids(planted_model_dir, alert_speech, tmp_path):
    server = start_server(planted_model_dir, tmp_path, "--max-wait-ms", "20")
    pcm = (np.clip(alert_speech.samples, -1, 1) * 32767).astype(np.int16)
    try:
        async def go():
            async with Monitor(server) as mon:
                async with client(server, session_id="mon-alerts") as c:
                    await send_audio(c, pcm)
                    await mon.wait(lambda m: m["type"] == "alert", 60)
                    async with Monitor(server) as late:  # connected while the call is live
                        snapshot = late.seen[0]
                    await c.finish()
                await mon.wait(lambda m: m["type"] == "session_ended")
                return mon.seen, snapshot

        seen, snapshot = asyncio.run(go())
        alerts = [m["alert"] for m in seen if m["type"] == "alert"]
        assert {a["kind"] for a in alerts} <= set(ALERT_KINDS) and {"review", "flagged", "dual"} <= {a["kind"] for a in alerts}
        recorded = [json.loads(l) for l in (server.recordings / "mon-alerts" / "events.jsonl").read_text().splitlines()]
        expected = alerts_in("mon-alerts", recorded)
        assert [a["id"] for a in alerts] == [a.id for a in expected] == [f"mon-alerts#{n}" for n in range(1, len(expected) + 1)]
        for got, want in zip(alerts, expected):
            assert {k: got[k] for k in want.to_dict()} == want.to_dict()
            assert got["state"] == "open" and got["ack"] is None and got["at"].endswith("+00:00")
        (listed,) = [s for s in snapshot["sessions"] if s["session_id"] == "mon-alerts"]
        assert listed["alerts"] == listed["open_alerts"] == len(snapshot["alerts"]) >= 1
        assert [a["id"] for a in snapshot["alerts"]] == [a["id"] for a in alerts[: len(snapshot["alerts"])]][::-1]
        digests = [m["sessions"]["mon-alerts"] for m in seen if m["type"] == "digest" and "mon-alerts" in m["sessions"]]
        counts = [d["a"] for d in digests if "a" in d]  # (those raised by the final events end with the session)
        assert counts and counts == sorted(counts) and counts[-1] <= len(alerts)
        # Nothing but the feed's own messages: the alerts' events reach only subscribers.
        assert {m["type"] for m in seen} <= FEED_ONLY_NOW
    finally:
        server.stop()
