"""A file's channels as parties: one analysis per voice (`emostream analyze --split-channels`).

Call recorders often write the caller on one channel and the agent on the other. Each channel
is analyzed exactly as a mono file holding only that channel would be; the results are written
beside each other in one folder: `result.json` holds every party's, `events.jsonl` every party's
events tagged with `party` (as a live split session records them), `timeline.png` one lane per
party, and per party `processed_audio-<party>.wav` (and `embedding-<party>.npy`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.scoring import RANDOM_WEIGHTS_WARNING, Scorer
from stream.decision.fear_disgust import DecisionData
from stream.engine.config import AnalyzerConfig
from stream.engine.events import to_dict
from stream.engine.parties import parties_for, tagged

from .analyze import AnalysisResult, analyze_audio
from .audio_file import DecodedAudio, write_wav
from .plot import plot_parties


@dataclass(frozen=True)
class PartyResult:
    """One party's analysis: the channel it came from and what `analyze_audio` found in it."""

    party: str
    channel: int
    audio: DecodedAudio
    result: AnalysisResult


@dataclass(frozen=True)
class SplitResult:
    """Every party of one split file, in channel order."""

    source: str
    parties: tuple[PartyResult, ...]

    def to_json(self, parameters: dict) -> dict:
        """result.json of a split file: every party's result.json under its name."""
        first = self.parties[0].result
        body = {
            "source": self.source,
            "split_channels": True,
            "granularity": first.granularity,
            "model_id": first.model_id,
            "random_weights": first.random_weights,
            "parties": {p.party: {"channel": p.channel, **p.result.to_json(parameters)} for p in self.parties},
        }
        if first.random_weights:
            body["warning"] = RANDOM_WEIGHTS_WARNING
        return body


def party_names(names: Sequence[str] | None, channels: int) -> tuple[str, ...]:
    """The parties of a file with `channels` channels: `names` (one per channel) or the channel indices."""
    return parties_for(names, channels, "--parties")


def analyze_channels(
    scorer: Scorer,
    channels: list[DecodedAudio],
    source: str,
    parties: Sequence[str] | None = None,
    granularity: str = "utterance",
    context: str | None = None,
    config: AnalyzerConfig | None = None,
    progress: Callable[[float], None] | None = None,
    data: DecisionData | None = None,
) -> SplitResult:
    """Analyze each channel on its own, as `analyze_audio` analyzes a mono file."""
    names = party_names(parties, len(channels))
    return SplitResult(
        source,
        tuple(
            PartyResult(name, i, audio, analyze_audio(scorer, audio, source, granularity, context, config, progress, data))
            for i, (name, audio) in enumerate(zip(names, channels))
        ),
    )


def write_split_outputs(split: SplitResult, out: Path, config: AnalyzerConfig, embedding: bool) -> list[Path]:
    """Write result.json, events.jsonl and timeline.png for all parties, and each party's audio (and embedding)."""
    written = [out / "result.json", out / "events.jsonl", out / "timeline.png"]
    written[0].write_text(json.dumps(split.to_json(config.describe()), ensure_ascii=False, indent=2), encoding="utf-8")
    with open(written[1], "w", encoding="utf-8") as f:
        for p in split.parties:
            for event in p.result.events:
                f.write(json.dumps(tagged(to_dict(event), p.party), ensure_ascii=False) + "\n")
    plot_parties([(p.party, p.result) for p in split.parties], written[2])
    for p in split.parties:
        written.append(out / f"processed_audio-{p.party}.wav")
        write_wav(written[-1], p.audio.samples)
        if embedding:
            written.append(out / f"embedding-{p.party}.npy")
            np.save(written[-1], p.result.embedding.astype(np.float32))
    return written


__all__ = ["PartyResult", "SplitResult", "analyze_channels", "party_names", "write_split_outputs"]
