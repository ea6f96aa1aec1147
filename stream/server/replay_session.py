"""Replay sessions: a recording's events played back as a live session, without audio or a model.

`/ws/replay` (stream.protocol.replay) opens one through the server's own `open_session`, so a
replay is registered, listed, recorded and fanned out like any live session — the catalog, the
monitor feed (snapshot, digests, alerts through the session's AlertCounter), MQTT and the
metrics see it — and `end_session` ends it. What differs is marked everywhere, so a replay is
never taken for a live call:

- its id is fresh, `replay-<original id>-<n>`, so the original recording is never touched;
- its source is "replay"; its `info` (session.json, `session_started`) and `describe()` carry
  `replay: true` and `replay_of`, and its model fields are the recording's, not this server's;
- every message it sends into the fan-out (its events; MQTT payloads) and to its client carries
  `"replay": true`;
- its events are published and recorded as the bodies the client sent (checked by the protocol
  against their types), never re-encoded: they equal the recording's;
- its recording keeps events only, never audio (`audio_kept: false`), and its duration is the
  stream time of its last event.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from typing import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from models.errors import ConfigError
from stream.engine.events import Info, to_dict
from stream.engine.parties import tagged
from stream.protocol.native import ProtocolError, SESSION_ID_RE, event_message, ready
from stream.protocol.wire import OpenReplay

from .session import RecordingFailed, SessionHooks, SessionSpec, describe

MARK = {"replay": True}  # added to every message a replay session sends
ID_PREFIX = "replay-"
_ORIGINAL_CHARS = 64 - len(ID_PREFIX) - 8  # room for "-<n>" up to seven digits
_next_number: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # server -> {original: next n}


def marked(message: dict) -> dict:
    """A message of a replay session, marked as such."""
    return {**message, **MARK}


@dataclass(frozen=True)
class Replay:
    """What `EmostreamServer.open_session` needs to open a replay session instead of a live one."""

    of: str  # the recorded session's id
    infos: dict  # party (None when unsplit) -> the recording's Info event
    source: str | None = None  # the recording's own source
    started_at: str | None = None  # when the recorded session started
    echo: bool = True  # the client gets the events back

    def info(self, live: dict) -> dict:
        """The fields of a session's `info` (`live`: a live session's) a replay changes: the recording's model,
        its marks, and events only (or nothing, where the server records nothing)."""
        first = next(iter(self.infos.values()))
        return {
            "profile": (first.profile or {}).get("name"),
            "model_id": first.model_id,
            "random_weights": first.random_weights,
            "planted": first.planted,
            "precision": first.precision,
            "parameters": dict(first.parameters),
            "record": "none" if live.get("record") == "none" else "events",
            "replay": True,
            "replay_of": self.of,
            "replay_source": self.source,
            "replay_started_at": self.started_at,
        }

    def outputs(self, outbox, fanout) -> tuple:
        """(client sink, fan-out) of the session's SessionOutput: the client's only with `echo`."""
        return (outbox.put if outbox is not None and self.echo else None), fanout

    def session(self, spec: SessionSpec, recorder, hooks: SessionHooks, output) -> ReplaySession:
        """The session object `open_session` registers; `output`: its SessionOutput (marked messages go to `messages`)."""
        return ReplaySession(spec, self, recorder, hooks, output.messages)


def replay_id(server, original: str) -> str:
    """A fresh id for a replay of `original`: `replay-<original>-<n>`, free live and on disk."""
    numbers = _next_number.setdefault(server, {})
    base = f"{ID_PREFIX}{original[:_ORIGINAL_CHARS]}"
    n = numbers.get(base, 1)
    live = server.live_ids()
    while f"{base}-{n}" in live or (server.settings.recordings / f"{base}-{n}").exists():
        n += 1
    numbers[base] = n + 1
    sid = f"{base}-{n}"
    assert SESSION_ID_RE.fullmatch(sid), sid
    return sid


def start_replay(server, action: OpenReplay, outbox) -> ReplaySession:
    """Open the replay session `action` asks for on `server` (refused with `server_full` like a stream)."""
    limit = server.settings.max_sessions
    if len(server.sessions) >= limit:
        server.metrics.sessions_refused.labels("max_sessions").inc()
        raise ProtocolError("server_full", f"server full: {limit} sessions")
    start = action.start
    replay = Replay(action.replay_of, dict(action.infos), action.source, action.started_at, action.echo)
    for attempt in range(3):
        spec = SessionSpec(replay_id(server, action.replay_of), start.sample_rate, start.encoding, start.channels,
                           start.context, dict(start.metadata), "replay", action.parties)
        try:
            return server.open_session(spec, outbox, "int16", replay=replay)
        except ConfigError:  # another server sharing the recordings took that id first: the next one
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _Party:
    """One party of a replay session: its counts, its latest window, how far its events reached."""

    __slots__ = ("counts", "latest", "name", "seconds")

    def __init__(self, name: str | None):
        self.name = name
        self.counts: Counter[str] = Counter()
        self.latest: dict | None = None  # the latest window's body
        self.seconds = 0.0

    def take(self, body: dict) -> None:
        kind = body["type"]
        self.counts[kind] += 1
        if kind == "window":
            self.latest = body
        end = body.get("confirmed_at" if kind == "transition" else "end")
        if end is not None and end > self.seconds:
            self.seconds = float(end)

    def describe(self) -> dict:
        return {"duration_seconds": round(self.seconds, 3), "events": dict(self.counts),
                "current_emotion": self.latest["dominant"] if self.latest else None}

    def state(self) -> dict | None:
        w = self.latest
        return None if w is None else {"emotion": w["dominant"], "score": w["dominant_score"], "time": w["end"]}


class ReplaySession:
    """A recording's events published and recorded as one live session's, in their recorded order.

    It has what the server and its sockets use of a `LiveSession` — `spec`, `info_events`,
    `received_seconds`, `finish`, `close`, `summary`, `describe`, `started_at` — and `play`
    instead of `feed`; `replay` is True (what `end_session` marks `session_ended` by).
    """

    replay = True

    def __init__(self, spec: SessionSpec, replay: Replay, recorder=None, hooks: SessionHooks | None = None,
                 publish: Callable[[list[dict]], None] | None = None):
        """`publish`: where its event messages go (its SessionOutput's `messages`); `hooks.failed` hears of a
        recording that stopped."""
        self.spec = spec
        self.publish = publish
        self.replay_of = replay.of
        self.recorder = recorder
        self.hooks = hooks or SessionHooks()
        self.started = time.time()
        self.counts: Counter[str] = Counter()
        self.parties = [_Party(name) for name in (spec.parties or (None,))]
        self._party = {p.name: p for p in self.parties}
        self._failed: RecordingFailed | None = None
        self._closed = False
        self._samples = {p.name: 0 for p in self.parties}  # counted in the events-only recording
        self.info_events: dict[str | None, Info] = {p.name: replay.infos[p.name] for p in self.parties}
        self.info_event = self.info_events[self.parties[0].name]
        for name, info in self.info_events.items():
            self._record(tagged(to_dict(info), name))
            self.counts["info"] += 1
            self._party[name].counts["info"] += 1

    @property
    def received_seconds(self) -> float:
        """Stream seconds replayed so far: the latest end among the events (the longest party's)."""
        return max(p.seconds for p in self.parties)

    @property
    def started_at(self) -> str:
        """When the replay started, ISO 8601 UTC."""
        return datetime.fromtimestamp(self.started, timezone.utc).isoformat()

    def opening(self) -> list[dict]:
        """What the client gets once the session is open: `ready`, then each party's `info` event."""
        sid = self.spec.session_id
        first = self.info_event
        messages = [marked({**ready(sid, dict(first.parameters), self.spec.parties), "replay_of": self.replay_of})]
        messages += [marked(event_message(sid, info, name)) for name, info in self.info_events.items()]
        return messages

    def play(self, events) -> None:
        """Publish recorded ((party, event body), ...) in order: each recorded, counted, then sent marked."""
        if self._failed is not None:
            raise self._failed
        sid = self.spec.session_id
        messages = []
        for party, body in events:
            if party not in self._party:  # the protocol checked it: a bug if it happens
                raise ValueError(f"session {sid!r} has no party {party!r}")
            self._record(body)
            self.counts[body["type"]] += 1
            self._party[party].take(body)
            message = {"type": body["type"], "session_id": sid}  # as `event_message` makes it, marked
            message.update(body)
            message.update(MARK)
            messages.append(message)
        if self.publish is not None:
            self.publish(messages)
        self._count_duration()
        if self._failed is not None:  # the events still reached the live feed; the session ends
            raise self._failed

    def _record(self, body: dict) -> None:
        if self.recorder is not None and self._failed is None:
            try:
                self.recorder.write_event(body)
            except (OSError, ValueError) as exc:
                self._failed = RecordingFailed(f"the recording stopped: {exc}")
                if self.hooks.failed:
                    self.hooks.failed(self, self._failed)

    def _count_duration(self) -> None:
        """The events-only recording's duration follows the replayed stream time."""
        if self.recorder is None or self._failed is not None:
            return
        for p in self.parties:
            samples = round(p.seconds * self.spec.sample_rate)
            if samples > self._samples[p.name]:
                try:
                    self.recorder.count_samples(samples - self._samples[p.name], p.name)
                except (OSError, ValueError) as exc:
                    self._failed = RecordingFailed(f"the recording stopped: {exc}")
                    return
                self._samples[p.name] = samples

    async def finish(self) -> dict:
        """End of the replay: close the recording and return the summary."""
        if self._failed is not None:
            raise self._failed
        return self.close()

    def close(self, reason: str = "complete") -> dict:
        """Close the recording (also after errors) and return the session summary."""
        summary = self.summary(reason)
        if not self._closed and self.recorder is not None:
            self.recorder.close(summary, status=reason)
        self._closed = True
        return summary

    def summary(self, reason: str = "complete") -> dict:
        """Counts and stream duration of the replay so far, as a live session's summary, marked."""
        body = {
            "session_id": self.spec.session_id,
            "status": reason,
            "duration_seconds": round(self.received_seconds, 3),
            "events": dict(self.counts),
            "overloaded": False,
            "replay": True,
            "replay_of": self.replay_of,
        }
        if self.spec.parties:
            body["parties"] = {p.name: p.describe() for p in self.parties}
        return body

    def describe(self) -> dict:
        """The replay as dashboards list it (as `LiveSession.describe`), with `replay: true` and `replay_of`."""
        return {**describe(self), "replay": True}


__all__ = ["MARK", "Replay", "ReplaySession", "marked", "replay_id", "start_replay"]
