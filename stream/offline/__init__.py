"""Whole files: `emostream analyze` outputs, audio decoding, timeline plots, evaluation and labelled data."""
