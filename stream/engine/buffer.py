"""A growable audio buffer addressed by absolute sample index, trimmed from the front."""

from __future__ import annotations

import numpy as np

from models.frames import SAMPLE_RATE


class AudioBuffer:
    """Holds samples [offset, end) of a stream; appends are amortised O(1), no per-chunk copies."""

    def __init__(self, capacity: int = SAMPLE_RATE * 8):
        """Start empty at stream sample 0."""
        self._data = np.zeros(capacity, dtype=np.float32)
        self._len = 0
        self.offset = 0  # absolute index of _data[0]

    @property
    def end(self) -> int:
        """Absolute index one past the newest sample."""
        return self.offset + self._len

    def append(self, samples: np.ndarray) -> None:
        """Add samples at the end."""
        n = len(samples)
        if self._len + n > len(self._data):
            grown = np.zeros(max(2 * len(self._data), self._len + n), dtype=np.float32)
            grown[: self._len] = self._data[: self._len]
            self._data = grown
        self._data[self._len : self._len + n] = samples
        self._len += n

    def slice(self, start: int, stop: int) -> np.ndarray:
        """A copy of absolute samples [start, stop); they must still be held."""
        if start < self.offset or stop > self.end or start > stop:
            raise IndexError(f"samples [{start}, {stop}) not held (have [{self.offset}, {self.end}))")
        return self._data[start - self.offset : stop - self.offset].copy()

    def discard_before(self, index: int) -> None:
        """Forget samples before absolute `index` (kept: everything from it on)."""
        drop = min(max(0, index - self.offset), self._len)
        if drop == 0:
            return
        keep = self._len - drop
        self._data[:keep] = self._data[drop : self._len]
        self._len = keep
        self.offset += drop
