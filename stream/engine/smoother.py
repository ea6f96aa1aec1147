"""Temporal smoother: EMA over window scores, with hysteresis and a minimum dwell time.

Method (also in docs/events.md): per window, s = a·p + (1 − a)·s_prev with
a = 1 − exp(−hop / time_constant); the EMA restarts at each speech segment. The dominant
emotion switches only when another emotion's smoothed score exceeds the current one's by
`switch_margin` in every window for `min_dwell` seconds; the switch is then back-dated to the
first of those windows. Causal, so it runs live with no look-ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SmootherConfig


@dataclass(frozen=True)
class Switch:
    """A confirmed change of the dominant emotion."""

    from_index: int
    to_index: int
    since_window: int  # how many windows ago (0 = this one) the new emotion took the lead


@dataclass(frozen=True)
class SmoothedStep:
    """The smoother's state after one window."""

    scores: np.ndarray  # smoothed scores, same order as the labels
    dominant: int  # label index of the dominant emotion
    switch: Switch | None


class Smoother:
    """Stateful EMA + hysteresis smoother over a stream's windows."""

    def __init__(self, config: SmootherConfig, hop_seconds: float):
        """Prepare for windows `hop_seconds` apart."""
        self.alpha = 1.0 if config.time_constant == 0 else 1 - math.exp(-hop_seconds / config.time_constant)
        self.margin = config.switch_margin
        self.dwell_windows = max(1, math.ceil(config.min_dwell / hop_seconds - 1e-9))
        self.dominant: int | None = None
        self._ema: np.ndarray | None = None
        self._challenger: int | None = None
        self._streak = 0

    def start_segment(self) -> None:
        """Restart the EMA for a new speech segment; the dominant emotion carries over."""
        self._ema = None
        self._challenger, self._streak = None, 0

    def update(self, scores: np.ndarray) -> SmoothedStep:
        """Feed one window's scores; return the smoothed state and any confirmed switch."""
        p = np.asarray(scores, dtype=np.float64)
        self._ema = p.copy() if self._ema is None else self.alpha * p + (1 - self.alpha) * self._ema
        ema = self._ema
        leader = int(np.argmax(ema))
        switch = None
        if self.dominant is None:
            self.dominant = leader
        elif leader != self.dominant and ema[leader] - ema[self.dominant] >= self.margin:
            self._streak = self._streak + 1 if leader == self._challenger else 1
            self._challenger = leader
            if self._streak >= self.dwell_windows:
                switch = Switch(self.dominant, leader, since_window=self._streak - 1)
                self.dominant = leader
                self._challenger, self._streak = None, 0
        else:
            self._challenger, self._streak = None, 0
        return SmoothedStep(scores=ema.astype(np.float32), dominant=self.dominant, switch=switch)
