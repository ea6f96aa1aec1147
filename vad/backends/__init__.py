"""The VAD backends (webrtcvad, Silero) and the factory that builds one per configuration."""

from __future__ import annotations

from ..base import FrameClassifier
from ..config import DECISION_RATE, INPUT_RATES, SILERO_RATES, WEBRTC_RATES, VadConfig
from .resampled import ResampledClassifier


def make_classifier(config: VadConfig, sample_rate: int) -> FrameClassifier:
    """Build (and load the model of) the classifier for `config.backend` at `sample_rate`."""
    if sample_rate not in INPUT_RATES:
        raise ValueError(f"sample_rate must be one of {INPUT_RATES}, got {sample_rate!r}")
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
    return ResampledClassifier(inner, sample_rate, DECISION_RATE)
