"""Batching and latency defaults per device: what the live server does unless told otherwise.

A CPU runs a forward in time proportional to its batch, so small batches (8), a short fixed wait
and 2 s chunks (1 s of context: 1.5x the owned audio) keep the most audio per core-second.
A GPU runs a batch of 128 in a few times the time of a batch of 1: it wants large batches, and
it has the throughput to spend on shorter chunks, so windows reach clients sooner (a window
waits for its chunk to fill: 0.5 s chunks keep that wait under the 1 s latency target).

A session that opens while the server serves no other gets the latency mode's short chunks
(`session_analyzer`, stream.engine.config.CHUNK_MODES): alone it has the cores to spare, and its
windows arrive within 1 s. Sessions that open beside others get the batch-friendly long chunks.
A session keeps its mode to its end (its chunk plan depends only on its audio and that mode,
which session.json records under `parameters`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.engine.config import LATENCY_CHUNK_SECONDS, AnalyzerConfig


@dataclass(frozen=True)
class DevicePolicy:
    """The server's batching and chunking defaults on one kind of device."""

    max_batch: int  # chunks per forward pass
    max_wait_ms: float  # longest wait for a fuller batch
    adaptive_wait: bool  # stop waiting as soon as jobs stop arriving (see BatchScheduler)
    max_pending_seconds: float  # audio queued for the model before streams are told 'overload'
    chunk_seconds: float  # live chunks ...
    context_seconds: float  # ... and their left context
    latency_chunk_seconds: float = LATENCY_CHUNK_SECONDS  # the latency mode's chunks (same context)
    latency_below: int = 1  # a session opening while fewer others are live gets the latency mode


CPU = DevicePolicy(
    max_batch=8, max_wait_ms=10.0, adaptive_wait=False, max_pending_seconds=180.0,
    chunk_seconds=2.0, context_seconds=1.0,
)
# 0.5 s chunks with 1 s of context: 3x the owned audio through the model, for p95 <= 1 s windows.
CUDA = DevicePolicy(
    max_batch=128, max_wait_ms=20.0, adaptive_wait=True, max_pending_seconds=1800.0,
    chunk_seconds=0.5, context_seconds=1.0,
)


def policy_for(device: str) -> DevicePolicy:
    """The defaults for a torch device name ('cpu', 'cuda', 'cuda:1', ...)."""
    return CUDA if str(device).startswith("cuda") else CPU


def session_analyzer(policy: DevicePolicy, template: AnalyzerConfig, others_live: int, chunk_given: bool
                     ) -> AnalyzerConfig:
    """A new session's analyzer config: the template in the chunk mode this session gets.

    `others_live`: sessions this server serves now; `chunk_given`: --chunk was set (then "auto"
    is already "throughput" and "latency" keeps that length).
    """
    alone = others_live < policy.latency_below
    return template.for_stream(alone, latency_chunk=policy.latency_chunk_seconds, chunk_given=chunk_given)
