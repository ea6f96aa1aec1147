"""The live server's side of the catalog: opened at start, reconciled with the recordings, fed as calls happen.

The catalog (stream.server.catalog) indexes what the recordings folder holds, so only sessions
with a recording are written (`--record none` keeps nothing, the catalog included). Writes go
through a `CatalogFeed`: sessions and sinks call plain methods on the event loop, one task writes.
The access log tells this of downloads and deletions from whichever thread made them; a deletion
(`DELETE`, retention) removes the session's rows too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from .alerts import Alert
from .catalog import Catalog, CatalogFeed, catalog_url, reconcile
from .recording import SessionRecorder

log = logging.getLogger("emostream.catalog")


class SessionCatalog:
    """The catalog of one server: its database, its write feed and the start-up reconcile."""

    def __init__(self, catalog: Catalog):
        """Use `SessionCatalog.open`."""
        self.catalog = catalog
        self.feed = CatalogFeed(catalog)
        self.reconciled = asyncio.Event()  # set once the start-up reconcile is done (or failed)
        self._recorded: set[str] = set()  # live sessions of this server with a row: their alerts are written
        self._loop = asyncio.get_running_loop()
        self._reconcile: asyncio.Task | None = None

    @classmethod
    async def open(cls, recordings: Path, url: str | None) -> SessionCatalog:
        """Open (and migrate) the catalog `url` names, or the SQLite file beside `recordings`; start its writer."""
        link = cls(await Catalog.open(catalog_url(recordings, url)))
        link.feed.start()
        return link

    def reconcile_soon(self, recordings: Path, live_ids: Callable[[], set[str]]) -> None:
        """Bring the catalog in line with the folder in the background: streams need not wait for it."""

        async def run() -> None:
            try:
                log.info("catalog reconciled with %s: %s", recordings, await reconcile(self.catalog, recordings, live_ids()))
            except Exception:  # an index that lags behind is no reason to refuse calls
                log.exception("catalog: reconciling with %s failed (`emostream catalog rebuild` repairs it)", recordings)
            finally:
                self.reconciled.set()

        self._reconcile = self._loop.create_task(run(), name="catalog-reconcile")

    async def close(self) -> None:
        """Finish the queued writes and close the database."""
        if self._reconcile is not None:
            self._reconcile.cancel()
            await asyncio.gather(self._reconcile, return_exceptions=True)
        await self.feed.close()
        await self.catalog.close()

    # ---- what the server tells it (on the event loop) -----------------------------------------
    def started(self, recorder: SessionRecorder) -> None:
        """A recorded session started: index its session.json as written."""
        self._recorded.add(recorder.session_id)
        self.feed.session_started(recorder.meta)

    def ended(self, recorder: SessionRecorder) -> None:
        """A recorded session ended: its final status, duration and summary, as session.json has them."""
        self._recorded.discard(recorder.session_id)
        meta = recorder.meta
        self.feed.session_ended(recorder.session_id, str(meta.get("status")), str(meta.get("ended_at")),
                                meta.get("duration_seconds"), meta.get("summary"))

    def alerted(self, alert: Alert, body: dict) -> None:
        """An alert fired (server.on_alert): record it open, if its session has a recording here."""
        if alert.session_id in self._recorded:
            self.feed.add_alert(alert, body["at"])

    def repaired(self, record: dict) -> None:
        """A recording left "live" by a dead server was repaired (any thread): index it as it now reads."""
        self._loop.call_soon_threadsafe(self.feed.session_started, record)

    def accessed(self, entry: dict) -> None:
        """An access-log entry (any thread): log it; a deletion also forgets the session."""
        self._loop.call_soon_threadsafe(self._accessed, entry)

    def _accessed(self, entry: dict) -> None:
        self.feed.log_access(entry)
        if entry.get("action") == "delete":
            self.feed.delete_session(entry["session_id"])

    # ---- what the HTTP layer asks --------------------------------------------------------------
    async def acknowledge(self, alert_id: str, by: str, note: str | None, assignee: str | None) -> tuple[dict, bool]:
        """Catalog.acknowledge, after the writes still queued (an alert raised a moment ago is known)."""
        try:
            return await self.catalog.acknowledge(alert_id, by, note, assignee)
        except KeyError:
            await self.feed.flush()
            return await self.catalog.acknowledge(alert_id, by, note, assignee)


__all__ = ["SessionCatalog"]
