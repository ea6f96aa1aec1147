"""Options of the fear/disgust decision layer: frozen dataclasses, validated in one place each."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.errors import ConfigError

from .fusion import FusionConfig
from .quality import QualityBar

CUE_MODES = ("flagged", "always", "off")


@dataclass(frozen=True)
class FocusConfig:
    """Focus-window re-scoring (the seed's step 1): re-score the crop around the fear/disgust peak."""

    enabled: bool = True
    ambiguous_gap: float = 0.15  # run when fear or disgust leads and |fear - disgust| < this
    min_seconds: float = 0.3  # the crop's length lies in [min_seconds, max_seconds]
    max_seconds: float = 0.8
    extend_ratio: float = 0.5  # grow the crop over frames with evidence >= this x the peak's
    decide: bool = False  # let the crop's fear/disgust call replace the segment's (off: report only)

    def __post_init__(self):
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ConfigError("focus: need 0 < min_seconds <= max_seconds")
        if not 0 <= self.ambiguous_gap <= 1 or not 0 <= self.extend_ratio <= 1:
            raise ConfigError("focus: ambiguous_gap and extend_ratio must lie in [0, 1]")


@dataclass(frozen=True)
class DecisionConfig:
    """The fear/disgust decision layer: review and dual-emotion thresholds and each remedy step."""

    review_gap: float = 0.15  # |fear - disgust| below this, where either leads -> review
    dual_min_peak: float = 0.60  # both emotions' peak smoothed scores above this...
    dual_max_gap: float = 0.05  # ...and their peaks closer than this -> dual-emotion report
    # Transitions between these two are marked as flagged (either direction).
    flagged_pair: tuple[str, str] = ("fearful", "disgusted")
    quality_gate: bool = True  # withhold a fear/disgust call on audio below `quality`
    quality: QualityBar = field(default_factory=QualityBar)
    cues: str = "flagged"  # acoustic cues: for flagged segments (pair leads or dual), always, off
    cues_max_seconds: float = 8.0  # longer segments: cues over this much, centred on the fear/disgust peak
    fusion: FusionConfig = field(default_factory=FusionConfig)  # used when centres are loaded
    focus: FocusConfig = field(default_factory=FocusConfig)

    def __post_init__(self):
        for name in ("review_gap", "dual_min_peak", "dual_max_gap"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"decisions: {name} must lie in [0, 1]")
        if self.cues_max_seconds < 1.0:
            raise ConfigError("decisions: cues_max_seconds must be at least 1 s")
        if self.cues not in CUE_MODES:
            raise ConfigError(f"decisions: cues must be one of {', '.join(CUE_MODES)}, got {self.cues!r}")
