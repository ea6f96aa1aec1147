"""Ordered, non-blocking delivery of JSON messages to sockets (clients and monitors)."""

from __future__ import annotations

import asyncio
import contextlib
import json


class Outbox:
    """One writer task per socket keeps messages in order without blocking the analyzer."""

    def __init__(self, websocket, limit: int = 10_000):
        self.ws = websocket
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=limit)
        self.task = asyncio.get_running_loop().create_task(self._write())
        self.broken = False

    def put(self, message: dict) -> None:
        """Queue a JSON message; a client too slow to read `limit` messages is marked broken."""
        if self.broken:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.broken = True

    async def _write(self) -> None:
        while True:
            message = await self.queue.get()
            if message is None:
                return
            try:
                await self.ws.send_text(json.dumps(message, ensure_ascii=False))
            except Exception:  # the client went away; the session still finishes and records
                self.broken = True
                return

    async def drain(self) -> None:
        """Send everything queued, then stop the writer."""
        if not self.broken:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, timeout=30)


class MonitorHub:
    """Fan-out of every session's events (and starts/ends) to dashboard sockets."""

    def __init__(self):
        self.outboxes: set[Outbox] = set()

    def broadcast(self, message: dict) -> None:
        """Send to every monitor; drop monitors that stopped reading."""
        for box in list(self.outboxes):
            box.put(message)
            if box.broken:
                self.outboxes.discard(box)
