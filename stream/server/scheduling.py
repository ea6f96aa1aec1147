"""The `Scheduler` protocol: what a live session needs from whoever runs its model jobs.

As `models.scoring.Scorer` is for scorers: `BatchScheduler` (stream.server.scheduler: the model in
this process) and `RemoteScheduler` (stream.cluster: the model behind Ray Serve) implement it, and
sessions, `/api/predict` and the server see only this.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

from stream.engine.jobs import EvidenceJob, ModelJob

LIVE, BACKGROUND = 0, 1  # submit priorities: live streams first; file analyses (/api/predict) when idle


class Scheduler(Protocol):
    """Runs model jobs and the decision layer's measurements for every session of a server."""

    @property
    def depth(self) -> int:
        """Jobs waiting for the model."""

    @property
    def saturated(self) -> bool:
        """True when no more live jobs are accepted (new streams are refused with 1013)."""

    def start(self) -> None:
        """Begin serving jobs on the running event loop."""

    async def stop(self) -> None:
        """Fail what waits and stop."""

    def submit(self, job: ModelJob, priority: int = LIVE) -> asyncio.Future:
        """Score a chunk or a focus crop; raises `Overloaded` when the live queue is full."""

    def measure(self, job: EvidenceJob) -> asyncio.Future:
        """Run a CPU-only measurement; the future resolves to its Evidence."""

    def when_capacity(self, listener: Callable[[], None]) -> None:
        """Call `listener` once after the next job leaves the queue."""


__all__ = ["BACKGROUND", "LIVE", "Scheduler"]
