"""Offline analysis of a whole recording: the seed WebUI's outputs, made by the streaming engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from models.frames import FRAME_STRIDE, LOOKAHEAD, SAMPLE_RATE, n_frames
from models.labels import EMOJI
from models.scoring import FrameOutput, Scorer, softmax, weights_warning
from stream.decision.checks import conclude, plan_checks, run_checks
from stream.decision.config import DecisionConfig
from stream.decision.fear_disgust import Decision, DecisionData
from stream.decision.fusion import Centroids
from stream.decision.profiles import Profile, load_library
from stream.decision.rules import Review
from stream.engine.analyzer import StreamAnalyzer
from stream.engine.config import AnalyzerConfig
from stream.engine.events import Event, to_dict
from vad import INPUT_RATES

from .audio_file import DecodedAudio, write_wav
from .plot import plot_timeline

GRANULARITIES = ("utterance", "frame")
DIRECT_SECONDS = 60.0  # longer files are encoded in pieces (attention cost grows with length²)
FEED_SECONDS = 10.0  # offline audio is fed to the stream analyzer in blocks of this length


@dataclass(frozen=True)
class AnalysisResult:
    """Everything `emostream analyze` reports for one input."""

    source: str
    duration: float
    granularity: str
    context: str | None
    model_id: str
    random_weights: bool
    precision: str  # what the model computed in (--dtype auto resolves to one)
    labels: tuple[str, ...]
    scores: np.ndarray  # (9,) utterance scores over the whole input (funasr's rule, profile bias applied)
    embedding: np.ndarray  # (D,) for utterance granularity, (T, D) for frame granularity
    decision: Decision  # the fear/disgust decision layer on the whole input
    profile: Mapping  # Profile.describe() of the profile the context selected
    review: Review | None = None  # the whole input needs a human (fear/disgust too close)
    events: list[Event] = field(default_factory=list)  # the streaming engine's events
    timestamp: str = ""
    planted: str | None = None  # a planted head's kind: the scores follow a planted rule, not emotion

    @property
    def emotion(self) -> str:
        """The decision layer's call on the whole input (the top score unless a step changed it)."""
        return self.decision.emotion

    @property
    def confidence(self) -> float:
        """The highest utterance score."""
        return float(np.max(self.scores))

    def of_type(self, kind: str) -> list[Event]:
        """The events of one type, in order."""
        return [e for e in self.events if e.type == kind]

    def to_json(self, parameters: dict) -> dict:
        """result.json: the seed's fields, plus the frame-level timeline for frame granularity."""
        body = {
            "source": self.source,
            "emotion": self.emotion,
            "emoji": EMOJI.get(self.emotion, ""),
            "confidence": round(self.confidence, 6),
            "scores": {l: round(float(s), 6) for l, s in zip(self.labels, self.scores)},
            "granularity": self.granularity,
            "timestamp": self.timestamp,
            "model_id": self.model_id,
            "random_weights": self.random_weights,
            "precision": self.precision,
            "duration": round(self.duration, 4),
            "context": self.context,
            "profile": dict(self.profile),
            "decision": self.decision.to_dict(),
            "review": to_dict(self.review) if self.review is not None else None,
        }
        if self.random_weights:
            body["warning"] = weights_warning(self.random_weights, self.planted)
        if self.planted:
            body["planted"] = self.planted
        if self.granularity == "frame":
            body["parameters"] = parameters
            body["windows"] = [to_dict(e) for e in self.of_type("window")]
            body["segments"] = [to_dict(e) for e in self.of_type("segment")]
            body["events"] = [
                to_dict(e) for e in self.events if e.type in ("transition", "dual_emotion", "review")
            ]
        return body


def encode_whole(scorer: Scorer, samples: np.ndarray) -> FrameOutput:
    """Frame logits and features over the whole input, as funasr computes them for short files."""
    piece = int(DIRECT_SECONDS * SAMPLE_RATE)
    if len(samples) <= piece:
        return scorer.score([samples])[0]
    # Pieces on the frame grid, each extended by the 80 samples its last frame needs.
    starts = range(0, len(samples), piece)
    waves = [samples[s : s + piece + LOOKAHEAD] for s in starts]
    waves = [w for w in waves if n_frames(len(w)) > 0]
    outs = [scorer.score([w])[0] for w in waves]
    keep = piece // FRAME_STRIDE
    logits = np.concatenate([o.logits[:keep] for o in outs])
    features = np.concatenate([o.features[:keep] for o in outs])
    return FrameOutput(logits=logits, features=features)



def analyze_audio(
    scorer: Scorer,
    audio: DecodedAudio,
    source: str,
    granularity: str = "utterance",
    context: str | None = None,
    config: AnalyzerConfig | None = None,
    progress: Callable[[float], None] | None = None,
    data: DecisionData | None = None,
) -> AnalysisResult:
    """Analyze decoded audio: utterance scores, embedding and decision, plus the streaming events.

    `context` selects the domain profile from `data` (default: the shipped neutral library);
    `data.centroids`, when loaded, let close fear/disgust calls be fused. The stream analyzer
    takes the file at its own rate when a live client could have sent that rate, so replaying
    a session's recording reproduces the events the live session emitted.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    config = config or AnalyzerConfig()
    data = data or DecisionData(load_library())
    profile = data.profile_for(context)
    samples = audio.samples
    whole = encode_whole(scorer, samples)
    logits = whole.logits + profile.bias_vector(scorer.labels).astype(np.float32)
    scores = softmax(logits.mean(axis=0))
    bias = profile.bias_vector(scorer.labels).astype(np.float32)
    decision, review = utterance_decision(
        scorer, samples, audio.rate, logits, whole.features, config.decisions, profile, bias, data.centroids
    )
    feed, rate = (audio.native, audio.rate) if audio.rate in INPUT_RATES else (samples, SAMPLE_RATE)
    analyzer = StreamAnalyzer(scorer, replace(config, sample_rate=rate), profile=profile, centroids=data.centroids)
    events: list[Event] = []
    block = int(FEED_SECONDS * rate)
    for start in range(0, len(feed), block):
        events += analyzer.feed(feed[start : start + block])
        if progress:
            progress(min(block, len(feed) - start) / rate)
    events += analyzer.flush()
    embedding = whole.features.mean(axis=0) if granularity == "utterance" else whole.features
    return AnalysisResult(
        source=source,
        duration=len(samples) / SAMPLE_RATE,
        granularity=granularity,
        context=context,
        model_id=scorer.model_id,
        random_weights=scorer.random_weights,
        precision=scorer.precision,
        labels=tuple(scorer.labels),
        scores=scores,
        embedding=embedding,
        decision=decision,
        profile=profile.describe(),
        review=review,
        events=events,
        timestamp=datetime.now().astimezone().isoformat(timespec="seconds"),
        planted=scorer.planted,
    )


def utterance_decision(
    scorer: Scorer, samples: np.ndarray, source_rate: int, logits: np.ndarray, features: np.ndarray,
    config: DecisionConfig, profile: Profile, bias: np.ndarray, centroids: Centroids | None,
) -> tuple[Decision, Review | None]:
    """The decision layer on a whole input (`logits`: its frames, `bias` in), as live segments get it."""
    scores = dict(zip(scorer.labels, softmax(logits.mean(axis=0)).tolist()))
    plan = plan_checks(config, scorer.labels, scores, logits, len(samples))
    evidence, focus = run_checks(plan, config, scorer, samples, source_rate, bias)
    found = conclude(
        config, scores, evidence, profile, features.mean(axis=0), centroids, focus, 0, 0.0, len(samples) / SAMPLE_RATE
    )
    return found.decision, found.review


def output_dir(root: str | Path, source: str, when: datetime | None = None) -> Path:
    """A fresh `<root>/<name>_<YYYYMMDD_HHMMSS>` folder (suffixed if it already exists)."""
    stamp = (when or datetime.now()).strftime("%Y%m%d_%H%M%S")
    base = Path(root) / f"{Path(source).stem}_{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    path.mkdir(parents=True)
    return path


def write_outputs(
    result: AnalysisResult, samples: np.ndarray, out: Path, config: AnalyzerConfig, embedding: bool
) -> list[Path]:
    """Write processed_audio.wav, result.json, events.jsonl, timeline.png (and embedding.npy)."""
    written = [out / "processed_audio.wav", out / "result.json", out / "events.jsonl", out / "timeline.png"]
    write_wav(written[0], samples)
    written[1].write_text(
        json.dumps(result.to_json(config.describe()), ensure_ascii=False, indent=2), encoding="utf-8"
    )
    with open(written[2], "w", encoding="utf-8") as f:
        for event in result.events:
            f.write(json.dumps(to_dict(event), ensure_ascii=False) + "\n")
    plot_timeline(result, written[3])
    if embedding:
        written.append(out / "embedding.npy")
        np.save(written[-1], result.embedding.astype(np.float32))
    return written
