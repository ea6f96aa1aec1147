"""Voice activity detection: a streaming speech segmenter over webrtcvad or Silero VAD."""

from .backends import make_classifier
from .base import FrameClassifier
from .config import INPUT_RATES, VadConfig
from .events import SpeechEnd, SpeechStart, VadEvent
from .segmenter import SpeechSegmenter

__all__ = [
    "FrameClassifier",
    "INPUT_RATES",
    "SpeechEnd",
    "SpeechSegmenter",
    "SpeechStart",
    "VadConfig",
    "VadEvent",
    "make_classifier",
]
