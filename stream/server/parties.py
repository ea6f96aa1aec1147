"""The parties of a live session: one analysis per voice of a call, each fed only its own audio.

A call recorder's stereo channels or Twilio's inbound and outbound tracks carry one person each.
A session that is split holds one `PartyStream` per party, each with its own `StreamCore`; all
of them are scored through the session's one scheduler, so the model batches them together.
A session that is not split has one unnamed party: the (mixed) signal as a whole.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from models.errors import AudioError
from models.frames import SAMPLE_RATE
from stream.engine.analyzer import StreamCore
from stream.engine.events import Window


class PartyStream:
    """One party's analysis inside a live session: its core, its counts, when its audio came."""

    def __init__(self, name: str | None, core: StreamCore):
        """`name` is the party's name in a split session, None for the whole signal."""
        self.name = name
        self.core = core
        self.counts: Counter[str] = Counter()
        self.current: str | None = None  # the smoother's dominant emotion after the latest window
        self.latest: Window | None = None  # the latest window (its smoothed dominant emotion, score and end)
        self._arrivals: deque[tuple[int, float]] = deque()  # (16 kHz samples received, when)

    def push(self, samples: np.ndarray, now: float) -> None:
        """Analyze samples that arrived at `now` (monotonic seconds)."""
        self.core.push(samples)
        self._arrivals.append((round(self.core.received_seconds * SAMPLE_RATE), now))
        # Only windows ask for arrivals, and silence makes none: forget what no window can end in.
        self._forget_before(self.core.held_from)

    def arrival_of(self, sample: int) -> float:
        """When the audio containing 16 kHz `sample` arrived (older arrivals are forgotten)."""
        self._forget_before(sample)
        return self._arrivals[0][1]

    def _forget_before(self, sample: int) -> None:
        """Drop arrivals that ended before `sample`: a later query for `sample` or beyond skips them anyway."""
        while len(self._arrivals) > 1 and self._arrivals[0][0] < sample:
            self._arrivals.popleft()

    def take_events(self) -> list:
        """The core's new events, counted."""
        events = self.core.take_events()
        for event in events:
            self.counts[event.type] += 1
            if isinstance(event, Window):
                self.current = event.dominant
                self.latest = event
        return events

    def describe(self) -> dict:
        """This party's part of a session summary."""
        return {
            "duration_seconds": round(self.core.received_seconds, 3),
            "events": dict(self.counts),
            "current_emotion": self.current,
        }

    def state(self) -> dict | None:
        """Where this party stands for a monitor: its latest window's dominant emotion, score and end; None before one."""
        w = self.latest
        return None if w is None else {"emotion": w.dominant, "score": w.dominant_score, "time": w.end}


def split_frames(frames: np.ndarray, parties: tuple[str, ...]) -> dict[str, np.ndarray]:
    """(n, channels) sample frames -> each party's mono column, in channel order."""
    a = np.asarray(frames)
    if a.ndim != 2 or a.shape[1] != len(parties):
        raise AudioError(
            f"a split session takes (n, {len(parties)}) sample frames, one column per party "
            f"({', '.join(parties)}), got shape {a.shape}"
        )
    return {name: np.ascontiguousarray(a[:, i]) for i, name in enumerate(parties)}


__all__ = ["PartyStream", "split_frames"]
