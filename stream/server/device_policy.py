"""Batching and latency defaults per device: what the live server does unless told otherwise.

A CPU runs a forward in time proportional to its batch, so small batches (8), a short fixed wait
and 2 s chunks (1 s of context: 1.5x the owned audio) keep the most audio per core-second.
A GPU runs a batch of 128 in a few times the time of a batch of 1: it wants large batches, and
it has the throughput to spend on shorter chunks, so windows reach clients sooner (a window
waits for its chunk to fill: 0.5 s chunks keep that wait under the 1 s latency target).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePolicy:
    """The server's batching and chunking defaults on one kind of device."""

    max_batch: int  # chunks per forward pass
    max_wait_ms: float  # longest wait for a fuller batch
    adaptive_wait: bool  # stop waiting as soon as jobs stop arriving (see BatchScheduler)
    max_pending_seconds: float  # audio queued for the model before streams are told 'overload'
    chunk_seconds: float  # live chunks ...
    context_seconds: float  # ... and their left context


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
