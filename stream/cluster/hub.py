"""The SessionHub deployment: what a dashboard sees is the same whichever replica it reaches.

Why a Ray actor (a one-replica Serve deployment) and not the MQTT broker: the hub must exist
whenever the Ray application does, with nothing else to install or configure, and MQTT is an
optional sink that many sites run without. Every ingress replica sends the hub its live
sessions and, while some other replica has a monitor connected, the messages its monitors would
get (session starts and ends, events, alerts, overloads); replicas with monitors long-poll the
hub for the others' messages. The hub holds only soft state: if it restarts, the replicas'
next snapshots (a tenth of a second apart) rebuild the live list.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

STALE_SECONDS = 5.0  # a replica silent this long is gone: its sessions are no longer live
WATCH_SECONDS = 3.0  # a replica that polled this recently has monitors connected
# The log for pollers that fall behind, bounded in bytes too: a message carries what a client sent
# (a session's metadata, up to --max-message-bytes), so a count alone bounds nothing.
KEEP_MESSAGES = 20_000
KEEP_BYTES = 32 << 20


def message_bytes(message: dict) -> int:
    """A monitor message's size as JSON: what the byte bounds count."""
    return len(json.dumps(message, separators=(",", ":"), default=str))


class BoundedLog:
    """Items, oldest first, bounded by count and by their total size: past either bound the oldest go."""

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: deque[tuple[Any, int]] = deque()

    def append(self, item: Any, size: int) -> None:
        """Add `item` of `size` bytes, dropping the oldest items past the bounds."""
        self._items.append((item, size))
        self.bytes += size
        while self._items and (len(self._items) > self.max_items or self.bytes > self.max_bytes):
            self.bytes -= self._items.popleft()[1]

    def take(self) -> list[tuple[Any, int]]:
        """Remove and return every item with its size, oldest first."""
        items = list(self._items)
        self._items.clear()
        self.bytes = 0
        return items

    def first(self) -> Any:
        """The oldest item (the log must not be empty)."""
        return self._items[0][0]

    def __iter__(self):
        return (item for item, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class HubView:
    """What a replica learns when it publishes: the other replicas' live sessions and watchers."""

    others_live: tuple[dict, ...]  # session descriptions, as `LiveSession.describe()` gives them
    others_watching: bool  # True: some other replica has a monitor, so send it the messages
    seq: int  # the hub's newest message number


@dataclass(frozen=True)
class HubBatch:
    """Messages from other replicas since a replica's last poll."""

    seq: int  # poll again after this one
    messages: tuple[dict, ...]
    gap: bool  # True: messages were lost in between (the hub restarted or its log wrapped)


class SessionHub:
    """Live sessions of every ingress replica and a short log of their monitor messages."""

    def __init__(self, keep: int = KEEP_MESSAGES, keep_bytes: int = KEEP_BYTES):
        """Keep the newest messages, at most `keep` of them and `keep_bytes` of JSON, for pollers that fall behind."""
        self._log = BoundedLog(keep, keep_bytes)  # of (seq, replica, message)
        self._seq = 0
        self._live: dict[str, tuple[dict, ...]] = {}
        self._seen: dict[str, float] = {}
        self._nodes: dict[str, str] = {}
        self._watching: dict[str, float] = {}
        self._changed = asyncio.Condition()

    async def publish(self, replica: str, messages: list[dict], live: list[dict], node: str = "") -> HubView:
        """Take one replica's new messages and its current live sessions (`node`: the Ray node it runs on)."""
        now = time.monotonic()
        self._seen[replica] = now
        self._nodes[replica] = node
        self._live[replica] = tuple(live)
        if messages:
            for message in messages:
                self._seq += 1
                self._log.append((self._seq, replica, message), message_bytes(message))
            async with self._changed:
                self._changed.notify_all()
        return HubView(self._others_live(replica, now), self._others_watching(replica, now), self._seq)

    async def poll(self, replica: str, after: int, wait: float = 1.0) -> HubBatch:
        """Other replicas' messages numbered above `after`, waiting up to `wait` s for some."""
        self._watching[replica] = time.monotonic()
        if after == self._seq:  # nothing new yet: wait for some (a newer `after` means the hub restarted)
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: self._seq > after), wait)
                except asyncio.TimeoutError:
                    pass
        oldest = self._log.first()[0] if self._log else self._seq + 1
        gap = after > self._seq or oldest > after + 1
        messages = tuple(m for seq, origin, m in self._log if seq > after and origin != replica)
        return HubBatch(self._seq, messages, gap)

    def live(self) -> list[dict]:
        """Every live session of every replica that is still reporting."""
        now = time.monotonic()
        return [s for r, sessions in self._live.items() if now - self._seen[r] < STALE_SECONDS for s in sessions]

    def replicas(self) -> dict:
        """Each ingress replica: its node, seconds since it last reported, live sessions, whether it watches."""
        now = time.monotonic()
        return {
            r: {"node": self._nodes.get(r, ""), "age_seconds": round(now - self._seen[r], 2),
                "sessions": len(self._live.get(r, ())), "watching": now - self._watching.get(r, -1e9) < WATCH_SECONDS}
            for r in self._seen
        }  # fmt: skip

    def _others_live(self, replica: str, now: float) -> tuple[dict, ...]:
        return tuple(
            s for r, sessions in self._live.items() if r != replica and now - self._seen[r] < STALE_SECONDS
            for s in sessions
        )  # fmt: skip

    def _others_watching(self, replica: str, now: float) -> bool:
        return any(now - t < WATCH_SECONDS for r, t in self._watching.items() if r != replica)
