"""Streaming speech segmenter: audio chunks in, SpeechStart / SpeechEnd events out."""

from __future__ import annotations

import math
from collections import deque
from itertools import islice

import numpy as np

from .backends import make_classifier
from .config import VadConfig
from .events import SpeechEnd, SpeechStart, VadEvent
from .framing import FrameBuffer


class SpeechSegmenter:
    """Cuts a stream into speech segments; sans-I/O, indices in input samples.

    Audio of any chunk length is regrouped into the classifier's fixed frames, so the
    events depend only on the audio, never on how it was chunked. Hysteresis (see
    `VadConfig`): a segment opens once voiced frames worth `min_speech_ms` lie within the
    last `min_speech_ms / start_ratio`, back-dated to its first voiced frame minus
    `pre_speech_pad_ms`; it closes once unvoiced frames worth `min_silence_ms` lie within
    the last `min_silence_ms / end_ratio`, at its last voiced frame plus
    `post_speech_pad_ms` (never past the audio seen so far). A segment certain to run
    past `max_segment_s` is split at exactly that length.
    """

    def __init__(self, config: VadConfig, sample_rate: int) -> None:
        # The factory validates the rate and loads the model.
        self._classifier = make_classifier(config, sample_rate)
        self._config = config
        self._sample_rate = sample_rate
        self._frame = self._classifier.frame_samples
        self._pre_pad = self._ms_to_samples(config.pre_speech_pad_ms)
        self._post_pad = self._ms_to_samples(config.post_speech_pad_ms)
        self._max_segment = max(1, round(config.max_segment_s * sample_rate))
        self._open_need = math.ceil(self._ms_to_samples(config.min_speech_ms) / self._frame)
        self._open_window = _frames_for_ratio(self._open_need, config.start_ratio)
        self._close_need = math.ceil(self._ms_to_samples(config.min_silence_ms) / self._frame)
        self._close_window = _frames_for_ratio(self._close_need, config.end_ratio)
        # Ring of the latest frame decisions (True = voiced), newest last.
        self._recent: deque[bool] = deque(maxlen=max(self._open_window, self._close_window))
        self._frames = FrameBuffer(self._frame)
        self._received = 0
        self._processed = 0  # end of the last classified frame
        self._start: int | None = None  # start of the open segment
        self._last_voiced_end = 0  # end of the open segment's last voiced frame
        self._floor = 0  # end of the previous segment: no new segment starts before it
        self._finished = False

    def _ms_to_samples(self, ms: int) -> int:
        return round(ms * self._sample_rate / 1000)

    @property
    def config(self) -> VadConfig:
        """The options this segmenter was built with."""
        return self._config

    @property
    def sample_rate(self) -> int:
        """Rate of the input stream; all event samples count at this rate."""
        return self._sample_rate

    @property
    def frame_samples(self) -> int:
        """Length of one classified frame in input samples."""
        return self._frame

    @property
    def samples_received(self) -> int:
        """Number of input samples pushed since construction or `reset()`."""
        return self._received

    @property
    def committed(self) -> int | None:
        """Sample up to which the open segment is certain to extend; None when none is open.

        Never decreases within a segment, and the segment's `SpeechEnd.sample` is >= it.
        """
        if self._start is None:
            return None
        return max(self._start, min(self._last_voiced_end + self._post_pad, self._processed))

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        """Feed the next chunk (1-D float32 in [-1, 1] or int16); return the events now final."""
        if self._finished:
            raise RuntimeError("push() after flush(); call reset() to start a new stream")
        audio = _as_float32(samples)
        self._received += len(audio)
        events: list[VadEvent] = []
        for frame in self._frames.push(audio):
            frame_start = self._processed
            self._processed += self._frame
            self._step(self._classifier.is_speech(frame), frame_start, self._processed, events)
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: classify the partial last frame and close any open segment."""
        if self._finished:
            return []
        events: list[VadEvent] = []
        tail = self._frames.remainder
        if len(tail):
            # Zero-padding keeps the classifier's frame length; the frame's reach is
            # capped at the samples actually received.
            frame = np.zeros(self._frame, dtype=np.float32)
            frame[: len(tail)] = tail
            frame_start, self._processed = self._processed, self._received
            self._step(self._classifier.is_speech(frame), frame_start, self._received, events)
            self._frames.clear()
        if self._start is not None:
            self._close(self._received, events)
        self._finished = True
        return events

    def reset(self) -> None:
        """Start a new stream at sample 0 (keeps the loaded model)."""
        self._classifier.reset()
        self._recent.clear()
        self._frames.clear()
        self._received = 0
        self._processed = 0
        self._start = None
        self._last_voiced_end = 0
        self._floor = 0
        self._finished = False

    def _step(self, voiced: bool, frame_start: int, frame_end: int, events: list[VadEvent]) -> None:
        """Advance the hysteresis by one classified frame [frame_start, frame_end)."""
        self._recent.append(voiced)
        if self._start is None:
            if self._count_recent(self._open_window, True) < self._open_need:
                return
            self._open(frame_start, events)
            # The count only reaches the need when a voiced frame arrives: this one.
            self._last_voiced_end = frame_end
        elif voiced:
            self._last_voiced_end = frame_end
        elif self._count_recent(self._close_window, False) >= self._close_need:
            self._close(frame_end, events)
            return
        # Split only once the segment is certain to run past the maximum: when the
        # hangover would end it before, closing caps it instead, and no empty piece is
        # left after the split. Until then `committed` <= start + max, so the split
        # sample is >= every `committed` reported for the piece it ends.
        while min(self._last_voiced_end + self._post_pad, frame_end) > self._max_end():
            split = self._max_end()
            events.append(SpeechEnd(split, split=True))
            events.append(SpeechStart(split))
            self._start = split

    def _max_end(self) -> int:
        """Latest end the open segment may have."""
        assert self._start is not None
        return self._start + self._max_segment

    def _count_recent(self, n: int, voiced: bool) -> int:
        """How many of the latest `n` frame decisions equal `voiced`."""
        return sum(1 for v in islice(reversed(self._recent), n) if v == voiced)

    def _open(self, frame_start: int, events: list[VadEvent]) -> None:
        # Back-date to the oldest voiced frame of the opening window, then the pre-roll.
        window = list(islice(reversed(self._recent), self._open_window))
        frames_back = max(i for i, v in enumerate(window) if v)
        onset = frame_start - frames_back * self._frame
        self._start = max(onset - self._pre_pad, self._floor)
        events.append(SpeechStart(self._start))

    def _close(self, limit: int, events: list[VadEvent]) -> None:
        # `limit` (audio seen so far) and the maximum length cap the hangover.
        assert self._start is not None
        end = min(self._last_voiced_end + self._post_pad, limit, self._max_end())
        end = max(end, self._start)
        events.append(SpeechEnd(end))
        self._floor = end
        self._start = None
        # Decisions before the end belong to the closed segment, not to the next onset.
        self._recent.clear()


def _frames_for_ratio(need: int, ratio: float) -> int:
    """Window length in frames in which `need` frames make up at least `ratio`."""
    # Rounded first so that e.g. 9 / 0.6 = 15.000000000000002 gives 15, not 16.
    return max(need, math.ceil(round(need / ratio, 9)))


def _as_float32(samples: np.ndarray) -> np.ndarray:
    """View float32 input as is; scale int16 input to [-1, 1)."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be 1-D (mono), got shape {samples.shape}")
    if samples.dtype == np.float32:
        return samples
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / np.float32(32768)
    raise ValueError(f"samples must be float32 in [-1, 1] or int16, got {samples.dtype}")
