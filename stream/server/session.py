"""A live session: one stream's analyzer wired to the shared scheduler, its recording and sinks.

The session is the glue between transport and engine and knows nothing of sockets: the server
feeds it decoded samples and receives events through the `publish` callback.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from models.errors import EmostreamError
from models.frames import SAMPLE_RATE
from models.scoring import Scorer
from stream.decision.fusion import Centroids
from stream.decision.profiles import Profile
from stream.engine.analyzer import StreamCore
from stream.engine.config import AnalyzerConfig
from stream.engine.events import Event, Window, to_dict
from stream.engine.parties import WHOLE_SESSION, tagged
from stream.engine.jobs import EvidenceJob, ModelJob

from .monitor_feed import is_replay
from .parties import PartyStream, split_frames
from .scheduler import Overloaded
from .scheduling import Scheduler


class RecordingFailed(EmostreamError):
    """The session's recording could not be written (a full disk...): the session must end."""

    code = "recording_failed"


@dataclass(frozen=True)
class SessionSpec:
    """Who and what a session is: fixed at start."""

    session_id: str
    sample_rate: int
    encoding: str
    channels: int = 1
    context: str | None = None
    metadata: dict = field(default_factory=dict)
    source: str = "native"  # native | twilio
    parties: tuple[str, ...] = ()  # one analysis per named party (split channels, Twilio tracks); (): the mix


@dataclass
class SessionHooks:
    """Where a session's output goes (all optional)."""

    publish: Callable[["LiveSession", list[Event], str | None], None] | None = None  # (session, events, party)
    overload: Callable[["LiveSession", int], None] | None = None  # queue depth
    failed: Callable[["LiveSession", BaseException], None] | None = None
    latency: Callable[[float], None] | None = None  # seconds from audio arrival to its window


class LiveSession:
    """One live stream's analysis, scored through the shared batching scheduler."""

    def __init__(
        self,
        spec: SessionSpec,
        config: AnalyzerConfig,
        scorer: Scorer,
        scheduler: Scheduler,
        recorder=None,
        hooks: SessionHooks | None = None,
        max_backlog_seconds: float = 30.0,
        profile: Profile | None = None,
        centroids: Centroids | None = None,
    ):
        """Start a session; `recorder` (a SessionRecorder) keeps its audio and events.

        `profile` is the domain profile its context selected; `centroids` the fear/disgust centres.
        """
        self.spec = spec
        self.parties = [
            PartyStream(
                name,
                StreamCore(
                    config, scorer.labels, scorer.model_id, scorer.random_weights, profile, centroids,
                    planted=scorer.planted, precision=scorer.precision,
                ),
            )
            for name in (spec.parties or (None,))
        ]
        self._party = {p.name: p for p in self.parties}
        self.core = self.parties[0].core  # every party's core has the same config
        self.scheduler = scheduler
        self.recorder = recorder
        self.hooks = hooks or SessionHooks()
        self.max_backlog_seconds = max_backlog_seconds
        self.started = time.time()
        self.counts: Counter[str] = Counter()
        self._backlog: deque[tuple[PartyStream, ModelJob]] = deque()
        self._outstanding: set[asyncio.Future] = set()
        self._overloaded = False
        self._failed: BaseException | None = None
        self._closed = False
        # Each party's `info` event describes its analysis up front.
        self.info_events = {party.name: events[0] for party, events in self._take()}
        self.info_event = self.info_events[self.parties[0].name]

    @property
    def received_seconds(self) -> float:
        """Seconds of audio received so far (the longest party's)."""
        return max(p.core.received_seconds for p in self.parties)

    def feed(self, samples: np.ndarray, party: str | None = None) -> None:
        """Take decoded client samples: record them, analyze them, queue their chunks.

        A split session takes (n, parties) frames, one column per party, or one party's mono
        samples with `party` (Twilio's tracks arrive apart); a session that is not split, mono.
        """
        if self._failed is not None:
            raise self._failed
        if party is not None:
            if party not in self._party or not self.spec.parties:
                raise ValueError(f"session {self.spec.session_id!r} has no party {party!r}")
            columns = {party: samples}
        elif self.spec.parties:
            columns = split_frames(samples, self.spec.parties)
        else:
            columns = {None: samples}
        now = time.monotonic()
        for name, column in columns.items():
            self._party[name].push(column, now)  # validates before anything is recorded
            if self.recorder is not None:
                try:
                    self.recorder.write_audio(column, name)
                except (OSError, ValueError) as exc:
                    self._fail(RecordingFailed(f"the recording stopped: {exc}"))
                    raise self._failed from None
        self._dispatch()

    def note(self, body: dict) -> None:
        """Record a message about the call itself (a pause, audio the platform dropped) among the events, as it comes."""
        if self.recorder is None or isinstance(self._failed, RecordingFailed):
            return
        try:
            self.recorder.write_event(body)
        except (OSError, ValueError) as exc:
            self._fail(RecordingFailed(f"the recording stopped: {exc}"))

    async def finish(self) -> dict:
        """End of stream: score what is left, publish the last events, close the recording."""
        for party in self.parties:
            party.core.finish()
        self._dispatch()
        while self._backlog or self._outstanding:
            if self._failed is not None:
                raise self._failed
            if self._outstanding:
                await asyncio.wait(list(self._outstanding))
            else:
                await asyncio.sleep(0.01)  # waiting for queue room
                self._dispatch()
        if self._failed is not None:
            raise self._failed
        self._deliver()
        return self.close()

    def close(self, reason: str = "complete") -> dict:
        """Close the recording (also after errors) and return the session summary."""
        summary = self.summary(reason)
        if not self._closed and self.recorder is not None:
            self.recorder.close(summary, status=reason)
        self._closed = True
        return summary

    @property
    def started_at(self) -> str:
        """When the session started, ISO 8601 UTC."""
        return datetime.fromtimestamp(self.started, timezone.utc).isoformat()

    def describe(self) -> dict:
        """A live session as dashboards list it: who it is, how far it got, where each party stands.

        It carries what a monitor's SessionState needs (docs/monitor.md), so a peer's monitors
        can list it too: `profile`, the model's flags, `replay`, and `state` per party ("all"
        when unsplit): the latest window's emotion, score and end, or None before one.
        """
        return describe(self)

    def summary(self, reason: str = "complete") -> dict:
        """Counts and duration of the session so far; a split session's also per party."""
        body = {
            "session_id": self.spec.session_id,
            "status": reason,
            "duration_seconds": round(self.received_seconds, 3),
            "events": dict(self.counts),
            "overloaded": self._overloaded,
        }
        if self.spec.parties:
            body["parties"] = {p.name: p.describe() for p in self.parties}
        return body

    # ---- model side -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for party in self.parties:
            for job in party.core.pending_jobs():
                if isinstance(job, EvidenceJob):  # CPU-only measurements: the scheduler's measuring pool
                    self._track(party, job, self.scheduler.measure(job))
                else:
                    self._backlog.append((party, job))
        while self._backlog:
            try:
                future = self.scheduler.submit(self._backlog[0][1])
            except Overloaded:
                self._on_overload()
                return
            self._track(*self._backlog.popleft(), future)

    def _track(self, party: PartyStream, job, future: asyncio.Future) -> None:
        self._outstanding.add(future)
        future.add_done_callback(lambda f, job=job: self._done(party, job, f))

    def _on_overload(self) -> None:
        self.scheduler.when_capacity(self._dispatch)
        if not self._overloaded and self.hooks.overload:
            self.hooks.overload(self, self.scheduler.depth)
        self._overloaded = True
        backlog = sum(len(job.audio) for _, job in self._backlog) / SAMPLE_RATE
        if backlog > self.max_backlog_seconds:
            self._fail(Overloaded(f"{backlog:.1f} s of audio waiting for the model; limit {self.max_backlog_seconds:g} s"))

    def _done(self, party: PartyStream, job, future: asyncio.Future) -> None:
        self._outstanding.discard(future)
        if future.cancelled() or self._failed is not None:
            return
        if future.exception() is not None:
            self._fail(future.exception())
            return
        party.core.complete(job, future.result())
        self._dispatch()  # a segment's last chunk starts its decision checks
        self._deliver()

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
            if self.hooks.failed:
                self.hooks.failed(self, exc)

    # ---- events -----------------------------------------------------------------------------
    def _take(self) -> list[tuple[PartyStream, list[Event]]]:
        """Each party's new events, counted and recorded (tagged with the party when split)."""
        taken = []
        for party in self.parties:
            events = party.take_events()
            for event in events:
                self.counts[event.type] += 1
                if self.recorder is not None and not isinstance(self._failed, RecordingFailed):
                    body = tagged(to_dict(event), party.name)
                    try:
                        self.recorder.write_event(body)
                    except (OSError, ValueError) as exc:  # the events still reach the live feed
                        self._fail(RecordingFailed(f"the recording stopped: {exc}"))
            taken.append((party, events))
        return taken

    def _deliver(self) -> None:
        for party, events in self._take():
            if not events:
                continue
            if self.hooks.latency:
                now = time.monotonic()
                for event in events:
                    if isinstance(event, Window):
                        self.hooks.latency(now - party.arrival_of(round(event.end * SAMPLE_RATE)))
            if self.hooks.publish:
                self.hooks.publish(self, events, party.name)


def describe(session) -> dict:
    """What `describe()` gives for any registered session (live or replayed): summary, spec, model flags, state."""
    info = session.info_event
    spec = session.spec
    return {
        **session.summary("live"),
        "source": spec.source,
        "started_at": session.started_at,
        "sample_rate": spec.sample_rate,
        "context": spec.context,
        "metadata": spec.metadata,
        "profile": (info.profile or {}).get("name"),
        "random_weights": info.random_weights,
        "planted": info.planted,
        "replay": is_replay({"metadata": spec.metadata, "source": spec.source}),
        "state": {p.name or WHOLE_SESSION: p.state() for p in session.parties},
    }
