"""Runs a frame classifier at another sample rate by streaming resampling (decision only)."""

from __future__ import annotations

import numpy as np
import soxr

from ..base import FrameClassifier


class ResampledClassifier:
    """Feeds `inner` (working at `inner_rate`) with frames given at `sample_rate`.

    Input frames have the inner frame's duration rounded to whole input samples. soxr
    emits output in internal blocks, so each input frame completes zero, one or several
    inner frames: the decision is speech if any completed inner frame is speech, and
    repeats the previous decision when none completed. Decisions therefore lag the audio
    by soxr's buffering (about one frame); reported sample indices stay in the input rate.
    Fed fixed-length frames, soxr's output and thus every decision is independent of how
    the caller chunked the stream.
    """

    def __init__(self, inner: FrameClassifier, sample_rate: int, inner_rate: int) -> None:
        if sample_rate <= 0 or inner_rate <= 0:
            raise ValueError(f"rates must be > 0, got {sample_rate!r} and {inner_rate!r}")
        self._inner = inner
        self._sample_rate = sample_rate
        self._inner_rate = inner_rate
        self._frame_samples = round(inner.frame_samples * sample_rate / inner_rate)
        self._stream = soxr.ResampleStream(sample_rate, inner_rate, 1, dtype="float32")
        # Resampled samples not yet forming a whole inner frame (less than one frame).
        self._pending = np.zeros(0, dtype=np.float32)
        self._last = False

    @property
    def frame_samples(self) -> int:
        """Frame length in samples at the input rate."""
        return self._frame_samples

    def is_speech(self, frame: np.ndarray) -> bool:
        """Resample one input frame and classify the inner frames it completes."""
        resampled = self._stream.resample_chunk(np.ascontiguousarray(frame, dtype=np.float32))
        buffered = np.concatenate((self._pending, resampled))
        n = self._inner.frame_samples
        complete = len(buffered) // n
        if complete:
            # A list, not a generator: any() must not stop early, since stateful backends
            # need to see every inner frame.
            frames = (buffered[i * n : (i + 1) * n] for i in range(complete))
            self._last = any([self._inner.is_speech(frame) for frame in frames])
        self._pending = buffered[complete * n :].copy()
        return self._last

    def reset(self) -> None:
        """Forget resampler history, pending samples and the inner classifier's state."""
        self._stream.clear()
        self._pending = np.zeros(0, dtype=np.float32)
        self._last = False
        self._inner.reset()
