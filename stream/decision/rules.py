"""Segment-level decision rules and their findings: review flags and dual-emotion reports (the seed's step 4).

The seed says "fear > 60% and disgust > 60%", which one softmax vector can never satisfy.
We define the dual-emotion rule on each emotion's *peak smoothed score over the segment's
windows* (what the frame view shows), and the review rule on the segment's utterance scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

from .config import DecisionConfig


@dataclass(frozen=True)
class DualEmotion:
    """Two emotions both peaked high and close within one segment."""

    type: ClassVar[str] = "dual_emotion"
    segment: int
    start: float
    end: float
    emotions: tuple[str, str]
    peaks: Mapping[str, float]
    gap: float
    reason: str
    evidence: str | None = None  # acoustic cues in words, for a human (never used to decide)


@dataclass(frozen=True)
class Review:
    """A segment led by fear or disgust whose two scores are too close to call."""

    type: ClassVar[str] = "review"
    segment: int
    start: float
    end: float
    leading: str
    runner_up: str
    gap: float
    reason: str
    evidence: str | None = None  # acoustic cues, focus crop, fusion and quality in words


def review_flag(
    config: DecisionConfig,
    segment: int,
    start: float,
    end: float,
    scores: Mapping[str, float],
    evidence: str | None = None,
) -> Review | None:
    """Flag a segment for human review when fear or disgust leads and the two are too close."""
    a, b = config.flagged_pair
    leading = max(scores, key=scores.get)
    if leading not in (a, b):
        return None
    runner_up = b if leading == a else a
    gap = scores[leading] - scores[runner_up]
    if gap >= config.review_gap:
        return None
    return Review(
        segment=segment,
        start=start,
        end=end,
        leading=leading,
        runner_up=runner_up,
        gap=gap,
        reason=(
            f"{leading} leads {runner_up} by {gap:.3f} < {config.review_gap:.2f} "
            f"in the segment's scores"
        ),
        evidence=evidence,
    )


def dual_emotion(
    config: DecisionConfig,
    segment: int,
    start: float,
    end: float,
    peaks: Mapping[str, float],
    evidence: str | None = None,
) -> DualEmotion | None:
    """Report the two highest-peaking emotions when both peak above the bar and close together."""
    if len(peaks) < 2:
        return None
    first, second = sorted(peaks, key=peaks.get, reverse=True)[:2]
    gap = peaks[first] - peaks[second]
    if peaks[second] <= config.dual_min_peak or gap >= config.dual_max_gap:
        return None
    return DualEmotion(
        segment=segment,
        start=start,
        end=end,
        emotions=(first, second),
        peaks={first: peaks[first], second: peaks[second]},
        gap=gap,
        reason=(
            f"peak smoothed scores {first} {peaks[first]:.3f} and {second} {peaks[second]:.3f} "
            f"both > {config.dual_min_peak:.2f}, gap {gap:.3f} < {config.dual_max_gap:.2f}"
        ),
        evidence=evidence,
    )
