"""The ingress side of the Scorer deployment: the session's scheduler interface over a Serve handle.

`LiveSession` talks to a scheduler through `submit`, `measure`, `when_capacity`, `depth`,
`saturated`, `start` and `stop`; `RemoteScheduler` offers the same, so the engine and the session
do not know whether the model is in this process or on another machine. Model jobs go to the
Scorer deployment (which batches them with every other replica's); evidence measurements stay
here on a CPU thread, beside the audio they measure.

A scorer replica that dies (or is being replaced) fails its requests with an actor error; those
jobs are sent again until `retry_seconds` pass, so a replica restart loses no window.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from models.scoring import FrameOutput
from stream.engine.jobs import ChunkJob, FocusJob, ModelJob
from stream.server.scheduler import BACKGROUND, LIVE, BoundedScheduler, Overloaded

from .scorer import ChunkRequest, ChunkResult

log = logging.getLogger("emostream.cluster")

# Failures of the transport or of a replica, never of the job itself: worth sending again.
RETRYABLE = (RayActorError, ActorUnavailableError, BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError)


def chunk_output(job: ChunkJob, result: ChunkResult, n_labels: int) -> FrameOutput:
    """A FrameOutput that `StreamCore.complete` reads exactly as it reads the model's own.

    The core slices rows [skip, skip + n_owned): the logits get `skip` rows of padding in front,
    and the features a single float64 row at `skip` holding the owned frames' sum (the slice past
    it is empty, so the core's sum is that row, bit for bit).
    """
    logits = np.concatenate([np.zeros((job.skip_frames, n_labels), np.float32), result.logits])
    features = np.zeros((job.skip_frames + 1, len(result.feature_sum)), np.float64)
    features[job.skip_frames] = result.feature_sum
    return FrameOutput(logits, features)


class RemoteScheduler(BoundedScheduler):
    """Model jobs to the Scorer deployment, evidence on a local thread; bounded per ingress replica."""

    def __init__(
        self,
        scorer,
        n_labels: int,
        embed_dim: int,
        max_pending: float = 180.0,
        retry_seconds: float = 120.0,
        measure_processes: int = 0,
    ):
        """`scorer`: a DeploymentHandle to ScorerDeployment; at most `max_pending` seconds of audio in flight from here.

        `measure_processes` worker processes measure the decision layer's evidence, as in the
        in-process scheduler (0: one thread of this replica)."""
        super().__init__(max_pending, measure_processes)
        self.handle = scorer
        self.n_labels = n_labels
        self.embed_dim = embed_dim
        self.retry_seconds = retry_seconds
        self._inflight: set[asyncio.Task] = set()
        self.retries = 0
        self.completed = 0

    @property
    def depth(self) -> int:
        """Jobs of this replica's sessions waiting for the model."""
        return len(self._inflight)

    def start(self) -> None:
        """Nothing to start: the Scorer deployment runs on its own."""

    async def stop(self) -> None:
        """Cancel jobs still in flight (their sessions are closing) and stop measuring."""
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        self._measurer.shutdown()

    def submit(self, job: ModelJob, priority: int = LIVE) -> asyncio.Future:
        """Send a job to the Scorer; the future resolves to a FrameOutput. Raises Overloaded when full.

        BACKGROUND jobs (a /api/predict file's pieces) never count toward `saturated`; the Scorer
        deployment's own queue orders them with everyone's.
        """
        live = priority != BACKGROUND
        if live:
            self._admit(job)
        future = asyncio.get_running_loop().create_future()
        if live:
            future.add_done_callback(lambda _, n=len(job.audio): self._release(n))
        task = asyncio.get_running_loop().create_task(self._run(job, future))
        self._inflight.add(task)
        task.add_done_callback(self._finished)
        return future

    def _finished(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._notify_capacity()

    async def _run(self, job: ModelJob, future: asyncio.Future) -> None:
        try:
            output = await self._score(job)
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(Overloaded("server shutting down"))
            raise
        except Exception as exc:  # the job's own failure: its session fails, no other
            if not future.done():
                future.set_exception(exc)
            return
        self.completed += 1
        if not future.done():
            future.set_result(output)

    async def _score(self, job: ModelJob) -> FrameOutput:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                if isinstance(job, ChunkJob):
                    result = await self.handle.score_chunks.remote(ChunkRequest(job.audio, job.skip_frames, job.n_owned))
                    return chunk_output(job, result, self.n_labels)
                if isinstance(job, FocusJob):
                    logits = await self.handle.score_crops.remote(job.audio)
                    return FrameOutput(logits, np.zeros((0, self.embed_dim), np.float32))
                # Any other job with `audio` (a /api/predict file's piece): the whole output.
                return (await self.handle.score.remote([job.audio]))[0]
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise Overloaded(f"no scorer replica answered for {self.retry_seconds:g} s: {exc}") from exc
                self.retries += 1
                log.warning("scorer unavailable (%s); retrying a %s in %.1f s", type(exc).__name__, type(job).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
