"""Cutting a speech segment into scoring chunks on the 50 Hz frame grid.

Frame f of a segment starting at sample s sees samples [s + 320 f, s + 320 f + 400). Chunk k
owns frames [k·C/320, (k+1)·C/320) and is run on audio [s + k·C − context, s + (k+1)·C + 80),
so its owned frames are complete and each keeps up to `context` of left context. The plan depends
only on the segment's audio, never on how that audio arrived: that is what makes the analyzer
give identical events for any feed sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.frames import FRAME_STRIDE, LOOKAHEAD, n_frames


@dataclass(frozen=True)
class ChunkSpan:
    """Where chunk k lies in segment-relative samples."""

    audio_start: int
    audio_stop: int
    first_frame: int
    skip_frames: int
    n_owned: int


def full_chunk(k: int, chunk: int, context: int) -> ChunkSpan:
    """The span of chunk k when the segment extends past its end plus the look-ahead."""
    ctx = min(context, k * chunk)
    owned = chunk // FRAME_STRIDE
    return ChunkSpan(k * chunk - ctx, (k + 1) * chunk + LOOKAHEAD, k * owned, ctx // FRAME_STRIDE, owned)


def chunks_ready(k: int, available: int, chunk: int) -> int:
    """How many full chunks from k on fit in `available` segment samples."""
    return max(0, (available - LOOKAHEAD) // chunk - k)


def last_chunk(k: int, length: int, chunk: int, context: int) -> ChunkSpan | None:
    """The final, partial chunk k of a closed segment of `length` samples (None if no frames left)."""
    total = n_frames(length)
    first = k * (chunk // FRAME_STRIDE)
    if total <= first:
        return None
    ctx = min(context, k * chunk)
    return ChunkSpan(k * chunk - ctx, length, first, ctx // FRAME_STRIDE, total - first)
