"""The frame classifier interface every VAD backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FrameClassifier(Protocol):
    """Decides speech / non-speech for consecutive fixed-length frames."""

    @property
    def frame_samples(self) -> int:
        """Frame length in samples at the rate the classifier is fed."""
        ...

    def is_speech(self, frame: np.ndarray) -> bool:
        """Classify the next frame: float32, shape (frame_samples,), values in [-1, 1]."""
        ...

    def reset(self) -> None:
        """Forget all state so the next frame starts a new stream."""
        ...
