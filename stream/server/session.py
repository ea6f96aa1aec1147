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

from models.frames import SAMPLE_RATE
from models.scoring import Scorer
from stream.decision.fusion import Centroids
from stream.decision.profiles import Profile
from stream.engine.analyzer import StreamCore
from stream.engine.config import AnalyzerConfig
from stream.engine.events import Event, Window, to_dict
from stream.engine.jobs import EvidenceJob, ModelJob

from .scheduler import BatchScheduler, Overloaded


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


@dataclass
class SessionHooks:
    """Where a session's output goes (all optional)."""

    publish: Callable[["LiveSession", list[Event]], None] | None = None
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
        scheduler: BatchScheduler,
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
        self.core = StreamCore(
            config, scorer.labels, scorer.model_id, scorer.random_weights, profile, centroids,
            precision=scorer.precision,
        )
        self.scheduler = scheduler
        self.recorder = recorder
        self.hooks = hooks or SessionHooks()
        self.max_backlog_seconds = max_backlog_seconds
        self.started = time.time()
        self.counts: Counter[str] = Counter()
        self._backlog: deque[ModelJob] = deque()
        self._outstanding: set[asyncio.Future] = set()
        self._arrivals: deque[tuple[int, float]] = deque()  # (16 kHz samples received, when)
        self._overloaded = False
        self._failed: BaseException | None = None
        self._closed = False
        self.info_event = self._take()[0]  # the `info` event describes the session up front

    @property
    def received_seconds(self) -> float:
        """Seconds of audio received so far."""
        return self.core.received_seconds

    def feed(self, samples: np.ndarray) -> None:
        """Take decoded client samples: record them, analyze them, queue their chunks."""
        if self._failed is not None:
            raise self._failed
        self.core.push(samples)  # validates before anything is recorded
        if self.recorder is not None:
            self.recorder.write_audio(samples)
        self._arrivals.append((round(self.core.received_seconds * SAMPLE_RATE), time.monotonic()))
        self._dispatch()

    async def finish(self) -> dict:
        """End of stream: score what is left, publish the last events, close the recording."""
        self.core.finish()
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

    def describe(self) -> dict:
        """A live session as dashboards list it: who it is and how far it got."""
        started = datetime.fromtimestamp(self.started, timezone.utc).isoformat()
        return {
            **self.summary("live"),
            "source": self.spec.source,
            "started_at": started,
            "sample_rate": self.spec.sample_rate,
            "context": self.spec.context,
            "metadata": self.spec.metadata,
        }

    def summary(self, reason: str = "complete") -> dict:
        """Counts and duration of the session so far."""
        return {
            "session_id": self.spec.session_id,
            "status": reason,
            "duration_seconds": round(self.received_seconds, 3),
            "events": dict(self.counts),
            "overloaded": self._overloaded,
        }

    # ---- model side -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for job in self.core.pending_jobs():
            if isinstance(job, EvidenceJob):  # CPU-only measurements: the scheduler's measuring pool
                self._track(job, self.scheduler.measure(job))
            else:
                self._backlog.append(job)
        while self._backlog:
            try:
                future = self.scheduler.submit(self._backlog[0])
            except Overloaded:
                self._on_overload()
                return
            self._track(self._backlog.popleft(), future)

    def _track(self, job, future: asyncio.Future) -> None:
        self._outstanding.add(future)
        future.add_done_callback(lambda f, job=job: self._done(job, f))

    def _on_overload(self) -> None:
        self.scheduler.when_capacity(self._dispatch)
        if not self._overloaded and self.hooks.overload:
            self.hooks.overload(self, self.scheduler.depth)
        self._overloaded = True
        backlog = sum(len(job.audio) for job in self._backlog) / SAMPLE_RATE
        if backlog > self.max_backlog_seconds:
            self._fail(Overloaded(f"{backlog:.1f} s of audio waiting for the model; limit {self.max_backlog_seconds:g} s"))

    def _done(self, job, future: asyncio.Future) -> None:
        self._outstanding.discard(future)
        if future.cancelled() or self._failed is not None:
            return
        if future.exception() is not None:
            self._fail(future.exception())
            return
        self.core.complete(job, future.result())
        self._dispatch()  # a segment's last chunk starts its decision checks
        self._deliver()

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
            if self.hooks.failed:
                self.hooks.failed(self, exc)

    # ---- events -----------------------------------------------------------------------------
    def _take(self) -> list[Event]:
        events = self.core.take_events()
        for event in events:
            self.counts[event.type] += 1
            if self.recorder is not None:
                self.recorder.write_event(to_dict(event))
        return events

    def _deliver(self) -> None:
        events = self._take()
        if not events:
            return
        if self.hooks.latency:
            now = time.monotonic()
            for event in events:
                if isinstance(event, Window):
                    self.hooks.latency(now - self._arrival_of(round(event.end * SAMPLE_RATE)))
        if self.hooks.publish:
            self.hooks.publish(self, events)

    def _arrival_of(self, sample: int) -> float:
        """When the audio containing `sample` arrived (older arrivals are forgotten)."""
        while len(self._arrivals) > 1 and self._arrivals[0][0] < sample:
            self._arrivals.popleft()
        return self._arrivals[0][1]
