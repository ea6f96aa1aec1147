"""The smoother and the segment decision rules, with exact planned numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.config import DecisionConfig, SmootherConfig
from stream.decisions import dual_emotion, review_flag
from stream.smoother import Smoother

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


def scores(**kw) -> dict:
    d = {l: 0.0 for l in LABELS}
    d.update(kw)
    rest = (1 - sum(kw.values())) / (9 - len(kw))
    return {l: (v if l in kw else rest) for l, v in d.items()}


def test_review_fires_only_when_fear_or_disgust_leads_by_less_than_gap():
    cfg = DecisionConfig()
    flag = review_flag(cfg, 0, 1.0, 2.0, scores(fearful=0.45, disgusted=0.35))
    assert flag is not None and flag.leading == "fearful" and flag.runner_up == "disgusted"
    assert flag.gap == pytest.approx(0.10)
    assert review_flag(cfg, 0, 1.0, 2.0, scores(fearful=0.55, disgusted=0.35)) is None  # gap 0.20
    assert review_flag(cfg, 0, 1.0, 2.0, scores(angry=0.5, fearful=0.2, disgusted=0.2)) is None  # anger leads


def test_dual_emotion_on_peaks_above_bar_and_close():
    cfg = DecisionConfig()
    report = dual_emotion(cfg, 3, 0.0, 3.2, {"fearful": 0.72, "disgusted": 0.69, "neutral": 0.3})
    assert report is not None and report.emotions == ("fearful", "disgusted")
    assert report.gap == pytest.approx(0.03) and "0.72" in report.reason
    assert dual_emotion(cfg, 3, 0.0, 3.2, {"fearful": 0.72, "disgusted": 0.62}) is None  # gap 0.10
    assert dual_emotion(cfg, 3, 0.0, 3.2, {"fearful": 0.58, "disgusted": 0.57}) is None  # below 0.6
