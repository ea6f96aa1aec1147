"""The work a `StreamCore` hands out: every job type, and what each is answered with.

Jobs are compared and hashed by identity (schedulers key on them). `ModelJob`s go to the model
and are answered with its `FrameOutput`; an `EvidenceJob` needs no model and is answered with
`job.run()` (CPU-heavy: live servers run it off the event loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from stream.decision.checks import crop_seconds
from stream.decision.config import DecisionConfig
from stream.decision.fear_disgust import Evidence, measure


@dataclass(frozen=True, eq=False)
class ChunkJob:
    """A piece of one stream's speech waiting to be scored by the model."""

    segment: int
    origin: int  # absolute 16 kHz sample where the first owned frame starts
    first_frame: int  # segment frame index of the first frame this job owns
    skip_frames: int  # leading frames of context to drop from the model output
    n_owned: int  # frames this job owns
    audio: np.ndarray  # 16 kHz float32, context included


@dataclass(frozen=True, eq=False)
class FocusJob:
    """A segment's focus crop waiting to be scored alone by the model."""

    segment: int
    crop: tuple[int, int]  # samples of the segment's audio, from its start
    origin: int  # absolute 16 kHz sample where the segment starts
    audio: np.ndarray  # the crop, 16 kHz float32

    @property
    def start(self) -> float:
        """Stream seconds where the crop's first frame starts."""
        return crop_seconds(self.crop, self.origin)[0]

    @property
    def end(self) -> float:
        """Stream seconds where the crop's last frame's hop ends."""
        return crop_seconds(self.crop, self.origin)[1]


@dataclass(frozen=True, eq=False)
class EvidenceJob:
    """A segment's audio waiting for its quality and cue measurements (CPU only, no model)."""

    segment: int
    audio: np.ndarray  # the whole segment, 16 kHz float32
    source_rate: int
    config: DecisionConfig
    cue_span: tuple[int, int] | None  # samples of `audio` whose cues to measure; None: no cues

    def run(self) -> Evidence:
        """Measure (pitch tracking takes ~0.015 s per second of audio: run it off the event loop)."""
        return measure(self.audio, self.source_rate, self.config, self.cue_span)


ModelJob = Union[ChunkJob, FocusJob]  # answered with the model's FrameOutput
Job = Union[ChunkJob, FocusJob, EvidenceJob]
