"""Regroups chunks of any length into consecutive fixed-length frames."""

from __future__ import annotations

import numpy as np


class FrameBuffer:
    """Cuts a stream pushed in arbitrary chunks into frames of `frame_samples`.

    Only the incomplete tail (< one frame) is kept between pushes; whole frames inside a
    chunk are returned as views into it, so the history is never copied.
    """

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be > 0, got {frame_samples!r}")
        self._frame = frame_samples
        self._partial = np.zeros(frame_samples, dtype=np.float32)
        self._filled = 0

    @property
    def remainder(self) -> np.ndarray:
        """The buffered samples that do not yet fill a frame (a copy)."""
        return self._partial[: self._filled].copy()

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Return every frame completed by `samples` (float32, 1-D), in order."""
        frames: list[np.ndarray] = []
        start = 0
        if self._filled:
            start = min(self._frame - self._filled, len(samples))
            self._partial[self._filled : self._filled + start] = samples[:start]
            self._filled += start
            if self._filled < self._frame:
                return frames
            frames.append(self._partial.copy())
            self._filled = 0
        whole_end = start + (len(samples) - start) // self._frame * self._frame
        frames.extend(samples[i : i + self._frame] for i in range(start, whole_end, self._frame))
        tail = len(samples) - whole_end
        self._partial[:tail] = samples[whole_end:]
        self._filled = tail
        return frames

    def clear(self) -> None:
        """Drop the buffered tail."""
        self._filled = 0
