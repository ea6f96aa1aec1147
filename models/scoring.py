"""What the engine needs from a model, without torch: frame output, softmax, the Scorer protocol.

The engine, the decision layer and the server type their model as `Scorer`; the torch-backed
`models.emotion2vec.Emotion2vecScorer` implements it, and so can a scripted scorer in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: these scores are not emotion recognition (test/benchmark model)"
PLANTED_WEIGHTS_WARNING = (
    "PLANTED WEIGHTS: fearful and disgusted follow a planted rule (the speech's spectral brightness) "
    "to exercise the alerts; these scores are not emotion recognition (test/demo model)"
)


def weights_warning(random_weights: bool, planted: str | None = None) -> str | None:
    """The warning every result of a model with random or planted weights carries (None: real weights)."""
    if planted:
        return PLANTED_WEIGHTS_WARNING
    return RANDOM_WEIGHTS_WARNING if random_weights else None


@dataclass(frozen=True)
class FrameOutput:
    """One waveform's encoder output on the 50 Hz frame grid."""

    logits: np.ndarray  # (T, n_labels) float32: the head applied to each frame, usable labels only
    features: np.ndarray  # (T, D) float32: final-layer frame features (funasr's frame embedding)


@runtime_checkable
class Scorer(Protocol):
    """A model that turns 16 kHz waveforms into per-frame logits and features."""

    labels: tuple[str, ...]  # the label of each logit column
    model_id: str  # hub id or directory the weights came from
    random_weights: bool  # True: the scores mean nothing (test/benchmark model)
    planted: str | None  # a planted head's kind (e.g. "fear-disgust"; random_weights is then True too)
    embed_dim: int  # D of FrameOutput.features
    precision: str  # what the forward computes in: float32 | bfloat16 | float16 | int8

    def score(self, waveforms: Sequence[np.ndarray]) -> list[FrameOutput]:
        """Score 16 kHz mono float waveforms (any lengths, each at least 400 samples) in one batch."""
        ...


def softmax(logits: np.ndarray, axis: int = -1, dtype=np.float32) -> np.ndarray:
    """Numerically stable softmax computed in float64, returned as `dtype` (float32 by default)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(dtype)
