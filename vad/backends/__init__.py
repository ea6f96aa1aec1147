"""The frame classifier interface and the factory that builds one per backend."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import VadConfig

# Input rates the segmenter accepts; backends resample the others for the decision only.
SAMPLE_RATES = (8000, 16000, 32000, 44100, 48000)
WEBRTC_RATES = (8000, 16000, 32000, 48000)
SILERO_RATES = (8000, 16000)
# Rate a backend is fed when the input rate is not one of its native rates.
DECISION_RATE = 16000


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


def make_classifier(config: VadConfig, sample_rate: int) -> FrameClassifier:
    """Build (and load the model of) the classifier for `config.backend` at `sample_rate`."""
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {sample_rate!r}")
    # Backend modules import their engines lazily so importing `vad` loads no model.
    if config.backend == "webrtc":
        from .webrtc import WebRtcClassifier

        native = sample_rate in WEBRTC_RATES
        inner: FrameClassifier = WebRtcClassifier(
            sample_rate if native else DECISION_RATE, config.frame_ms, config.aggressiveness
        )
    else:
        from .silero import SileroClassifier

        native = sample_rate in SILERO_RATES
        inner = SileroClassifier(sample_rate if native else DECISION_RATE, config.threshold)
    if native:
        return inner
    from .resampled import ResampledClassifier

    return ResampledClassifier(inner, sample_rate, DECISION_RATE)
