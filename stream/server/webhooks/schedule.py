"""When a failed delivery is tried again, and when it is given up (a dead letter).

Exponential back-off from `first` seconds, doubling per failed attempt up to `ceiling`, each
delay shortened by up to `jitter` of itself at random (so receivers coming back are not hit by
every sender at once); a `Retry-After` the receiver sent is honoured up to `ceiling`. A delivery
still failing `give_up` seconds after it was queued (or revived) is a dead letter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetrySchedule:
    """The back-off of one outbox; seconds throughout."""

    first: float = 2.0  # after the first failed attempt
    factor: float = 2.0  # each later delay this many times the one before
    ceiling: float = 300.0  # no delay longer than this (--webhook-max-delay)
    give_up: float = 24 * 3600.0  # a delivery failing this long after it was queued is dead (--webhook-give-up-hours)
    jitter: float = 0.2  # each delay shortened by up to this fraction of itself, at random

    def __post_init__(self):
        if not (0 < self.first <= self.ceiling and self.factor >= 1 and self.give_up > 0 and 0 <= self.jitter < 1):
            raise ValueError(f"impossible retry schedule: {self}")

    def delay(self, failures: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `failures`-th failed attempt (from 1); `retry_after`: what the receiver asked."""
        if failures < 1:
            return 0.0
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.ceiling)
        exponent = min(failures - 1, 64)  # (the ceiling is reached long before; no float overflow)
        base = min(self.first * self.factor**exponent, self.ceiling)
        return base * (1 - self.jitter * (rng or random).random())

    def dead(self, age: float) -> bool:
        """Whether a delivery that just failed, `age` seconds after it was queued, is given up."""
        return age >= self.give_up


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


__all__ = ["RetrySchedule", "retry_after"]
