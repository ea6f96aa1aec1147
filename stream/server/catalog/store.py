"""The catalog: sessions, alerts and the access log in SQLite or PostgreSQL, asked by the HTTP layer.

The recordings folder stays the source of truth; the catalog is its index, written as sessions
start and end and as alerts fire, and put right by `reconcile` (at start-up) or `rebuild` (by
hand) after anything that skipped it. Every method is a coroutine and no query runs on the
event loop's thread (see engine.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..alerts import ID_SEPARATOR, Alert
from . import cursor as cursors
from . import writes
from .engine import make_engine
from .errors import CatalogUnavailable
from .filters import DEFAULT_LIMIT, AlertFilters, SessionFilters, page_size
from .location import driver_url, redacted
from .migrate import upgrade
from .plan import plan
from .queries import LISTED_COLUMNS, alerts_page, sessions_page
from .records import alert_item, clean, iso_utc, session_item
from .schema import alerts, sessions

log = logging.getLogger("emostream.catalog")


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first; `next_cursor` fetches the next page (None: this is the last)."""

    items: list[dict]
    next_cursor: str | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Catalog:
    """An open catalog; `await Catalog.open(url)` makes one and brings its tables up to date."""

    def __init__(self, engine: AsyncEngine):
        """Use `Catalog.open`: it runs the migrations first."""
        self.engine = engine

    @classmethod
    async def open(cls, url: str, migrate: bool = True) -> Catalog:
        """Open the catalog at `url` (location.catalog_url), migrating its tables to the shipped head."""
        target = driver_url(url)
        if migrate:
            try:
                await upgrade(target)
            except (OSError, SQLAlchemyError) as exc:  # unreachable, refused, no such database...
                raise CatalogUnavailable(f"cannot open the catalog {redacted(target)}: {exc}") from exc
        log.info("catalog: %s", redacted(target))
        return cls(make_engine(target))

    @property
    def backend(self) -> str:
        """"sqlite" or "postgresql"."""
        return self.engine.dialect.name

    async def analyze(self) -> None:
        """Refresh the query planner's statistics (after a rebuild: the tables changed at once)."""
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")

    async def close(self) -> None:
        """Close every connection (SQLite: after refreshing the query planner's statistics)."""
        if self.backend == "sqlite":
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA optimize")
        await self.engine.dispose()

    # ---- writes: the live server ------------------------------------------------------------
    async def session_started(self, record: Mapping) -> None:
        """Index a session from its session.json contents (the recorder's record as it starts)."""
        async with self.engine.begin() as conn:
            await writes.write_sessions(conn, [record])
            await writes.recount(conn, [str(record["session_id"])])

    async def session_ended(self, session_id: str, status: str, ended_at: str, duration: float | None,
                            summary: Mapping | None) -> bool:
        """Mark a session ended as its recorder's close wrote session.json; False when the catalog lacks it."""
        status, ended_at = clean(status)[:32], iso_utc(ended_at)  # as records.session_row stores them
        duration = float(duration) if duration is not None else None
        async with self.engine.begin() as conn:
            await writes.lock_session(conn, session_id)
            return await writes.end_session(conn, session_id, status, ended_at, duration, summary)

    async def add_alert(self, alert: Alert, created_at: str | None = None) -> bool:
        """Record an alert as it fires (open); False when it was recorded already or its session is unknown."""
        try:
            async with self.engine.begin() as conn:
                return await writes.add_alert(conn, alert, iso_utc(created_at) if created_at else _now())
        except IntegrityError:  # no such session: reconcile indexes it from the recording
            log.warning("catalog: alert %s of a session it does not have", alert.id)
            return False

    async def acknowledge(self, alert_id: str, by: str, note: str | None = None,
                          assignee: str | None = None) -> tuple[dict, bool]:
        """Acknowledge an open alert: (the alert, True); already acknowledged: (it unchanged, False). KeyError if none."""
        a = alerts.c
        async with self.engine.begin() as conn:
            await writes.lock_session(conn, alert_id.rpartition(ID_SEPARATOR)[0])
            # One conditional UPDATE: of two acknowledgements racing, exactly one finds the alert open.
            result = await conn.execute(
                update(alerts).where(a.id == alert_id, a.state == "open")
                .values(state="acknowledged", ack_by=by, ack_at=_now(), ack_note=note, assignee=assignee)
            )
            first = result.rowcount == 1
            row = (await conn.execute(select(alerts).where(a.id == alert_id))).mappings().first()
            if row is None:
                raise KeyError(alert_id)
            if first:
                await writes.recount(conn, [row["session_id"]])
        return alert_item(row), first

    async def delete_session(self, session_id: str) -> bool:
        """Forget a deleted recording with its alerts; False when the catalog did not have it."""
        async with self.engine.begin() as conn:
            return await writes.delete_sessions(conn, [session_id]) == 1

    async def log_access(self, entry: Mapping) -> bool:
        """Add one access-log entry as stream.server.audit wrote it; False when it is there already."""
        async with self.engine.begin() as conn:
            return await writes.write_access(conn, [entry]) == 1

    # ---- reads: the HTTP layer --------------------------------------------------------------
    async def sessions(self, filters: SessionFilters | None = None, limit: int | None = DEFAULT_LIMIT,
                       cursor: str | None = None) -> Page:
        """One page of sessions, newest first by (started_at, session_id); at most MAX_LIMIT items.

        CatalogQueryError("bad_filter" / "bad_cursor") on malformed filters, limit or cursor.
        """
        f, n = (filters or SessionFilters()).checked(), page_size(limit)
        after = cursors.decode("sessions", cursor) if cursor else None
        async with self.engine.connect() as conn:
            how = await plan(conn, f)
            rows = (await conn.execute(sessions_page(f, n, after, how.facets, how.drive))).mappings().all()
        items = [session_item(row) for row in rows[:n]]
        more = len(rows) > n
        return Page(items, cursors.encode("sessions", (items[-1]["started_at"], items[-1]["session_id"])) if more else None)

    async def session(self, session_id: str) -> dict | None:
        """One session as the list shows it, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*LISTED_COLUMNS).where(sessions.c.session_id == session_id))).mappings().first()
        return session_item(row) if row else None

    async def alerts(self, filters: AlertFilters | None = None, limit: int | None = DEFAULT_LIMIT,
                     cursor: str | None = None) -> Page:
        """One page of alerts, newest first by (created_at, id); errors as `sessions`."""
        f, n = (filters or AlertFilters()).checked(), page_size(limit)
        after = cursors.decode("alerts", cursor) if cursor else None
        async with self.engine.connect() as conn:
            rows = (await conn.execute(alerts_page(f, n, after))).mappings().all()
        items = [alert_item(row) for row in rows[:n]]
        more = len(rows) > n
        return Page(items, cursors.encode("alerts", (items[-1]["at"], items[-1]["id"])) if more else None)

    async def alert(self, alert_id: str) -> dict | None:
        """One alert, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).mappings().first()
        return alert_item(row) if row else None

    async def ended_before(self, when: str, limit: int = 1000) -> list[str]:
        """Ids of sessions that ended before `when` (ISO), oldest first: retention's candidates."""
        s = sessions.c
        query = (select(s.session_id).where(s.ended_at < iso_utc(when), s.status != "live")
                 .order_by(s.ended_at).limit(limit))
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())


__all__ = ["Catalog", "Page"]
