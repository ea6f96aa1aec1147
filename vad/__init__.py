"""Voice activity detection: a streaming speech segmenter over webrtcvad or Silero VAD."""

from .classifiers import SAMPLE_RATES, FrameClassifier, make_classifier
from .config import VadConfig
from .events import SpeechEnd, SpeechStart, VadEvent
from .segmenter import SpeechSegmenter

__all__ = [
    "SAMPLE_RATES",
    "FrameClassifier",
    "SpeechEnd",
    "SpeechSegmenter",
    "SpeechStart",
    "VadConfig",
    "VadEvent",
    "make_classifier",
]
