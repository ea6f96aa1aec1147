"""The fear/disgust decision layer: quality gate, acoustic cues, focus crop and centroid fusion.

The model's scores for a segment (or a whole file) pass through these steps, each switchable in
`DecisionConfig` and each reported in the resulting `Decision`:

1. *profile* — the domain profile's logit bias is already in the scores (`profiles.py`);
2. *focus* — where fear and disgust are close, the 0.3–0.8 s crop around their strongest
   evidence in the frame timeline is re-scored alone and reported beside the segment's scores;
3. *fusion* — with calibrated centres loaded, a close fear/disgust call is re-decided with the
   embedding's cosine similarity to each centre (`fusion.py`);
4. *quality gate* — on audio below the quality bar a fear or disgust call becomes `unknown`
   with the reason (`quality.py`).

Acoustic cues (`cues.py`) are measured for the segments where the call is at stake and
quoted in words in review flags and dual-emotion reports: evidence for a human, never an input
to the decision. Everything here is sans-I/O; `checks.py` runs these steps in one order for live
segments and whole files alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from models.frames import FRAME_STRIDE, LOOKAHEAD, SAMPLE_RATE
from models.scoring import Scorer, softmax

from .config import DecisionConfig
from .cues import AcousticCues, acoustic_cues, pair_reading
from .fusion import DISGUST, FEAR, Centroids, fuse
from .profiles import Profile, ProfileLibrary, load_library, select_profile
from .quality import AudioQuality, assess_quality

PAIR = (FEAR, DISGUST)
FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_STRIDE
PEAK_FRAMES = 20  # one 0.4 s window: the cues of a long segment are centred on its strongest one
SMOOTH_FRAMES = 5  # growth looks at evidence averaged over 0.1 s, so one odd frame neither stops nor extends it


@dataclass(frozen=True)
class Evidence:
    """What a segment's audio says besides the model: its quality and (maybe) acoustic cues."""

    quality: AudioQuality
    cues: AcousticCues | None
    cue_window: tuple[float, float] | None = None  # where the cues were measured, s from the audio's start


def measure(
    samples: np.ndarray, source_rate: int, config: DecisionConfig, cue_span: tuple[int, int] | None
) -> Evidence:
    """Quality of 16 kHz `samples` that arrived at `source_rate`, plus cues over `cue_span` (samples) if given."""
    quality = assess_quality(samples, SAMPLE_RATE, source_rate, config.quality)
    if cue_span is None:
        return Evidence(quality, None)
    a, b = cue_span
    return Evidence(quality, acoustic_cues(samples[a:b], SAMPLE_RATE), (a / SAMPLE_RATE, b / SAMPLE_RATE))


def leader(scores: Mapping[str, float]) -> str:
    """The label with the highest score."""
    return max(scores, key=scores.get)


def pair_gap(scores: Mapping[str, float]) -> float:
    """|fearful − disgusted|."""
    return abs(scores[FEAR] - scores[DISGUST])


def cue_span(
    config: DecisionConfig, scores: Mapping[str, float], dual: bool, frame_logits: np.ndarray, labels, n_samples: int
) -> tuple[int, int] | None:
    """Sample range of a segment (`n_samples` long) whose acoustic cues are measured, or None.

    Measured always, never, or (`flagged`) where fear or disgust leads or a dual report fires.
    A segment longer than `cues_max_seconds` is measured over that much audio centred on its
    strongest fear/disgust evidence: pitch tracking costs ~0.03 s of CPU per second, and a
    contour shape over half a minute says nothing anyway.
    """
    wanted = config.cues == "always" or (config.cues == "flagged" and (leader(scores) in PAIR or dual))
    if not wanted:
        return None
    longest = round(config.cues_max_seconds * SAMPLE_RATE)
    if n_samples <= longest:
        return 0, n_samples
    evidence = pair_evidence(frame_logits, labels)
    width = min(PEAK_FRAMES, len(evidence))  # the 0.4 s window with the most fear/disgust evidence
    centre = (int(np.argmax(np.convolve(evidence, np.ones(width), mode="valid"))) + width // 2) * FRAME_STRIDE
    a = min(max(0, centre - longest // 2), n_samples - longest)
    return a, a + longest


def is_ambiguous(config: DecisionConfig, scores: Mapping[str, float]) -> bool:
    """Fear or disgust leads and the two are closer than the focus step's gap."""
    return leader(scores) in PAIR and pair_gap(scores) < config.focus.ambiguous_gap


def focus_interval(pair_evidence: np.ndarray, config: DecisionConfig) -> tuple[int, int] | None:
    """Frame range [first, stop) of the crop around the strongest fear/disgust evidence.

    `pair_evidence` (T,) is p(fearful) + p(disgusted) per frame. The crop starts as the
    `min_seconds` stretch with the highest mean evidence and grows one frame at a time towards
    the stronger neighbour (evidence averaged over 0.1 s) while that neighbour holds at least
    `extend_ratio` × the stretch's mean, up to `max_seconds`. None when the whole timeline is no
    longer than `max_seconds`: the crop would be the segment itself.
    """
    focus = config.focus
    lo = max(1, round(focus.min_seconds * FRAMES_PER_SECOND))
    hi = max(lo, round(focus.max_seconds * FRAMES_PER_SECOND))
    n = len(pair_evidence)
    if n <= hi:
        return None
    means = np.convolve(pair_evidence, np.ones(lo) / lo, mode="valid")
    first = int(np.argmax(means))
    stop = first + lo
    bar = focus.extend_ratio * means[first]
    kernel = np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES
    curve = np.convolve(np.pad(pair_evidence, SMOOTH_FRAMES // 2, mode="edge"), kernel, mode="valid")
    while stop - first < hi:
        left = curve[first - 1] if first > 0 else -np.inf
        right = curve[stop] if stop < n else -np.inf
        if max(left, right) < bar:
            break
        if right >= left:
            stop += 1
        else:
            first -= 1
    return first, stop


def plan_focus(
    config: DecisionConfig, scores: Mapping[str, float], frame_logits: np.ndarray, labels
) -> tuple[int, int] | None:
    """Sample range [a, b) of the focus crop in a segment with these scores and (T, 9) frame logits.

    None unless the focus step is on, the segment is ambiguous and longer than the longest crop.
    The crop holds its frames completely: frames [first, stop) need samples [320·first, 320·stop + 80).
    """
    if not (config.focus.enabled and is_ambiguous(config, scores)):
        return None
    span = focus_interval(pair_evidence(frame_logits, labels), config)
    if span is None:
        return None
    return span[0] * FRAME_STRIDE, span[1] * FRAME_STRIDE + LOOKAHEAD


@dataclass(frozen=True)
class DecisionData:
    """What the decision layer loads from files: the domain-profile library and calibrated centres."""

    library: ProfileLibrary
    centroids: Centroids | None = None

    def profile_for(self, context: str | None) -> Profile:
        """The profile a session's or file's context text selects."""
        return select_profile(context, self.library)

    @classmethod
    def load(cls, scorer: Scorer, profiles: str | Path | None = None, centroids: str | Path | None = None) -> DecisionData:
        """Read a profile library (default: the shipped one) and centres made with `scorer`'s model."""
        return cls(
            library=load_library(profiles),
            centroids=Centroids.load(centroids, scorer.model_id, scorer.embed_dim) if centroids else None,
        )


@dataclass(frozen=True)
class Focus:
    """The focus crop re-scored alone, to read beside the whole segment's scores."""

    start: float  # stream seconds
    end: float
    scores: Mapping[str, float]  # softmax of the crop's mean logits, scored without its surroundings

    @property
    def emotion(self) -> str:
        """The crop's leading emotion."""
        return leader(self.scores)

    def to_dict(self, whole: Mapping[str, float]) -> dict:
        """The crop's numbers beside the segment's (`whole`) for the fear/disgust pair."""
        return {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "emotion": self.emotion,
            "scores": {k: round(float(v), 6) for k, v in self.scores.items()},
            "pair": {
                "crop": {k: round(float(self.scores[k]), 6) for k in PAIR},
                "whole": {k: round(float(whole[k]), 6) for k in PAIR},
            },
        }

    def describe(self) -> str:
        """One line for a reviewer."""
        return (
            f"crop {self.start:.2f}–{self.end:.2f} s re-scored alone: {FEAR} {self.scores[FEAR]:.3f}, "
            f"{DISGUST} {self.scores[DISGUST]:.3f} (leads: {self.emotion})"
        )


@dataclass(frozen=True)
class Decision:
    """The final call on a segment or file and every step that shaped it."""

    emotion: str  # the final call: the model's, re-decided by fusion/focus, or "unknown" if withheld
    model_emotion: str  # argmax of the (profile-adjusted) scores
    profile: str  # the domain profile whose bias is in the scores
    enhanced: bool  # centroid fusion decided between fearful and disgusted
    withheld: str | None  # why the fear/disgust call was withheld, else None
    quality: Mapping  # AudioQuality.to_dict()
    fusion: Mapping | None  # fusion numbers where fear and disgust were close, else None
    focus: Mapping | None  # Focus.to_dict() where the focus step ran, else None
    cues: Mapping | None  # AcousticCues.to_dict() where measured, else None
    evidence: str | None  # the cues in words, for reviewers (not used in the decision)
    steps: tuple[str, ...]  # what fired, in words and order

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {
            "emotion": self.emotion,
            "model_emotion": self.model_emotion,
            "profile": self.profile,
            "enhanced": self.enhanced,
            "withheld": self.withheld,
            "steps": list(self.steps),
            "quality": dict(self.quality),
            "fusion": self.fusion,
            "focus": self.focus,
            "cues": self.cues,
            "evidence": self.evidence,
        }

    def review_evidence(self) -> str | None:
        """Cues, focus, fusion and quality in words: what a reviewer reads beside a review flag."""
        parts = [self.evidence, *self.steps[1:]]  # steps[0] is the profile line
        return "; ".join(p for p in parts if p) or None


def decide(
    config: DecisionConfig,
    scores: Mapping[str, float],
    evidence: Evidence,
    profile: Profile,
    embedding: np.ndarray | None = None,
    centroids: Centroids | None = None,
    focus: Focus | None = None,
) -> Decision:
    """Run the decision steps on one segment's scores (see the module docstring)."""
    model_emotion = emotion = leader(scores)
    steps = [f"profile {profile.name}: " + ("neutral, no shift" if profile.is_neutral else "logit bias applied")]
    fusion = None
    if centroids is not None and embedding is not None and config.fusion.enabled and emotion in PAIR:
        result = fuse(scores, embedding, centroids, config.fusion)
        if result.fear_similarity is not None:  # the pair was close: report the numbers used
            fusion = {
                k: round(v, 6) if isinstance(v, float) else v
                for k, v in result.to_dict().items()
                if k not in ("scores", "config", "emotion_before")
            }
            steps.append(f"fusion: {result.reason}")
        emotion = result.emotion
    if focus is not None:
        steps.append(f"focus: {focus.describe()}")
        if config.focus.decide and emotion in PAIR and focus.emotion in PAIR and focus.emotion != emotion:
            steps.append(f"focus decides: {emotion} -> {focus.emotion}")
            emotion = focus.emotion
    withheld = None
    if config.quality_gate and emotion in PAIR and not evidence.quality.ok:
        withheld = f"{emotion} withheld: audio below the quality bar ({'; '.join(evidence.quality.reasons)})"
        steps.append(f"quality gate: {withheld}")
        emotion = "unknown"
    if evidence.quality.telephony:
        steps.append(f"{evidence.quality.band} audio")
    cues = evidence.cues
    return Decision(
        emotion=emotion,
        model_emotion=model_emotion,
        profile=profile.name,
        enhanced=bool(fusion and fusion.get("enhanced")),
        withheld=withheld,
        quality=evidence.quality.to_dict(),
        fusion=fusion,
        focus=focus.to_dict(scores) if focus is not None else None,
        cues={**cues.to_dict(), "window": [round(t, 4) for t in evidence.cue_window]} if cues is not None else None,
        evidence=pair_reading(cues) if cues is not None else None,
        steps=tuple(steps),
    )


def pair_evidence(logits: np.ndarray, labels) -> np.ndarray:
    """Per-frame p(fearful) + p(disgusted) from (T, 9) logits in `labels` order."""
    probs = softmax(logits)
    return probs[:, list(labels).index(FEAR)] + probs[:, list(labels).index(DISGUST)]
