"""One path from a scored stretch of speech to its decision, for live segments and whole files alike.

Once every frame of a stretch (a live segment, or a whole file offline) is scored:

1. `plan_checks` says what the decision layer still needs: the audio's quality and, where the
   call is at stake, its acoustic cues (`CheckPlan.cue_span`); where fear and disgust are close,
   the focus crop re-scored alone (`CheckPlan.crop`).
2. The live engine hands those out as jobs (the crop to the model's scheduler, the measurements
   to a worker); offline, `run_checks` does both in place with a scorer.
3. `conclude` turns the results into the `Decision` and its review and dual-emotion findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from models.frames import LOOKAHEAD, SAMPLE_RATE
from models.scoring import Scorer, softmax

from .config import DecisionConfig
from .fear_disgust import Decision, Evidence, Focus, cue_span, decide, measure, plan_focus
from .fusion import Centroids
from .profiles import Profile
from .rules import DualEmotion, Review, dual_emotion, review_flag


@dataclass(frozen=True)
class CheckPlan:
    """What the decision layer needs measured or re-scored for one stretch (sample ranges of its audio)."""

    cue_span: tuple[int, int] | None  # acoustic cues over these samples; None: quality only
    crop: tuple[int, int] | None  # the focus crop to re-score alone; None: no focus step


def plan_checks(
    config: DecisionConfig,
    labels: Sequence[str],
    scores: Mapping[str, float],
    frame_logits: np.ndarray,
    n_samples: int,
    peaks: Mapping[str, float] | None = None,
) -> CheckPlan:
    """The checks a stretch of `n_samples` with these scores and (T, 9) frame logits needs.

    `peaks` (each emotion's peak smoothed score, live segments only) lets a dual-emotion report
    ask for the acoustic cues as well.
    """
    dual = peaks is not None and dual_emotion(config, 0, 0.0, 0.0, peaks) is not None
    return CheckPlan(
        cue_span=cue_span(config, scores, dual, frame_logits, labels, n_samples),
        crop=plan_focus(config, scores, frame_logits, labels),
    )


def crop_seconds(crop: tuple[int, int], origin: int = 0) -> tuple[float, float]:
    """Stream seconds a crop's frames cover (its first frame's start to its last frame's hop end).

    `crop` is in samples of a stretch that starts at stream sample `origin`.
    """
    a, b = crop
    return (origin + a) / SAMPLE_RATE, (origin + b - LOOKAHEAD) / SAMPLE_RATE


def focus_of(crop: tuple[int, int], logits: np.ndarray, labels: Sequence[str], origin: int = 0) -> Focus:
    """The focus result from the crop's frame logits (profile bias included); `origin`: stretch start, samples."""
    scores = softmax(logits.mean(axis=0))
    return Focus(*crop_seconds(crop, origin), dict(zip(labels, scores.tolist())))


def run_checks(
    plan: CheckPlan,
    config: DecisionConfig,
    scorer: Scorer,
    samples: np.ndarray,
    source_rate: int,
    bias: np.ndarray,
) -> tuple[Evidence, Focus | None]:
    """Do a plan's checks here and now: measure the 16 kHz `samples`, re-score the crop with `scorer`."""
    focus = None
    if plan.crop is not None:
        a, b = plan.crop
        focus = focus_of(plan.crop, scorer.score([samples[a:b]])[0].logits + bias, scorer.labels)
    return measure(samples, source_rate, config, plan.cue_span), focus


@dataclass(frozen=True)
class Conclusion:
    """A stretch's decision and what it raised for a human."""

    decision: Decision
    review: Review | None
    dual: DualEmotion | None


def conclude(
    config: DecisionConfig,
    scores: Mapping[str, float],
    evidence: Evidence,
    profile: Profile,
    embedding: np.ndarray | None,
    centroids: Centroids | None,
    focus: Focus | None,
    segment: int,
    start: float,
    end: float,
    peaks: Mapping[str, float] | None = None,
) -> Conclusion:
    """Decide a stretch (stream seconds `start`–`end`) and raise its review flag and dual-emotion report."""
    decision = decide(config, scores, evidence, profile, embedding, centroids, focus)
    review = review_flag(config, segment, start, end, scores, decision.review_evidence())
    dual = dual_emotion(config, segment, start, end, peaks, decision.evidence) if peaks is not None else None
    return Conclusion(decision, review, dual)
