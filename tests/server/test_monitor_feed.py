"""The monitor feed without sockets (stream.server.monitor_feed): dicts in, what each fake monitor got out.

The feed's whole contract (docs/monitor.md) is checked here: snapshot, deltas, digest, subscriptions,
errors, alerts, bounds, and the budget of a monitor that subscribes to nothing at 1,000 live calls.
The real server with real sockets: tests/server/test_monitor_server.py.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np

from stream.engine.config import AnalyzerConfig
from stream.engine.events import Review, Transition
from stream.protocol.native import event_message
from stream.server.alerts import AlertCounter
from stream.server.metrics import ServerMetrics
from stream.server.monitor_feed import (
    IMMEDIATE_PER_SECOND, MAX_SUBSCRIPTIONS, PRUNE_SECONDS, RING_MESSAGES, MonitorFeed, describe_fields,
)  # fmt: skip
from stream.server.scheduler import BatchScheduler
from stream.server.session import LiveSession, SessionHooks, SessionSpec
from stream.server.sinks import Fanout, SessionOutput, without_feed_messages

LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")


class Box:
    """A fake monitor outbox: what it was sent, as text, and whether it counted against the budget."""

    def __init__(self, max_bytes: int = 4 << 20):
        self.max_bytes = max_bytes
        self.broken = False
        self.sent: list[tuple[str, bool]] = []

    def put_text(self, text: str, counted: bool = True) -> None:
        if not self.broken:
            self.sent.append((text, counted))

    def messages(self) -> list[dict]:
        return [json.loads(t) for t, _ in self.sent]

    def take(self) -> list[dict]:
        got = self.messages()
        self.sent.clear()
        return got

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages()]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(sid: str, party: str | None = None) -> dict:
    body = {"type": "info", "session_id": sid, "model_id": "tiny", "random_weights": True, "labels": list(LABELS),
            "parameters": {}, "warning": "random", "profile": {"name": "general"}, "planted": None}
    if party:
        body["party"] = party
    return body


def started(sid: str, parties: tuple[str, ...] = (), metadata: dict | None = None, source: str = "native") -> dict:
    """A `session_started` as the server's fan-out carries it."""
    infos = {p: info(sid, p) for p in parties} if parties else {"all": info(sid)}
    message = {"type": "session_started", "session_id": sid, "source": source, "encoding": "pcm_s16le",
               "channels": len(parties) or 1, "context": None, "profile": "general", "metadata": metadata or {},
               "model_id": "tiny", "random_weights": True, "planted": None, "precision": "float32",
               "parameters": {}, "record": "audio+events", "info": next(iter(infos.values())),
               "started_at": "2026-01-01T00:00:00+00:00", "infos": infos}  # fmt: skip
    if parties:
        message["parties"] = list(parties)
    return message


def window(sid: str, index: int, party: str | None = None, dominant: str = "neutral", score: float = 0.654321) -> dict:
    body = {"type": "window", "session_id": sid, "index": index, "segment": 0, "start": round(index * 0.1, 6),
            "end": round(index * 0.1 + 0.4, 6), "scores": {k: 0.111111 for k in LABELS},
            "smoothed": {k: 0.111111 for k in LABELS}, "dominant": dominant, "dominant_score": score}  # fmt: skip
    if party:
        body["party"] = party
    return body


def alert(sid: str, n: int, party: str | None = None) -> dict:
    return {"type": "alert", "alert": {"id": f"{sid}#{n}", "session_id": sid, "seq": n, "kind": "review", "party": party,
                                       "stream_time": 1.5, "text": "needs review", "at": f"2026-01-01T00:00:0{n}+00:00",
                                       "state": "open", "ack": None}}  # fmt: skip


def feed_with(*boxes, live=None, clock=None) -> MonitorFeed:
    feed = MonitorFeed(live, clock or Clock())
    for box in boxes:
        feed.connect(box)
    return feed


# -- snapshot and deltas -------------------------------------------------------------------------


def test_connect_sends_a_snapshot_outside_the_budget_with_live_sessions_and_open_alerts():
    described = {"session_id": "peer-1", "source": "twilio", "started_at": "t0", "context": "crisis", "metadata": {"line": 3},
                 "profile": "crisis", "parties": {"caller": {}, "agent": {}}, "random_weights": False, "planted": None,
                 "state": {"caller": {"emotion": "fearful", "score": 0.61234, "time": 3.40001}, "agent": None},
                 "status": "live", "events": {"window": 9}}  # fmt: skip
    live = [described]
    feed = feed_with(live=lambda: live)
    feed.broadcast(started("s1"))
    live.append({"session_id": "s1"})
    feed.broadcast(window("s1", 0))
    feed.broadcast(alert("s1", 1))
    feed.broadcast(alert("s1", 2))
    box = Box()
    feed.connect(box)
    (text, counted), = box.sent
    snap = json.loads(text)
    assert not counted and snap["type"] == "snapshot"
    peer, s1 = snap["sessions"]
    assert peer == {"session_id": "peer-1", "source": "twilio", "started_at": "t0", "context": "crisis", "profile": "crisis",
                    "metadata": {"line": 3}, "parties": ["caller", "agent"], "replay": False, "random_weights": False,
                    "planted": None, "state": {"caller": {"emotion": "fearful", "score": 0.61, "time": 3.4}, "agent": None},
                    "alerts": 0, "open_alerts": 0}  # fmt: skip
    assert s1["state"] == {"all": {"emotion": "neutral", "score": 0.65, "time": 0.4}}
    assert s1["alerts"] == 2 and s1["open_alerts"] == 2 and s1["started_at"] == "2026-01-01T00:00:00+00:00"
    assert [a["id"] for a in snap["alerts"]] == ["s1#2", "s1#1"]  # newest first


def test_session_started_carries_every_partys_info_and_session_ended_its_summary():
    box = Box()
    feed = feed_with(box)
    feed.broadcast(started("split", ("caller", "agent"), metadata={"queue": "7", "replay": True}))
    feed.clock.now += 1  # (one delta a second goes out at once)
    feed.broadcast({"type": "session_ended", "session_id": "split", "summary": {"status": "complete"}})
    snapshot, begun, ended = box.messages()
    assert snapshot == {"type": "snapshot", "sessions": [], "alerts": []}
    assert begun["type"] == "session_started" and set(begun) == {"type", "session", "info"}
    assert begun["info"] == {"caller": info("split", "caller"), "agent": info("split", "agent")}
    session = begun["session"]
    assert session["parties"] == ["caller", "agent"] and session["state"] == {"caller": None, "agent": None}
    assert session["replay"] is True and session["metadata"]["queue"] == "7" and session["profile"] == "general"
    assert session["alerts"] == session["open_alerts"] == 0
    assert ended == {"type": "session_ended", "session_id": "split", "summary": {"status": "complete"}}


def test_windows_reach_no_unsubscribed_monitor_and_one_digest_carries_the_changed_sessions():
    box, clock = Box(), Clock()
    feed = feed_with(box, clock=clock)
    for sid in ("a", "b", "c"):
        feed.broadcast(started(sid, ("caller", "agent") if sid == "c" else ()))
    feed.tick()  # (two deltas go out at once in a second: the third waits for this tick's batch)
    box.sent.clear()
    clock.now += 1
    for i in range(10):
        feed.broadcast(window("a", i, score=0.5 + i / 100))
        feed.broadcast(window("c", i, party="agent", dominant="fearful"))
        feed.broadcast({"type": "segment", "session_id": "a", "index": 0})
        feed.broadcast({"type": "overload", "session_id": "b", "message": "slow", "queue_depth": 9})
    assert box.sent == []  # nothing per session without a subscription
    feed.tick()
    (digest,) = box.take()
    assert digest == {"type": "digest", "sessions": {"a": {"s": {"all": ["neutral", 0.59, 1.3]}},
                                                     "c": {"s": {"agent": ["fearful", 0.65, 1.3]}}}}  # fmt: skip
    feed.tick()
    assert box.sent == []  # nothing changed: no digest
    feed.broadcast(window("a", 9, score=0.59))  # the same state again is no change
    feed.tick()
    assert box.sent == []
    feed.broadcast(alert("b", 1))
    clock.now += 1
    feed.broadcast({"type": "alert_acknowledged", "alert": {**alert("b", 1)["alert"], "state": "acknowledged",
                                                            "ack": {"by": "sup", "at": "t", "note": None, "assignee": None}}})
    assert box.types() == ["alert", "alert_acknowledged"]
    box.sent.clear()
    feed.tick()
    assert box.take() == [{"type": "digest", "sessions": {"b": {"a": 1, "o": 0}}}]


# -- subscriptions -------------------------------------------------------------------------------


def test_subscribe_replays_recent_events_then_streams_them_until_unsubscribed():
    watcher, other = Box(), Box()
    feed = feed_with(watcher, other)
    feed.broadcast(started("s1", ("caller", "agent")))
    for i in range(3):
        feed.broadcast(window("s1", i, party="caller"))
    watcher.sent.clear()
    feed.receive(watcher, json.dumps({"type": "subscribe", "session_id": "s1"}))
    (reply,) = watcher.take()
    assert reply["type"] == "subscribed" and reply["session_id"] == "s1"
    assert [(m["type"], m.get("party"), m.get("index")) for m in reply["events"]] == [
        ("info", "caller", None), ("info", "agent", None), ("window", "caller", 0), ("window", "caller", 1),
        ("window", "caller", 2)]  # fmt: skip
    telephony = {"type": "telephony", "session_id": "s1", "event": "dtmf", "digit": "5"}
    for message in (window("s1", 3, party="agent"), telephony, {"type": "review", "session_id": "s1", "party": "agent"}):
        feed.broadcast(message)
    assert watcher.take() == [window("s1", 3, party="agent"), telephony, {"type": "review", "session_id": "s1", "party": "agent"}]
    assert other.types() == ["snapshot", "session_started"]
    feed.receive(watcher, json.dumps({"type": "unsubscribe", "session_id": "s1"}))
    feed.broadcast(window("s1", 4, party="agent"))
    assert watcher.take() == [{"type": "unsubscribed", "session_id": "s1"}]


def test_a_burst_of_deltas_goes_out_one_at_once_then_in_batches_in_order_and_never_over_5_a_second():
    box, clock, live = Box(), Clock(), []
    feed = feed_with(box, clock=clock, live=lambda: live)
    box.sent.clear()
    sent: list[tuple[float, dict]] = []  # (when, message) for every message the monitor got
    for second in range(12):
        for k in range(40 if second < 2 else 0):  # 80 session starts, each with an alert, in two seconds
            clock.now = 1000 + second + k / 40
            live.append({"session_id": f"c{second}-{k}"})
            feed.broadcast(started(f"c{second}-{k}", metadata={"queue": "x" * 2000}))
            feed.broadcast(alert(f"c{second}-{k}", 1))
            sent += [(clock.now, m) for m in box.take()]
        clock.now = 1000 + second + 0.999
        feed.tick()
        sent += [(clock.now, m) for m in box.take()]
    flat = []
    for _, m in sent:
        flat += m["messages"] if m["type"] == "batch" else [m] if m["type"] != "digest" else []
    expected = [(kind, f"c{s}-{k}") for s in range(2) for k in range(40) for kind in ("session_started", "alert")]
    assert [(m["type"], m["session"]["session_id"] if m["type"] == "session_started" else m["alert"]["session_id"])
            for m in flat] == expected  # every delta once, in order
    assert [m["type"] for _, m in sent[:IMMEDIATE_PER_SECOND]] == ["session_started"]
    assert sum(m["type"] == "batch" for _, m in sent) >= 2  # a burst of 160 kB drains over several ticks
    for start in np.arange(1000, 1012, 0.25):  # any one-second interval
        window_ = [m for t, m in sent if start <= t < start + 1]
        # One delta and one tick (batch, digest) in any second of the server's clock: half the budget of 5
        # messages and 150 kB, so two ticks that delivery bunches into one second still fit it.
        assert len(window_) <= 3 and sum(len(json.dumps(m)) for m in window_) <= 75_000


def test_a_ninth_subscription_is_refused_and_an_ended_session_frees_its_slot():
    box = Box()
    feed = feed_with(box)
    for i in range(MAX_SUBSCRIPTIONS + 1):
        feed.broadcast(started(f"s{i}"))
    feed.tick()  # the starts beyond the first three went in a batch
    box.sent.clear()
    for i in range(MAX_SUBSCRIPTIONS + 1):
        feed.receive(box, json.dumps({"type": "subscribe", "session_id": f"s{i}"}))
    replies = box.take()
    assert [m["type"] for m in replies] == ["subscribed"] * MAX_SUBSCRIPTIONS + ["error"]
    assert replies[-1]["code"] == "too_many_subscriptions" and replies[-1]["session_id"] == f"s{MAX_SUBSCRIPTIONS}"
    feed.receive(box, json.dumps({"type": "subscribe", "session_id": "s0"}))  # subscribing again is no new slot
    assert box.take()[0]["type"] == "subscribed"
    feed.clock.now += 1
    feed.broadcast({"type": "session_ended", "session_id": "s0", "summary": {}})  # closes its subscription
    feed.broadcast(window("s0", 0))  # a late message of an ended session goes nowhere
    feed.receive(box, json.dumps({"type": "subscribe", "session_id": f"s{MAX_SUBSCRIPTIONS}"}))
    assert [m["type"] for m in box.take()] == ["session_ended", "subscribed"]
    feed.receive(box, json.dumps({"type": "subscribe", "session_id": "s0"}))
    assert box.take()[0]["code"] == "unknown_session"


def test_bad_messages_get_errors_and_the_feed_goes_on():
    box = Box()
    feed = feed_with(box)
    feed.broadcast(started("s1"))
    box.sent.clear()
    for text, data in (("{nope", None), ("[1]", None), ('{"type": 3}', None), ('{"type": "dance"}', None),
                       ('{"type": "subscribe"}', None), ('{"type": "subscribe", "session_id": 7}', None),
                       ('{"type": "subscribe", "session_id": "ghost"}', None), (None, b"\x00")):
        feed.receive(box, text, data)
    codes = [m["code"] for m in box.take()]
    assert codes == ["bad_json", "bad_message", "bad_message", "unknown_type", "bad_message", "bad_message",
                     "unknown_session", "bad_message"]
    feed.receive(box, '{"type": "subscribe", "session_id": "s1"}')
    assert box.take()[0]["type"] == "subscribed" and box in feed.outboxes


def test_a_peers_session_can_be_subscribed_before_its_first_event():
    box = Box()
    feed = feed_with(box, live=lambda: [{"session_id": "peer-1"}])
    box.sent.clear()
    feed.receive(box, '{"type": "subscribe", "session_id": "peer-1"}')
    feed.broadcast(window("peer-1", 0))
    assert [m["type"] for m in box.take()] == ["subscribed", "window"]


def test_the_ring_keeps_the_last_2000_events_and_a_reply_fits_half_the_budget():
    feed = feed_with()
    feed.broadcast(started("s1"))
    for i in range(RING_MESSAGES + 500):
        feed.broadcast(window("s1", i))
    roomy, small = Box(), Box(max_bytes=20_000)
    for box in (roomy, small):
        feed.connect(box)
        box.sent.clear()
        feed.receive(box, '{"type": "subscribe", "session_id": "s1"}')
    events = roomy.messages()[0]["events"]
    assert len(events) == RING_MESSAGES and [e["index"] for e in events] == list(range(500, RING_MESSAGES + 500))
    (text, counted), = small.sent
    newest = json.loads(text)["events"]
    assert counted and len(text.encode()) <= 10_000 + 100
    assert 0 < len(newest) < 20 and newest[-1]["index"] == RING_MESSAGES + 499  # the newest that fit


def test_a_monitor_that_stopped_reading_is_dropped():
    box, fine = Box(), Box()
    feed = feed_with(box, fine)
    feed.broadcast(started("s1"))
    feed.receive(box, '{"type": "subscribe", "session_id": "s1"}')
    box.broken = True
    feed.broadcast(window("s1", 0))
    assert box not in feed.outboxes and fine in feed.outboxes
    feed.broadcast({"type": "session_ended", "session_id": "s1", "summary": {}})


def test_a_session_whose_end_was_never_seen_is_ended_once_it_leaves_the_live_list():
    clock, live = Clock(), [{"session_id": "peer-1"}]
    box = Box()
    feed = feed_with(box, live=lambda: live, clock=clock)
    feed.broadcast(window("peer-1", 0))  # a peer's session whose start this replica missed
    feed.broadcast(window("local", 0))
    feed.tick()
    clock.now += PRUNE_SECONDS
    live.append({"session_id": "local"})
    live.remove({"session_id": "peer-1"})
    box.sent.clear()
    feed.tick()
    assert box.take() == [{"type": "session_ended", "session_id": "peer-1", "summary": None}]
    clock.now += PRUNE_SECONDS
    feed.tick()
    assert box.sent == []  # "local" is live: kept however quiet


def test_digests_run_once_a_second_until_stopped():
    async def go():
        box = Box()
        feed = feed_with(box)
        feed.start()
        feed.broadcast(started("s1"))
        feed.broadcast(window("s1", 0))
        await asyncio.sleep(1.3)
        await feed.stop()
        return box.types()

    assert asyncio.run(go()) == ["snapshot", "session_started", "digest"]


# -- the budget of a monitor that subscribes to nothing --------------------------------------------


def budget(ids: list[str], parties: tuple[str, ...], seconds: int = 5) -> list[tuple[int, int]]:
    """(messages, bytes) an unsubscribed monitor gets in each simulated second of 10 windows/s per party per call."""
    watcher, follower = Box(), Box()
    feed = feed_with(watcher, follower)
    for sid in ids:
        feed.broadcast(started(sid, parties))
    feed.receive(follower, json.dumps({"type": "subscribe", "session_id": ids[0]}))
    rng = np.random.default_rng(0)
    emotions = ("neutral", "fearful", "disgusted", "surprised")
    per_second = []
    for second in range(seconds):
        watcher.sent.clear()
        for k in range(10):
            i = second * 10 + k
            for sid in ids:
                for party in parties or (None,):
                    feed.broadcast(window(sid, i, party, emotions[int(rng.integers(4))], float(rng.random())))
        feed.tick()
        per_second.append((len(watcher.sent), sum(len(t.encode()) for t, _ in watcher.sent)))
    follows = [m for m in follower.messages() if m.get("session_id") == ids[0] and m["type"] == "window"]
    assert len(follows) == seconds * 10 * max(1, len(parties))  # the subscriber got every window of its call
    return per_second


def test_an_unsubscribed_monitor_stays_within_5_messages_and_150_kB_a_second_at_1000_calls():
    native = budget([f"{i:016x}" for i in range(1000)], ())
    twilio = budget([f"twilio-MZ{i:032x}" for i in range(1000)], ("inbound", "outbound"))
    print(f"\nper second at 1,000 calls: native {native}, two-party Twilio {twilio}")
    for messages, size in native + twilio:
        assert messages <= 5 and size <= 150_000


# -- the sinks path: alerts and MQTT's view ----------------------------------------------------------


def test_session_output_raises_alerts_in_event_order_after_their_events():
    sent, raised = [], []
    fanout = Fanout(sent.append)
    output = SessionOutput("s1", None, fanout, ServerMetrics(), lambda a: raised.append((len(sent), a)))
    review = Review(segment=1, start=1.0, end=2.0, leading="fearful", runner_up="disgusted", gap=0.02, reason="close")
    flagged = Transition(time=2.5, confirmed_at=2.8, segment=1, from_emotion="fearful", to_emotion="disgusted", flagged=True)
    calm = Transition(time=3.5, confirmed_at=3.8, segment=1, from_emotion="neutral", to_emotion="happy", flagged=False)
    output.events(None, [review, calm, flagged], "caller")
    assert [(n, a.id, a.kind, a.party) for n, a in raised] == [(1, "s1#1", "review", "caller"), (3, "s1#2", "flagged", "caller")]
    counter = AlertCounter("s1")  # the same ids a rebuild from the recorded events gives
    assert [a for a in map(counter.check, [event_message("s1", e, "caller") for e in (review, calm, flagged)]) if a] == [
        a for _, a in raised]


def test_mqtt_never_sees_the_feeds_messages_nor_its_fields():
    got = []
    sink = without_feed_messages(got.append)
    for kind in ("alert", "alert_acknowledged", "digest", "snapshot"):
        sink({"type": kind})
    sink(started("s1"))
    sink(window("s1", 0))
    assert [m["type"] for m in got] == ["session_started", "info", "window"]  # the info on its own topic too
    assert "infos" not in got[0] and "started_at" not in got[0] and got[0]["info"] == got[1] == info("s1")
    got.clear()
    sink(started("s2", ("caller", "agent")))  # every party's info reaches MQTT, each on its party's topic
    assert [(m["type"], m.get("party")) for m in got] == [("session_started", None), ("info", "caller"), ("info", "agent")]
    assert got[0]["info"] == got[1] == info("s2", "caller") and got[2] == info("s2", "agent")


def test_describe_carries_each_partys_state(scorer, two_voices):
    caller, agent = two_voices

    async def run():
        sched = BatchScheduler(scorer, max_batch=4, max_wait=0.02)
        sched.start()
        spec = SessionSpec("split-1", 16000, "pcm_f32le", channels=2, metadata={"replay": True},
                           parties=("caller", "agent"))
        session = LiveSession(spec, AnalyzerConfig(), scorer, sched, hooks=SessionHooks())
        before = session.describe()
        frames = np.stack([caller, agent], axis=1)
        for start in range(0, len(frames), 1600):
            session.feed(frames[start : start + 1600])
            await asyncio.sleep(0)
        await session.finish()
        after = session.describe()
        await sched.stop()
        return before, after

    before, after = asyncio.run(run())
    assert before["state"] == {"caller": None, "agent": None}
    assert before["replay"] is True and before["profile"] == "general" and before["random_weights"] is True
    for party in ("caller", "agent"):
        state = after["state"][party]
        assert state["emotion"] in scorer.labels and 0 < state["score"] <= 1 and state["time"] > 0
    fields = describe_fields(after)
    assert fields["parties"] == ["caller", "agent"] and fields["started_at"] == after["started_at"]


def test_the_server_tells_its_alert_hooks_first_then_every_monitor_and_acknowledgements(scorer, tmp_path):
    from stream.server.alerts import Alert
    from stream.server.app import EmostreamServer
    from stream.server.settings import ServerSettings

    server = EmostreamServer(ServerSettings(recordings=tmp_path / "rec"), scorer)
    server.monitor.clock = Clock()
    box, order = Box(), []
    server.monitor.connect(box)
    server.monitor.broadcast(started("s1"))

    def failing(alert, body):
        raise RuntimeError("the catalog is down")

    server.on_alert += [lambda alert, body: order.append(("hook", alert.id, body["at"], len(box.sent))), failing]
    mqtt = []
    server.sinks.add(without_feed_messages(mqtt.append))
    raised = Alert("s1#1", "s1", 1, "flagged", "caller", 2.5, "flagged transition fearful → disgusted")
    server.monitor.clock.now += 1
    server.alerted(raised)  # a failing hook is logged; the monitors still hear of it
    (_, _, _, n), = order
    assert n == 2  # the hook ran before the monitors got the alert
    message = box.messages()[-1]
    assert message["type"] == "alert" and message["alert"] == {**raised.to_dict(), "at": order[0][2], "state": "open",
                                                                "ack": None}
    ack = {"by": "supervisor", "at": "2026-01-01T00:01:00+00:00", "note": "called back", "assignee": None}
    server.monitor.clock.now += 1  # (two deltas this second already: a third would wait for the batch)
    server.acknowledged({**message["alert"], "ack": ack})
    assert box.messages()[-1] == {"type": "alert_acknowledged", "alert": {**message["alert"], "state": "acknowledged", "ack": ack}}
    server.monitor.tick()
    assert box.messages()[-1] == {"type": "digest", "sessions": {"s1": {"a": 1, "o": 0}}}
    assert mqtt == []  # MQTT hears of neither


def test_a_peers_description_without_state_lists_each_party_as_not_yet_heard():
    box = Box()
    feed_with(box, live=lambda: [{"session_id": "peer-2", "parties": ["caller", "agent"], "source": "replay"}])
    (session,) = box.messages()[0]["sessions"]
    assert session["state"] == {"caller": None, "agent": None} and session["replay"] is True
