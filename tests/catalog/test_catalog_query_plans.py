"""EXPLAIN says every list query walks an index in page order (SQLite, no statistics: the hardest case)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.dialects import sqlite

from stream.server.catalog import AlertFilters, Catalog, SessionFilters
from stream.server.catalog.queries import alerts_page, sessions_page

SESSION_CASES = [
    (SessionFilters(), "ix_sessions_started"),
    (SessionFilters(live=True), "ix_sessions_status"),
    (SessionFilters(status="interrupted", started_from="2025-01-01"), "ix_sessions_status"),
    (SessionFilters(source="twilio"), "ix_sessions_source"),
    (SessionFilters(profile="medical"), "ix_sessions_profile"),
    (SessionFilters(unacknowledged=True), "ix_sessions_open"),
    (SessionFilters(party="agent"), "ix_parties_party"),
    (SessionFilters(alert_kind="dual"), "ix_alert_kinds_kind"),
    (SessionFilters(metadata=(("customer", "c1"),)), "ix_session_metadata_value"),
    (SessionFilters(context="claim"), "driver"),  # contexts, its rows stored in page order (WITHOUT ROWID)
    (SessionFilters(context="claim", source="twilio"), "driver"),
    (SessionFilters(party="agent", status="live", started_to="2026-01-01"), "ix_parties_party"),
]
ALERT_CASES = [
    (AlertFilters(), "ix_alerts_created"),
    (AlertFilters(state="open"), "ix_alerts_state"),
    (AlertFilters(kind="review"), "ix_alerts_kind"),
]


def _plans(tmp_path, queries):
    async def body():
        catalog = await Catalog.open(str(tmp_path / "c.sqlite3"))
        out = []
        async with catalog.engine.connect() as conn:
            for query in queries:
                compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
                rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
                out.append(" | ".join(row[3] for row in rows.all()))
        await catalog.close()
        return out

    return asyncio.run(body())


@pytest.mark.parametrize(("filters", "index"), SESSION_CASES)
def test_session_pages_walk_an_index_and_never_sort(tmp_path, filters, index):
    key = ("2025-06-01T00:00:00.000000+00:00", "s1")
    first, later = _plans(tmp_path, [sessions_page(filters.checked(), 50, None), sessions_page(filters.checked(), 50, key)])
    for plan in (first, later):
        assert index in plan.split(" | ")[0] and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize(("filters", "index"), ALERT_CASES)
def test_alert_pages_walk_an_index_and_never_sort(tmp_path, filters, index):
    (plan,) = _plans(tmp_path, [alerts_page(filters.checked(), 50, ("2025-06-01T00:00:00.000000+00:00", "s1#1"))])
    assert index in plan and "TEMP B-TREE" not in plan, plan
