"""Engine options: frozen dataclasses per concern, validated in one place each."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from models.errors import ConfigError
from models.frames import FRAME_STRIDE, LOOKAHEAD, SAMPLE_RATE, seconds_to_samples
from stream.decision.config import DecisionConfig
from vad import INPUT_RATES, VadConfig


def grid_samples(name: str, seconds: float, minimum: float = 0.0) -> int:
    """Seconds as 16 kHz samples that must lie on the 20 ms frame grid; fail loudly otherwise."""
    n = seconds_to_samples(seconds)
    if n % FRAME_STRIDE or seconds < minimum:
        raise ConfigError(
            f"{name} must be a multiple of 0.02 s (the model's frame step) and at least "
            f"{minimum} s, got {seconds}"
        )
    return n


@dataclass(frozen=True)
class SmootherConfig:
    """EMA with hysteresis and a minimum dwell time over window scores (docs/events.md)."""

    time_constant: float = 0.3  # seconds; EMA weight per window is 1 - exp(-hop / time_constant)
    switch_margin: float = 0.05  # a challenger must lead the current emotion by this much...
    min_dwell: float = 0.3  # ...for this many seconds of consecutive windows before a switch

    def __post_init__(self):
        if self.time_constant < 0 or self.min_dwell < 0 or not 0 <= self.switch_margin < 1:
            raise ConfigError(
                "smoother: time_constant and min_dwell must be >= 0 s and switch_margin in [0, 1)"
            )


@dataclass(frozen=True)
class AnalyzerConfig:
    """Everything a stream analyzer needs besides the model."""

    sample_rate: int = SAMPLE_RATE  # input rate; audio is resampled to 16 kHz for VAD and model
    window_seconds: float = 0.4  # the seed's FRAME_WINDOW_SECONDS
    hop_seconds: float = 0.1
    chunk_seconds: float = 2.0  # speech is scored in chunks of this length...
    context_seconds: float = 1.0  # ...each with up to this much left context (not re-emitted)
    vad: VadConfig = field(default_factory=VadConfig)
    smoother: SmootherConfig = field(default_factory=SmootherConfig)
    decisions: DecisionConfig = field(default_factory=DecisionConfig)

    def __post_init__(self):
        if self.sample_rate not in INPUT_RATES:
            raise ConfigError(
                f"sample_rate must be one of {', '.join(map(str, INPUT_RATES))} Hz, "
                f"got {self.sample_rate}"
            )
        window = grid_samples("window_seconds", self.window_seconds, minimum=0.04)
        hop = grid_samples("hop_seconds", self.hop_seconds, minimum=0.02)
        chunk = grid_samples("chunk_seconds", self.chunk_seconds, minimum=0.4)
        grid_samples("context_seconds", self.context_seconds)
        if hop > window:
            raise ConfigError("hop_seconds must not exceed window_seconds")
        if chunk < window:
            raise ConfigError("chunk_seconds must be at least window_seconds")

    # Derived units, in 16 kHz samples and 50 Hz frames.
    @property
    def window_frames(self) -> int:
        """Frames in one window."""
        return seconds_to_samples(self.window_seconds) // FRAME_STRIDE

    @property
    def hop_frames(self) -> int:
        """Frames between window starts."""
        return seconds_to_samples(self.hop_seconds) // FRAME_STRIDE

    @property
    def chunk_samples(self) -> int:
        """16 kHz samples per scored chunk (without context)."""
        return seconds_to_samples(self.chunk_seconds)

    @property
    def context_samples(self) -> int:
        """16 kHz samples of left context per chunk."""
        return seconds_to_samples(self.context_seconds)

    @property
    def job_samples(self) -> int:
        """The longest audio one chunk sends to the model: its context, itself and the lookahead."""
        return self.context_samples + self.chunk_samples + LOOKAHEAD

    def describe(self) -> dict:
        """The parameters a client or a saved result should know about."""
        return {
            "sample_rate": self.sample_rate,
            "model_rate": SAMPLE_RATE,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "chunk_seconds": self.chunk_seconds,
            "context_seconds": self.context_seconds,
            "vad": asdict(self.vad),
            "smoother": asdict(self.smoother),
            "decisions": asdict(self.decisions),
        }
