"""Segment boundary events emitted by the speech segmenter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeechStart:
    """A speech segment opens at `sample` (absolute index in the segmenter's input)."""

    sample: int


@dataclass(frozen=True)
class SpeechEnd:
    """A speech segment closes at `sample` (exclusive, absolute index in the input).

    `split` is True when the segment was cut at the maximum segment length; a
    `SpeechStart` at the same sample follows immediately.
    """

    sample: int
    split: bool = False


VadEvent = SpeechStart | SpeechEnd
