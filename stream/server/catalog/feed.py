"""The live server's catalog writes, in order and off the hot path: callers enqueue, one task writes.

Sessions, sinks and hooks are plain functions on the event loop; they call the feed's methods,
which return at once. One task applies the writes in the order they were made (a session's
start before its alerts, its alerts before its end). A write that fails is logged and skipped:
the recording holds the truth, and `reconcile` at the next start puts the catalog right.
Call the methods from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from ..alerts import Alert
from .store import Catalog

log = logging.getLogger("emostream.catalog")
MAX_PENDING = 10_000  # writes waiting for a slow or unreachable database; beyond, they are dropped


class CatalogFeed:
    """Queues the live server's catalog writes and applies them in order from one task."""

    def __init__(self, catalog: Catalog, max_pending: int = MAX_PENDING):
        """Writes wait in a queue of `max_pending` until `start` runs the writer task."""
        self.catalog = catalog
        self._queue: asyncio.Queue = asyncio.Queue(max_pending)
        self._task: asyncio.Task | None = None
        self.failed = 0  # writes that raised (logged)
        self.dropped = 0  # writes refused because the queue was full (logged)

    def start(self) -> None:
        """Start writing, on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="catalog-feed")

    async def flush(self) -> None:
        """Wait until every write queued so far is done."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then stop the writer task (the catalog stays open)."""
        if self._task is not None:
            await self.flush()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _put(self, write, *args) -> None:
        try:
            self._queue.put_nowait((write, args))
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("catalog: %d writes waiting; %s dropped (reconcile at the next start restores it)",
                      self._queue.qsize(), write.__name__)

    async def _run(self) -> None:
        while True:
            write, args = await self._queue.get()
            try:
                await write(*args)
            except Exception:  # noqa: BLE001 — the catalog is an index: a failed write must not stop the rest
                self.failed += 1
                log.exception("catalog: %s failed", write.__name__)
            finally:
                self._queue.task_done()

    # ---- the writes, as Catalog names them ----------------------------------------------------
    def session_started(self, record: Mapping) -> None:
        """Queue Catalog.session_started."""
        self._put(self.catalog.session_started, dict(record))

    def session_ended(self, session_id: str, status: str, ended_at: str, duration: float | None,
                      summary: Mapping | None) -> None:
        """Queue Catalog.session_ended."""
        self._put(self.catalog.session_ended, session_id, status, ended_at, duration, summary)

    def add_alert(self, alert: Alert, created_at: str | None = None) -> None:
        """Queue Catalog.add_alert."""
        self._put(self.catalog.add_alert, alert, created_at)

    def delete_session(self, session_id: str) -> None:
        """Queue Catalog.delete_session."""
        self._put(self.catalog.delete_session, session_id)

    def log_access(self, entry: Mapping) -> None:
        """Queue Catalog.log_access."""
        self._put(self.catalog.log_access, dict(entry))


__all__ = ["MAX_PENDING", "CatalogFeed"]
