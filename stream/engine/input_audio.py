"""Turn client audio (int16 or float, any supported rate) into the 16 kHz float32 the engine uses."""

from __future__ import annotations

import numpy as np
import soxr

from models.errors import AudioError, ConfigError
from models.frames import SAMPLE_RATE
from vad import INPUT_RATES


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Mono samples as float32 in [-1, 1]: int16 is scaled, floats are passed through."""
    a = np.asarray(samples)
    if a.ndim != 1:
        raise AudioError(f"expected mono 1-D samples, got shape {a.shape}")
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise AudioError("audio contains NaN or infinite samples")
        return a.astype(np.float32, copy=False)
    raise AudioError(f"samples must be int16 or float, got {a.dtype}")


class InputResampler:
    """Streaming resampler to 16 kHz (soxr, chunk-size invariant output)."""

    def __init__(self, sample_rate: int):
        """Accept audio at `sample_rate` Hz."""
        if sample_rate not in INPUT_RATES:
            raise ConfigError(
                f"sample_rate must be one of {', '.join(map(str, INPUT_RATES))} Hz, got {sample_rate}"
            )
        self.sample_rate = sample_rate
        self._stream = (
            None
            if sample_rate == SAMPLE_RATE
            else soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Convert and resample a chunk; returns the 16 kHz samples ready so far."""
        x = to_float32(samples)
        if self._stream is None:
            return x
        return self._stream.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """End of input: the resampler's remaining samples."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
