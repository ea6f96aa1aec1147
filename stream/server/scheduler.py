"""The batching scheduler: it owns the model and serves every live stream's chunks in batches.

Sessions submit `ModelJob`s (chunks and focus crops); the scheduler collects them into one queue,
forms a batch when it reaches `max_batch` jobs or the oldest job has waited `max_wait` seconds (with `adaptive_wait`, or
as soon as jobs stop arriving for a quarter of that), runs one forward pass in a worker thread
(torch releases the GIL) and resolves each job's future. The queue is bounded in seconds of
audio: `submit` raises `Overloaded` instead of letting memory and latency grow without limit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from models.errors import EmostreamError
from models.frames import SAMPLE_RATE
from models.scoring import Scorer
from stream.engine.jobs import EvidenceJob, ModelJob

from .measuring import Measurer
from .scheduling import BACKGROUND, LIVE  # noqa: F401  (re-exported: the priorities belong to the protocol)


class Overloaded(EmostreamError):
    """Analysis cannot keep up: the model's queue is full, or a session's backlog passed its limit."""

    code = "overload"


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass did (for metrics)."""

    size: int
    audio_seconds: float
    seconds: float
    cpu_seconds: float = 0.0  # CPU time of the thread that ran it (with torch's threads at 1: all of it)


class BoundedScheduler:
    """What every `Scheduler` (stream.server.scheduling) shares, wherever its model runs: the bound
    on live audio waiting for the model, the measuring pool and the listeners waiting for room.

    `BatchScheduler` (the model in this process) and `stream.cluster.RemoteScheduler` (the model
    behind a Ray Serve handle) differ only in where their jobs go.
    """

    def __init__(self, max_pending: float, measure_processes: int):
        self.max_pending = max_pending  # seconds of live audio
        self._pending_samples = 0  # live jobs' audio not yet scored, 16 kHz samples
        self._capacity_listeners: set[Callable[[], None]] = set()
        # The decision layer's measurements (quality, pitch) run in worker processes, never on
        # the event loop or beside the model's launching thread (stream.server.measuring).
        self._measurer = Measurer(measure_processes)

    @property
    def pending_seconds(self) -> float:
        """Seconds of live audio waiting for the model (context included: what the model will run)."""
        return self._pending_samples / SAMPLE_RATE

    @property
    def saturated(self) -> bool:
        """True when no more live jobs are accepted."""
        return self.pending_seconds >= self.max_pending

    def measure(self, job: EvidenceJob) -> asyncio.Future:
        """Run a CPU-only `EvidenceJob` in the measuring pool; the future resolves to its Evidence."""
        return asyncio.wrap_future(self._measurer.submit(job))

    def when_capacity(self, listener: Callable[[], None]) -> None:
        """Call `listener` once after the next job leaves the queue."""
        self._capacity_listeners.add(listener)

    def _admit(self, job: ModelJob) -> None:
        """Count a live job's audio in; Overloaded when the bound is already reached."""
        if self.saturated:
            raise Overloaded(f"model queue full ({self.pending_seconds:.1f} s of audio waiting)")
        self._pending_samples += len(job.audio)

    def _release(self, samples: int) -> None:
        """Live audio that left the queue for the model."""
        self._pending_samples -= samples

    def _notify_capacity(self) -> None:
        """A job left: call (and forget) everyone waiting for room."""
        listeners, self._capacity_listeners = self._capacity_listeners, set()
        for listener in listeners:
            listener()


class BatchScheduler(BoundedScheduler):
    """One queue, one model, many streams (see module docstring)."""

    def __init__(
        self,
        scorer: Scorer,
        max_batch: int = 8,
        max_wait: float = 0.01,
        max_pending: float = 180.0,
        on_batch: Callable[[BatchStats], None] | None = None,
        measure_processes: int = 0,
        adaptive_wait: bool = False,
    ):
        """Serve `scorer` with batches of up to `max_batch`, holding at most `max_pending` seconds of audio.

        `measure_processes` worker processes run the decision layer's measurements (0: one
        thread of this process)."""
        super().__init__(max_pending, measure_processes)
        self.scorer = scorer
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.adaptive_wait = adaptive_wait
        self._on_batch = on_batch
        self._queue: list[tuple[ModelJob, asyncio.Future]] = []
        self._background: list[tuple[ModelJob, asyncio.Future]] = []  # run only when no live job waits
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batches = 0

    @property
    def depth(self) -> int:
        """Jobs waiting for the model."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batch-scheduler")

    async def stop(self) -> None:
        """Stop the loop; pending jobs fail with Overloaded."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for _, future in self._queue + self._background:
            if not future.done():
                future.set_exception(Overloaded("server shutting down"))
        self._queue.clear()
        self._background.clear()
        self._pending_samples = 0
        self._measurer.shutdown()

    def submit(self, job: ModelJob, priority: int = LIVE) -> asyncio.Future:
        """Queue a job; its future resolves to the model's FrameOutput. Raises Overloaded when full.

        BACKGROUND jobs wait while any LIVE job does and never count toward `saturated`; their
        submitters bound them (each /api/predict waits for one job at a time).
        """
        future = asyncio.get_running_loop().create_future()
        if priority == BACKGROUND:
            self._background.append((job, future))
            self._wakeup.set()
            return future
        self._admit(job)
        self._queue.append((job, future))
        self._wakeup.set()
        return future

    async def _loop(self) -> None:
        while True:
            if not self._queue and not self._background:
                self._wakeup.clear()
                await self._wakeup.wait()
            # Wait briefly for more streams' jobs unless the batch is already full; adaptive: only
            # while they keep coming (streams' chunks complete in bursts as their messages arrive).
            deadline = time.monotonic() + self.max_wait
            gap = self.max_wait / 4 if self.adaptive_wait else self.max_wait
            while self._queue and len(self._queue) < self.max_batch and time.monotonic() < deadline:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), min(gap, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
            await self._run(self._take_batch())
            self._notify_capacity()

    def _take_batch(self) -> list[tuple[ModelJob, asyncio.Future]]:
        """The oldest job and up to max_batch - 1 more of its kind, in queue order.

        A forward pass pads every item to the longest: a 0.3–0.8 s focus crop batched with 3 s
        chunks would cost a whole chunk, so crops only ride with crops.
        """
        if not self._queue:  # nothing live waits: one background job (they may be long)
            return [self._background.pop(0)]
        kind = type(self._queue[0][0])
        batch, rest = [], []
        for item in self._queue:
            (batch if len(batch) < self.max_batch and type(item[0]) is kind else rest).append(item)
        self._queue = rest
        self._release(sum(len(job.audio) for job, _ in batch))
        return batch

    def _forward(self, waveforms: list) -> tuple[list, float]:
        """One forward pass (in a worker thread) and the CPU time that thread spent on it."""
        started = time.thread_time()
        outputs = self.scorer.score(waveforms)
        return outputs, time.thread_time() - started

    async def _run(self, batch: list[tuple[ModelJob, asyncio.Future]]) -> None:
        started = time.perf_counter()
        try:
            outputs, cpu = await asyncio.to_thread(self._forward, [job.audio for job, _ in batch])
        except Exception as exc:  # one bad batch fails its jobs, never the scheduler
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), output in zip(batch, outputs):
            if not future.done():
                future.set_result(output)
        self.batches += 1
        if self._on_batch:
            self._on_batch(
                BatchStats(
                    size=len(batch),
                    audio_seconds=sum(len(job.audio) for job, _ in batch) / SAMPLE_RATE,
                    seconds=time.perf_counter() - started,
                    cpu_seconds=cpu,
                )
            )
