"""The smoother, with exact planned numbers."""

from __future__ import annotations

import math

import numpy as np

from stream.engine.config import SmootherConfig
from stream.engine.smoother import Smoother

LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")


def onehotish(label: str, high: float = 0.8) -> np.ndarray:
    p = np.full(9, (1 - high) / 8)
    p[LABELS.index(label)] = high
    return p


def test_ema_weight_follows_time_constant():
    s = Smoother(SmootherConfig(time_constant=0.3, switch_margin=0.0, min_dwell=0.1), hop_seconds=0.1)
    a = 1 - math.exp(-0.1 / 0.3)
    first = s.update(onehotish("fearful")).scores
    second = s.update(onehotish("disgusted")).scores
    np.testing.assert_allclose(second, a * onehotish("disgusted") + (1 - a) * first, rtol=1e-6)


def test_switch_needs_margin_for_min_dwell_and_is_backdated():
    s = Smoother(SmootherConfig(time_constant=0.0, switch_margin=0.05, min_dwell=0.3), hop_seconds=0.1)
    assert s.update(onehotish("fearful")).dominant == LABELS.index("fearful")
    # Two windows of disgust: not yet 0.3 s.
    assert s.update(onehotish("disgusted")).switch is None
    assert s.update(onehotish("disgusted")).switch is None
    step = s.update(onehotish("disgusted"))
    assert step.switch is not None and step.switch.since_window == 2
    assert LABELS[step.switch.from_index] == "fearful" and LABELS[step.dominant] == "disgusted"


def test_interrupted_challenge_does_not_switch():
    s = Smoother(SmootherConfig(time_constant=0.0, switch_margin=0.05, min_dwell=0.3), hop_seconds=0.1)
    s.update(onehotish("fearful"))
    for label in ("disgusted", "disgusted", "fearful", "disgusted", "disgusted"):
        assert s.update(onehotish(label)).switch is None
    assert LABELS[s.dominant] == "fearful"


def test_lead_below_margin_does_not_switch():
    s = Smoother(SmootherConfig(time_constant=0.0, switch_margin=0.05, min_dwell=0.1), hop_seconds=0.1)
    s.update(onehotish("fearful"))
    p = np.zeros(9)
    p[LABELS.index("fearful")], p[LABELS.index("disgusted")] = 0.48, 0.52
    assert s.update(p).switch is None

