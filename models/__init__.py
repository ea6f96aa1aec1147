"""emotion2vec+ loading and batched frame scoring (models load in a factory, never at import)."""

from .labels import EMOJI, LABELS, with_emoji
from .loader import ModelOptions, load_scorer

__all__ = ["EMOJI", "LABELS", "ModelOptions", "load_scorer", "with_emoji"]
