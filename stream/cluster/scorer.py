"""The Scorer deployment: the model on its own replicas, batching every ingress replica's jobs.

`@serve.batch` gathers chunk jobs from all ingress replicas into one forward pass; focus crops
have their own batch queue because a short crop padded to a 3 s chunk would cost a whole chunk
(the in-process scheduler keeps the same rule). Only what the engine reads travels back: a
chunk's owned frames' logits and the sum of their features, a crop's logits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import ray
from ray import serve

from models.loader import ModelOptions, load_scorer
from models.scoring import FrameOutput


@dataclass(frozen=True)
class ModelInfo:
    """What an ingress replica needs to know of the model without loading it."""

    labels: tuple[str, ...]
    model_id: str
    random_weights: bool
    embed_dim: int
    precision: str  # what the replicas compute in (float32, bfloat16, float16, int8)
    planted: str | None  # a planted test head's kind, else None
    device: str  # the replicas' torch device: the ingress follows its batching and chunk policy


@dataclass(frozen=True)
class ChunkRequest:
    """A chunk job as it travels: its audio (context included) and which frames it owns."""

    audio: np.ndarray
    skip_frames: int
    n_owned: int


@dataclass(frozen=True)
class ChunkResult:
    """What the engine reads of a chunk's model output."""

    logits: np.ndarray  # (n_owned, n_labels) float32: the owned frames only
    feature_sum: np.ndarray  # (D,) float64: the owned frames' features summed as the engine sums them


def chunk_result(output: FrameOutput, request: ChunkRequest) -> ChunkResult:
    """Cut a chunk's FrameOutput to its owned frames (the same slice and sum `StreamCore.complete` does)."""
    rows = slice(request.skip_frames, request.skip_frames + request.n_owned)
    return ChunkResult(output.logits[rows], output.features[rows].sum(axis=0, dtype=np.float64))


class ScorerDeployment:
    """One model replica (CPU or GPU) serving batched chunk and crop jobs."""

    def __init__(self, model: ModelOptions, max_batch: int = 8, max_wait_s: float = 0.01, job_samples: int | None = None):
        """Load the model; batches hold up to `max_batch` jobs and wait at most `max_wait_s` to fill.

        `job_samples`: the longest chunk the ingresses send; on CUDA the model captures its graphs
        for batches up to that long before the replica takes work.
        """
        self.scorer = load_scorer(model)
        if job_samples:
            self.scorer.prepare(max_batch, job_samples)
        for method in (self.score_chunks, self.score_crops):
            method.set_max_batch_size(max_batch)
            method.set_batch_wait_timeout_s(max_wait_s)
        self.batches = 0
        self.jobs = 0
        self.running = 0  # jobs in the forward pass now

    def info(self) -> ModelInfo:
        """What an ingress replica needs of the model: labels, id, flags, feature size, precision, device."""
        s = self.scorer
        return ModelInfo(
            tuple(s.labels), s.model_id, bool(s.random_weights), int(s.embed_dim), s.precision, s.planted,
            str(s.device),
        )

    def stats(self) -> dict:
        """Forward passes and jobs this replica served, and its Ray node (for /healthz and tests)."""
        node = ray.get_runtime_context().get_node_id()
        return {"batches": self.batches, "jobs": self.jobs, "running": self.running, "node": node}

    async def _forward(self, waveforms: list[np.ndarray]) -> list[FrameOutput]:
        # In a thread: torch releases the GIL and the replica keeps taking requests meanwhile.
        self.running += len(waveforms)
        try:
            outputs = await asyncio.to_thread(self.scorer.score, waveforms)
        finally:
            self.running -= len(waveforms)
        self.batches += 1
        self.jobs += len(waveforms)
        return outputs

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def score_chunks(self, requests: list[ChunkRequest]) -> list[ChunkResult]:
        """Score chunk jobs from any ingress replica in one forward pass."""
        outputs = await self._forward([r.audio for r in requests])
        return [chunk_result(o, r) for o, r in zip(outputs, requests)]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def score_crops(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Score focus crops (batched only with crops); each answer is the crop's frame logits."""
        return [o.logits for o in await self._forward(list(crops))]

    async def score(self, waveforms: list[np.ndarray]) -> list[FrameOutput]:
        """Whole waveforms, unbatched across callers (for /api/predict's file analysis)."""
        return await self._forward(list(waveforms))
