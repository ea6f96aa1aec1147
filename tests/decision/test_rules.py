"""The segment decision rules (review flag, dual-emotion report), with exact planned numbers."""

from __future__ import annotations

import pytest

from models.labels import LABELS
from stream.decision.config import DecisionConfig
from stream.decision.rules import dual_emotion, review_flag


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
