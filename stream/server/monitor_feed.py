"""The monitor feed of `/ws/monitor` (docs/monitor.md): its size follows the number of calls, not their events.

Every message of the server's fan-out — and, in a cluster, every message a peer relays — comes in
through `broadcast`. The feed keeps what a dashboard needs of each live session (its description,
each party's latest state, its alerts, a ring of its recent event messages) and sends each monitor:

- on connect, a `snapshot` of the live sessions and their open alerts, outside the byte budget;
- `session_started`, `session_ended`, `alert` and `alert_acknowledged` as they happen, at most
  IMMEDIATE_PER_SECOND of them in any second; beyond, they wait (in order) for the next tick,
  which sends them as one `batch` message;
- at most one `digest` a second with the sessions whose state changed (`tick`, driven by `run`);

so a monitor that follows no session gets at most IMMEDIATE_PER_SECOND + 2 messages in any second
of the server's clock (5, and under 150 kB, even where delivery bunches two ticks together),
however many calls are live.
- the per-session messages (windows, segments, ...) of the sessions it subscribed to.

It never touches a socket: a monitor is an outbox with `put_text(text, counted=True)`, `broken`
and `max_bytes` (stream.server.outbox.Outbox), so tests drive the feed with dicts and fake outboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, deque
from typing import Callable

from stream.protocol.native import WHOLE_SESSION, error

from .outbox import encode

log = logging.getLogger("emostream.server")

RING_MESSAGES = 2_000  # a session's recent event messages, replayed to a new subscriber
RING_BYTES = 2 << 20  # ... and at most this much of their JSON (a window is ~550 bytes: 2,000 fit)
MAX_SUBSCRIPTIONS = 8  # sessions one monitor may follow in full
MAX_SNAPSHOT_ALERTS = 200  # open alerts in a snapshot, newest first
KEEP_OPEN_ALERTS = 200  # open alerts a session keeps for snapshots (its counts stay exact)
DIGEST_SECONDS = 1.0
# The budget of a monitor that follows no session is 5 messages and 150 kB in any second as it receives
# them. Ticks come a second apart, but delivery is not exact: two ticks' messages may land in one second.
# So each second sends at most one delta at once (the rest go in the next tick's `batch`), and a tick
# (batch and digest) at most TICK_BYTES: two ticks and a delta still fit.
IMMEDIATE_PER_SECOND = 1
TICK_BYTES = 64_000  # a tick's batch takes what its digest leaves of this (at least MIN_BATCH_BYTES)
MIN_BATCH_BYTES = 16_000
DIGEST_BYTES = TICK_BYTES - MIN_BATCH_BYTES  # a digest about this long at most: more changes wait a tick
MAX_HELD_BYTES = 8 << 20  # deltas waiting beyond this: monitors get a fresh snapshot instead
PRUNE_SECONDS = 10.0  # a session seen only through its events, gone from the live list this long, is dropped
KEEP_ENDED = 10_000  # ids of ended sessions whose late messages are ignored
SCORE_DIGITS, TIME_DIGITS = 2, 1  # a party state's rounding

BROADCAST = frozenset({"session_started", "session_ended", "alert", "alert_acknowledged"})
# What the fan-out carries for monitors only: other sinks (MQTT) never see these types.
FEED_ONLY = frozenset({"alert", "alert_acknowledged", "digest", "snapshot"})
# A `session_started` message's fields for the feed alone (other sinks get the message without them).
FEED_FIELDS = ("started_at", "infos")
STATE_FIELDS = ("session_id", "source", "started_at", "context", "profile", "metadata", "parties", "replay",
                "random_weights", "planted")  # fmt: skip


def party_state(emotion: str | None, score, time_: float | None) -> dict:
    """One party's state as the feed sends it: emotion, rounded smoothed score, window end."""
    return {"emotion": emotion, "score": None if score is None else round(float(score), SCORE_DIGITS),
            "time": None if time_ is None else round(float(time_), TIME_DIGITS)}  # fmt: skip


def is_replay(description: dict) -> bool:
    """Whether a session is a replayed recording: its `replay` flag, else `"replay": true` in its metadata
    or the "replay" source (the catalog's rule too: stream.server.catalog.records.is_replay)."""
    if "replay" in description:
        return bool(description["replay"])
    metadata = description.get("metadata")
    return (isinstance(metadata, dict) and metadata.get("replay") is True) or description.get("source") == "replay"


def describe_fields(description: dict) -> dict:
    """The fixed part of a SessionState from a `LiveSession.describe()` dict or a `session_started` message."""
    profile = description.get("profile")
    if isinstance(profile, dict):  # an `info` event's profile mapping
        profile = profile.get("name")
    return {
        "session_id": description["session_id"],
        "source": description.get("source"),
        "started_at": description.get("started_at"),
        "context": description.get("context"),
        "profile": profile,
        "metadata": description.get("metadata") or {},
        "parties": list(description.get("parties") or ()),  # describe() maps party -> summary: its keys
        "replay": is_replay(description),
        "random_weights": bool(description.get("random_weights")),
        "planted": description.get("planted"),
    }


class _Session:
    """What the feed keeps of one live session."""

    __slots__ = ("alerts", "fields", "open", "open_ids", "ring", "ring_bytes", "seen", "started", "state",
                 "subscribers")  # fmt: skip

    def __init__(self, fields: dict, started: bool, now: float):
        self.fields = fields
        self.started = started  # False: known only from its events (a peer's session whose start was missed)
        self.state: dict[str, dict | None] = {p: None for p in fields["parties"] or (WHOLE_SESSION,)}
        self.alerts = 0
        self.open_ids: set[str] = set()
        self.open: OrderedDict[str, tuple[int, dict]] = OrderedDict()  # newest last, at most KEEP_OPEN_ALERTS
        self.ring: deque[tuple[str, int]] = deque()  # (JSON text, its length)
        self.ring_bytes = 0
        self.subscribers: set = set()
        self.seen = now

    def adopt(self, fields: dict) -> None:
        """The description of a session first known from its events (a peer's whose start was missed)."""
        self.fields, self.started = fields, True
        self.state = {p: self.state.get(p) for p in fields["parties"] or (WHOLE_SESSION,)}

    def remember(self, text: str) -> None:
        size = len(text)
        self.ring.append((text, size))
        self.ring_bytes += size
        while len(self.ring) > RING_MESSAGES or self.ring_bytes > RING_BYTES:
            self.ring_bytes -= self.ring.popleft()[1]

    def as_state(self) -> dict:
        """Its SessionState (docs/monitor.md)."""
        return {**self.fields, "state": dict(self.state), "alerts": self.alerts, "open_alerts": len(self.open_ids)}


class MonitorFeed:
    """Every monitor's feed; `broadcast` is the sink every session-tagged message reaches."""

    def __init__(self, live: Callable[[], list[dict]] | None = None, clock: Callable[[], float] = time.monotonic):
        """`live`: every live session as `LiveSession.describe()` gives it (this server's and its peers')."""
        self.live = live or (lambda: [])
        self.clock = clock
        self.outboxes: set = set()  # every connected monitor (a cluster replica polls its peers while any)
        self._subscriptions: dict[object, set[str]] = {}
        self._sessions: dict[str, _Session] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._changed: dict[str, set[str]] = {}  # session -> parties whose state changed since the last digest
        self._alerts_changed: set[str] = set()
        self._alert_order = 0
        self._last_prune = clock()
        self._sent_at: deque[float] = deque()  # when the last deltas went out at once (IMMEDIATE_PER_SECOND)
        self._held: deque[str] = deque()  # deltas waiting for the next ticks' batches, in order (JSON texts)
        self._held_bytes = 0
        self._live_cache: tuple[float, set[str]] | None = None  # (when, ids): subscriptions ask at most once a second
        self._task: asyncio.Task | None = None

    # -- monitors --
    def connect(self, box) -> None:
        """A new monitor: its snapshot (outside its byte budget), then every delta."""
        box.put_text(encode(self.snapshot()), counted=False)
        self.outboxes.add(box)
        self._subscriptions[box] = set()

    def disconnect(self, box) -> None:
        """A monitor went away (or stopped reading): forget it and its subscriptions."""
        self.outboxes.discard(box)
        for sid in self._subscriptions.pop(box, ()):
            session = self._sessions.get(sid)
            if session is not None:
                session.subscribers.discard(box)

    def snapshot(self) -> dict:
        """Every live session's SessionState and the open alerts of live sessions, newest first."""
        sessions, alerts, listed = [], [], set()
        for description in self.live():
            sid = description.get("session_id")
            listed.add(sid)
            session = self._sessions.get(sid)
            if session is None:  # not seen here yet (a peer's session): what its server described
                fields = describe_fields(description)
                state = {p: None for p in fields["parties"] or (WHOLE_SESSION,)}
                state.update((p, None if s is None else party_state(s.get("emotion"), s.get("score"), s.get("time")))
                             for p, s in (description.get("state") or {}).items())  # fmt: skip
                sessions.append({**fields, "state": state,
                                 "alerts": int(description.get("alerts") or 0),
                                 "open_alerts": int(description.get("open_alerts") or 0)})  # fmt: skip
                continue
            if not session.started:  # known from its events only: take its description now
                session.adopt(describe_fields(description))
            sessions.append(session.as_state())
            alerts += session.open.values()
        for sid, session in self._sessions.items():  # a peer's session whose start came before its description
            if session.started and sid not in listed:
                sessions.append(session.as_state())
                alerts += session.open.values()
        alerts.sort(key=lambda item: item[0], reverse=True)
        return {"type": "snapshot", "sessions": sessions, "alerts": [a for _, a in alerts[:MAX_SNAPSHOT_ALERTS]]}

    def receive(self, box, text: str | None = None, data: bytes | None = None) -> None:
        """A monitor's own message: subscribe or unsubscribe; anything else is answered with an error."""
        if text is None:
            return self._reply(box, error("bad_message", "the monitor takes JSON text messages"))
        try:
            message = json.loads(text)
        except ValueError:
            return self._reply(box, error("bad_json", "not a JSON message"))
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return self._reply(box, error("bad_message", "a message is a JSON object with a string `type`"))
        kind = message["type"]
        if kind not in ("subscribe", "unsubscribe"):
            return self._reply(box, error("unknown_type", f"unknown message type {kind[:64]!r}: subscribe, unsubscribe"))
        sid = message.get("session_id")
        if not isinstance(sid, str) or not sid or len(sid) > 256:
            return self._reply(box, error("bad_message", f"`{kind}` needs a `session_id` string"))
        if kind == "subscribe":
            self.subscribe(box, sid)
        else:
            self.unsubscribe(box, sid)

    def subscribe(self, box, sid: str) -> None:
        """Send `box` the session's recent events, then every message of it until it ends."""
        mine = self._subscriptions.get(box)
        if mine is None:
            return
        session = self._sessions.get(sid)
        if session is None and sid not in self._ended and sid in self._live_ids():
            session = self._track(sid)  # live on a peer, no event of it seen here yet
        if session is None:
            return self._reply(box, {**error("unknown_session", f"no live session {sid[:64]!r}"), "session_id": sid})
        if sid not in mine and len(mine) >= MAX_SUBSCRIPTIONS:
            return self._reply(box, {**error("too_many_subscriptions",
                                             f"a monitor follows at most {MAX_SUBSCRIPTIONS} sessions"),
                                     "session_id": sid})  # fmt: skip
        mine.add(sid)
        session.subscribers.add(box)
        # The history fills at most half the monitor's byte budget: the newest events that fit.
        room = getattr(box, "max_bytes", None)
        room = RING_BYTES if room is None else room // 2
        events: list[str] = []
        for text, size in reversed(session.ring):
            room -= size + 2
            if room < 0:
                break
            events.append(text)
        events.reverse()
        box.put_text('{"type": "subscribed", "session_id": %s, "events": [%s]}' % (json.dumps(sid), ", ".join(events)))
        self._check(box)

    def _live_ids(self) -> set[str]:
        now = self.clock()
        if self._live_cache is None or now - self._live_cache[0] >= DIGEST_SECONDS:
            self._live_cache = (now, {d.get("session_id") for d in self.live()})
        return self._live_cache[1]

    def unsubscribe(self, box, sid: str) -> None:
        """Stop sending `box` the session's messages (answered with `unsubscribed` whether it followed it or not)."""
        mine = self._subscriptions.get(box)
        if mine is None:
            return
        mine.discard(sid)
        session = self._sessions.get(sid)
        if session is not None:
            session.subscribers.discard(box)
        self._reply(box, {"type": "unsubscribed", "session_id": sid})

    # -- the fan-out's messages --
    def broadcast(self, message: dict) -> None:
        """A sink: one message of the server's fan-out (or a peer's); never raises for an odd message."""
        kind = message.get("type")
        try:
            if kind == "session_started":
                self._started(message)
            elif kind == "session_ended":
                self._ended_session(message)
            elif kind == "alert":
                self._alert(message)
            elif kind == "alert_acknowledged":
                self._acknowledged(message)
            elif isinstance(message.get("session_id"), str):
                self._event(message)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.exception("monitor feed: could not take a %r message", kind)

    def _started(self, message: dict) -> None:
        sid = message["session_id"]
        self._ended.pop(sid, None)
        fields = describe_fields(message)
        old = self._sessions.get(sid)
        session = _Session(fields, True, self.clock())
        if old is not None:  # its events came first (a peer's): keep what they taught
            for name in ("subscribers", "ring", "ring_bytes", "alerts", "open_ids", "open"):
                setattr(session, name, getattr(old, name))
            session.state.update((p, s) for p, s in old.state.items() if p in session.state and s is not None)
        self._sessions[sid] = session
        infos = message.get("infos")
        if not isinstance(infos, dict):  # a peer that sends the first party's info only
            infos = {next(iter(session.state)): message["info"]} if isinstance(message.get("info"), dict) else {}
        for info in infos.values():
            text = encode(info)
            session.remember(text)
            self._to_subscribers(session, text)
        self._delta({"type": "session_started", "session": session.as_state(), "info": infos})

    def _ended_session(self, message: dict) -> None:
        sid = message["session_id"]
        session = self._sessions.pop(sid, None)
        self._forget(sid)
        if session is not None:
            for box in session.subscribers:
                self._subscriptions.get(box, set()).discard(sid)
        self._delta({"type": "session_ended", "session_id": sid, "summary": message.get("summary")})

    def _forget(self, sid: str) -> None:
        self._ended[sid] = None
        while len(self._ended) > KEEP_ENDED:
            self._ended.popitem(last=False)
        self._changed.pop(sid, None)
        self._alerts_changed.discard(sid)

    def _alert(self, message: dict) -> None:
        alert = message["alert"]
        session = self._track(alert["session_id"])
        if session is not None:
            session.alerts += 1
            if alert.get("state", "open") == "open" and alert["id"] not in session.open_ids:
                self._alert_order += 1
                session.open_ids.add(alert["id"])
                session.open[alert["id"]] = (self._alert_order, alert)
                while len(session.open) > KEEP_OPEN_ALERTS:
                    session.open.popitem(last=False)
            self._alerts_changed.add(alert["session_id"])
        self._delta(message)

    def _acknowledged(self, message: dict) -> None:
        alert = message["alert"]
        session = self._sessions.get(alert.get("session_id"))
        if session is not None and alert.get("id") in session.open_ids:
            session.open_ids.discard(alert["id"])
            session.open.pop(alert["id"], None)
            self._alerts_changed.add(alert["session_id"])
        self._delta(message)  # also for an ended session's alert: alert queues list those too

    def _event(self, message: dict) -> None:
        session = self._track(message["session_id"])
        if session is None:  # a late message of an ended session
            return
        text = encode(message)
        session.remember(text)
        self._to_subscribers(session, text)
        if message.get("type") == "window":
            party = message.get("party") or WHOLE_SESSION
            state = party_state(message.get("dominant"), message.get("dominant_score"), message.get("end"))
            if session.state.get(party) != state:
                session.state[party] = state
                self._changed.setdefault(message["session_id"], set()).add(party)

    def _track(self, sid: str) -> _Session | None:
        """The session's record, made from its first message where its start was not seen; None once it ended."""
        session = self._sessions.get(sid)
        if session is None and sid not in self._ended:
            session = self._sessions[sid] = _Session(describe_fields({"session_id": sid}), False, self.clock())
        if session is not None:
            session.seen = self.clock()
        return session

    # -- the digest --
    def tick(self) -> None:
        """Send held deltas as one `batch`, then one `digest` of the sessions whose state or alerts changed."""
        changed, self._changed = self._changed, {}
        alerts, self._alerts_changed = self._alerts_changed, set()
        sessions, size = {}, 0
        for sid in list(changed) + [s for s in alerts if s not in changed]:
            session = self._sessions.get(sid)
            if session is None:
                continue
            if size > DIGEST_BYTES:  # the rest waits for the next digest (a later change merges into it)
                if sid in changed:
                    self._changed.setdefault(sid, set()).update(changed[sid])
                if sid in alerts:
                    self._alerts_changed.add(sid)
                continue
            entry: dict = {}
            parties = changed.get(sid)
            if parties:
                entry["s"] = {p: [s["emotion"], s["score"], s["time"]] for p in parties
                              if (s := session.state.get(p)) is not None}  # fmt: skip
            if sid in alerts:
                entry["a"], entry["o"] = session.alerts, len(session.open_ids)
            sessions[sid] = entry
            size += len(sid) + len(json.dumps(entry, separators=(",", ":"))) + 4
        digest = encode({"type": "digest", "sessions": sessions}, compact=True) if sessions and self.outboxes else ""
        if self._held:  # the batch takes what the second's byte budget leaves beside the digest,
            # and at most half of the smallest monitor's queue (--max-queue-bytes), so it never overflows one
            room = min((b.max_bytes for b in self.outboxes if getattr(b, "max_bytes", None)), default=2 * TICK_BYTES)
            self._send_batch(min(room // 2, max(MIN_BATCH_BYTES, TICK_BYTES - len(digest))))
        if digest:
            self._send_text(digest)
        if self.clock() - self._last_prune >= PRUNE_SECONDS:
            self._prune()

    def _prune(self) -> None:
        """Sessions known only from their events, not live anywhere for PRUNE_SECONDS, ended unseen."""
        now = self._last_prune = self.clock()
        stale = [sid for sid, s in self._sessions.items() if now - s.seen >= PRUNE_SECONDS]
        if not stale:
            return
        live = {d.get("session_id") for d in self.live()}
        for sid in stale:
            if sid not in live:
                self._ended_session({"type": "session_ended", "session_id": sid, "summary": None})

    async def run(self) -> None:
        """Digest once a second until cancelled."""
        while True:
            await asyncio.sleep(DIGEST_SECONDS)
            try:
                self.tick()
            except Exception:  # a digest must never stop the next ones
                log.exception("monitor feed: digest failed")

    def start(self) -> None:
        """Start the digests on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="monitor-digest")

    async def stop(self) -> None:
        """Stop the digests."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- sending --
    def _delta(self, message: dict) -> None:
        """A session start or end, an alert or acknowledgement: now, unless IMMEDIATE_PER_SECOND went out in
        the last second or others wait (order is kept); then with the next tick's batch."""
        if not self.outboxes:
            return
        now = self.clock()
        while self._sent_at and now - self._sent_at[0] >= DIGEST_SECONDS:
            self._sent_at.popleft()
        if self._held or len(self._sent_at) >= IMMEDIATE_PER_SECOND:
            text = encode(message)
            self._held.append(text)
            self._held_bytes += len(text)
            if self._held_bytes > MAX_HELD_BYTES:  # a flood of starts and alerts: begin again from the state
                self._held.clear()
                self._held_bytes = 0
                self._send_text(encode(self.snapshot()))  # (counted: a monitor that cannot take it is too slow)
            return
        self._sent_at.append(now)
        self._send_all(message)

    def _send_batch(self, limit: int) -> None:
        """The oldest held deltas, up to `limit` bytes of them (at least one), as one `batch` message."""
        texts, size = [], 0
        while self._held and (not texts or size + len(self._held[0]) <= limit):
            text = self._held.popleft()
            texts.append(text)
            size += len(text) + 2
        self._held_bytes -= size - 2 * len(texts)
        if self.outboxes:
            self._send_text('{"type": "batch", "messages": [%s]}' % ", ".join(texts))

    def _send_all(self, message: dict, compact: bool = False) -> None:
        self._send_text(encode(message, compact))

    def _send_text(self, text: str) -> None:
        for box in list(self.outboxes):
            box.put_text(text)
            self._check(box)

    def _to_subscribers(self, session: _Session, text: str) -> None:
        for box in list(session.subscribers):
            box.put_text(text)
            self._check(box)

    def _reply(self, box, message: dict) -> None:
        box.put_text(encode(message))
        self._check(box)

    def _check(self, box) -> None:
        if box.broken:  # it stopped reading and is being closed
            self.disconnect(box)


__all__ = ["FEED_FIELDS", "FEED_ONLY", "MAX_SUBSCRIPTIONS", "MonitorFeed", "RING_MESSAGES", "describe_fields",
           "is_replay", "party_state"]  # fmt: skip
