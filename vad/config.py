"""Options of the speech segmenter, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass

# Input rates the segmenter accepts, and so every live stream and file the engine takes at its own
# rate; backends resample the others to DECISION_RATE for the speech decision only.
INPUT_RATES = (8000, 16000, 32000, 44100, 48000)
WEBRTC_RATES = (8000, 16000, 32000, 48000)
SILERO_RATES = (8000, 16000)
DECISION_RATE = 16000

BACKENDS = ("webrtc", "silero")
WEBRTC_FRAME_MS = (10, 20, 30)
AGGRESSIVENESS = (0, 1, 2, 3)


@dataclass(frozen=True)
class VadConfig:
    """How speech is detected (backend) and turned into segments (hysteresis, padding).

    Frames: the webrtc backend classifies `frame_ms` frames. The silero backend ignores
    `frame_ms` and uses the model's own fixed frame of 512 samples at 16 kHz or 256 samples
    at 8 kHz (32 ms); other input rates are resampled to 16 kHz for the decision.

    Hysteresis: a segment opens once voiced frames worth `min_speech_ms` lie within the last
    `min_speech_ms / start_ratio`, and closes once unvoiced frames worth `min_silence_ms` lie
    within the last `min_silence_ms / end_ratio`.
    """

    # "webrtc" (py-webrtcvad, GMM, no model file) or "silero" (small neural network).
    backend: str = "webrtc"
    # webrtc frame length; webrtcvad only accepts 10, 20 or 30 ms. Unused by silero.
    frame_ms: int = 30
    # webrtc filtering mode: 0 lets the most audio through as speech, 3 the least.
    aggressiveness: int = 2
    # silero: a frame is speech when the model's probability is >= threshold.
    threshold: float = 0.5
    # Share of voiced frames (speech density) needed in the opening window to open.
    start_ratio: float = 0.6
    # Share of unvoiced frames needed in the closing window to close; a high value keeps
    # short pauses and isolated misclassified frames inside the segment.
    end_ratio: float = 0.9
    # Pre-roll reported before the first voiced frame so word onsets are not clipped.
    pre_speech_pad_ms: int = 300
    # Hangover kept after the last voiced frame so word endings are not clipped.
    post_speech_pad_ms: int = 300
    # Voiced duration needed to open a segment; shorter bursts produce no segment.
    min_speech_ms: int = 250
    # Unvoiced duration needed to close a segment.
    min_silence_ms: int = 400
    # Longer segments are split here (SpeechEnd(split=True) + SpeechStart).
    max_segment_s: float = 30.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.frame_ms not in WEBRTC_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {WEBRTC_FRAME_MS}, got {self.frame_ms!r}")
        if self.aggressiveness not in AGGRESSIVENESS:
            raise ValueError(
                f"aggressiveness must be one of {AGGRESSIVENESS}, got {self.aggressiveness!r}"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        for name in ("start_ratio", "end_ratio"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        for name in ("pre_speech_pad_ms", "post_speech_pad_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        for name in ("min_speech_ms", "min_silence_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be an int > 0, got {value!r}")
        if not self.max_segment_s > 0:
            raise ValueError(f"max_segment_s must be > 0, got {self.max_segment_s!r}")
