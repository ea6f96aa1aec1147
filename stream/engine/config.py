"""Engine options: frozen dataclasses per concern, validated in one place each."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from models.errors import ConfigError
from models.frames import FRAME_STRIDE, LOOKAHEAD, SAMPLE_RATE, seconds_to_samples
from stream.decision.config import DecisionConfig
from vad import INPUT_RATES, VadConfig


# How a stream's speech is cut into chunks:
# - throughput: long chunks (chunk_seconds, 2 s by default): the least compute per second of
#   audio and batch-friendly, at up to a chunk of latency per window;
# - latency: short chunks (LATENCY_CHUNK_SECONDS) with the same left context, for one stream
#   served alone (`emostream listen`, a server's only live session): window events within about
#   1 s, for about twice the compute per second of audio;
# - auto: the shell decides per stream (listen: latency; the server: latency for a session that
#   opens while it serves no other, throughput otherwise; files: throughput).
# The plan depends only on the audio and the resolved mode, which `describe()` records.
CHUNK_MODES = ("auto", "throughput", "latency")
LATENCY_CHUNK_SECONDS = 0.5


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
    chunk_mode: str = "throughput"  # see CHUNK_MODES; "auto" runs as throughput until a shell resolves it
    vad: VadConfig = field(default_factory=VadConfig)
    smoother: SmootherConfig = field(default_factory=SmootherConfig)
    decisions: DecisionConfig = field(default_factory=DecisionConfig)

    def __post_init__(self):
        if self.chunk_mode not in CHUNK_MODES:
            raise ConfigError(f"chunk_mode must be one of {', '.join(CHUNK_MODES)}, got {self.chunk_mode!r}")
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

    @property
    def resolved_mode(self) -> str:
        """The mode this config runs in ("auto" not resolved by a shell runs as throughput)."""
        return "throughput" if self.chunk_mode == "auto" else self.chunk_mode

    def for_stream(self, alone: bool, latency_chunk: float = LATENCY_CHUNK_SECONDS, chunk_given: bool = False
                   ) -> "AnalyzerConfig":
        """This config for one stream: "auto" becomes "latency" for a stream served `alone`, else
        "throughput"; "latency" takes `latency_chunk` unless a chunk length was given explicitly."""
        mode = self.chunk_mode
        if mode == "auto":
            mode = "latency" if alone else "throughput"
        if mode == "latency" and not chunk_given:
            return replace(self, chunk_mode=mode, chunk_seconds=latency_chunk)
        return replace(self, chunk_mode=mode)

    def describe(self) -> dict:
        """The parameters a client or a saved result should know about."""
        return {
            "sample_rate": self.sample_rate,
            "model_rate": SAMPLE_RATE,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "chunk_seconds": self.chunk_seconds,
            "context_seconds": self.context_seconds,
            "chunk_mode": self.resolved_mode,
            "vad": asdict(self.vad),
            "smoother": asdict(self.smoother),
            "decisions": asdict(self.decisions),
        }
