"""Ordered, non-blocking delivery of JSON messages to sockets (clients and monitors)."""

from __future__ import annotations

import asyncio
import contextlib
import json

from stream.protocol.closing import CloseCode


def encode(message: dict, compact: bool = False) -> str:
    """A message as JSON text (`compact`: without spaces); a client's lone surrogate in it is escaped rather than unsendable."""
    separators = (",", ":") if compact else None
    text = json.dumps(message, ensure_ascii=False, separators=separators)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON's \uXXXX escapes carry it; UTF-8 cannot
        return json.dumps(message, separators=separators)
    return text


class Outbox:
    """One writer task per socket keeps messages in order without blocking the analyzer.

    What waits to be sent is bounded in bytes as well as in messages: a client that stops reading
    is closed (1013) rather than left open and silent, so a dashboard notices and reconnects.
    """

    def __init__(self, websocket, limit: int = 10_000, max_bytes: int = 4 << 20):
        self.ws = websocket
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=limit)
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self.task = asyncio.get_running_loop().create_task(self._write())
        self.broken = False
        self._closer: asyncio.Task | None = None

    def put(self, message: dict, counted: bool = True) -> None:
        """Queue a JSON message; a client too slow to read `limit` messages or `max_bytes` is closed.

        `counted=False` queues a message outside the byte budget: a monitor's first snapshot, whose
        size follows the sessions' metadata, not the reader's speed.
        """
        if not self.broken:
            self.put_text(encode(message), counted)

    def put_text(self, text: str, counted: bool = True) -> None:
        """Queue a message already encoded as JSON text (one encoding serves many sockets), as `put`."""
        if self.broken:
            return
        size = len(text.encode("utf-8")) if counted else 0
        if self.queued_bytes + size > self.max_bytes:
            self._too_slow()
            return
        try:
            self.queue.put_nowait((text, size))
        except asyncio.QueueFull:
            self._too_slow()
            return
        self.queued_bytes += size

    def _too_slow(self) -> None:
        self.broken = True
        self.task.cancel()  # it may be stuck sending to a client that does not read
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queued_bytes = 0
        self._closer = asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=CloseCode.TRY_AGAIN, reason="too_slow")  # a reason from codes.CLOSE_ONLY

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            text, size = item
            self.queued_bytes -= size
            try:
                await self.ws.send_text(text)
            except Exception:  # the client went away; the session still finishes and records
                self.broken = True
                return

    async def drain(self) -> None:
        """Send everything queued, then stop the writer."""
        if not self.broken:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self.task, timeout=30)
        if self._closer is not None:
            with contextlib.suppress(BaseException):
                await self._closer

