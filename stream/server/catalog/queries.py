"""The catalog's list queries, newest first with keyset paging: filters become WHERE clauses.

A page is `ORDER BY key DESC LIMIT n+1` from after the cursor's key; the extra row says whether
another page follows. The key comparison is written `a <= k AND (a < k OR b < k2)` rather than
as a row value, so both databases walk an index range.

A session filter on a facet (metadata, party, alert kind, context: schema.FACETS) drives the
query: its (value, started_at, session_id) index is read in page order and joined to the
sessions, so a page costs the same for a value held by three sessions or by half of them.
The other filters are checked on each row met (EXISTS for facets, by primary key). Which
filter drives is plan.py's choice.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import ColumnElement, Select, Table, and_, exists, func, or_, select

from .filters import AlertFilters, SessionFilters
from .records import fold
from .schema import alert_kinds, alerts, contexts, parties, session_metadata, sessions
from .walk_join import WalkJoin

LISTED_COLUMNS = list(sessions.c)
Facet = tuple[Table, Callable[[Table], list[ColumnElement]]]  # a facet table and its conditions on an alias


def _after(first: ColumnElement, second: ColumnElement, key: tuple[str, str]) -> ColumnElement:
    """Rows that come after `key` in (first, second) descending order."""
    return and_(first <= key[0], or_(first < key[0], second < key[1]))


def _contains(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def facet_filters(f: SessionFilters) -> list[Facet]:
    """The checked filters that name a facet, most selective kinds first (the first one drives the query)."""
    found: list[Facet] = []
    for key, value in f.metadata:  # customer ids, call ids: usually few sessions each
        found.append((session_metadata, lambda t, k=key, v=value: [t.c.key == k, t.c.value == v]))
    if f.party is not None:
        found.append((parties, lambda t: [t.c.party == f.party]))
    if f.alert_kind is not None:
        found.append((alert_kinds, lambda t: [t.c.kind == f.alert_kind]))
    if f.context is not None:  # a substring: read all narrow rows, at worst
        found.append((contexts, lambda t: [t.c.folded.like(_contains(fold(f.context)), escape="\\")]))
    return found


def scalar_conditions(f: SessionFilters) -> list[ColumnElement]:
    """The WHERE clauses of checked session filters on the sessions' own columns (times aside)."""
    s = sessions.c
    where: list[ColumnElement] = []
    if f.live is not None:
        where.append(s.status == "live" if f.live else s.status != "live")
    for column, value in ((s.status, f.status), (s.source, f.source), (s.profile, f.profile)):
        if value is not None:
            where.append(column == value)
    if f.unacknowledged:
        where.append(s.open_alerts > 0)  # the partial index ix_sessions_open holds exactly these
    return where


def driving_conditions(f: SessionFilters) -> list[ColumnElement]:
    """The scalar filters an index of the sessions table can read in page order (ix_sessions_*)."""
    s = sessions.c
    found = [column == value for column, value in ((s.status, f.status), (s.source, f.source), (s.profile, f.profile))
             if value is not None]
    if f.live:
        found.append(s.status == "live")
    if f.unacknowledged:
        found.append(s.open_alerts > 0)
    return found


def _capped_count(table: Table, where: list[ColumnElement], cap: int) -> Select:
    # Ordered as a page walks: the database reads the filter's own index, never the whole table.
    ids = select(table.c.session_id).where(*where).order_by(table.c.started_at.desc()).limit(cap)
    return select(func.count()).select_from(ids.subquery())


def facet_size(facet: Facet, cap: int) -> Select:
    """How many sessions a facet filter matches, counted up to `cap` (its index answers this alone)."""
    table, conditions = facet
    return _capped_count(table, conditions(table), cap)


def condition_size(condition: ColumnElement, cap: int) -> Select:
    """How many sessions a scalar filter matches, counted up to `cap`."""
    return _capped_count(sessions, [condition], cap)


def sessions_page(f: SessionFilters, limit: int, after: tuple[str, str] | None,
                  facets: list[Facet] | None = None, drive: bool = True) -> Select:
    """One page of sessions (plus one row, to tell whether more follow), newest first.

    `facets`: the facet filters in the order to use them (default facet_filters(f)); the first
    drives the query unless `drive` is False (a filter on the sessions' own columns is rarer).
    """
    facets = facet_filters(f) if facets is None else facets
    where = scalar_conditions(f)
    query = select(*LISTED_COLUMNS)
    if facets and drive:
        table, conditions = facets[0]
        driver = table.alias("driver")
        query = query.select_from(WalkJoin(driver, sessions, driver.c.session_id == sessions.c.session_id))
        where += conditions(driver)
        started, sid = driver.c.started_at, driver.c.session_id
        facets = facets[1:]
    else:
        started, sid = sessions.c.started_at, sessions.c.session_id
    for table, conditions in facets:
        other = table.alias()
        where.append(exists().where(other.c.session_id == sessions.c.session_id, *conditions(other)))
    if f.started_from is not None:
        where.append(started >= f.started_from)
    if f.started_to is not None:
        where.append(started < f.started_to)
    if after is not None:
        where.append(_after(started, sid, after))
    return query.where(*where).order_by(started.desc(), sid.desc()).limit(limit + 1)


def alert_conditions(f: AlertFilters) -> list[ColumnElement]:
    """The WHERE clauses of checked alert filters."""
    a = alerts.c
    where: list[ColumnElement] = []
    for column, value in ((a.state, f.state), (a.kind, f.kind), (a.session_id, f.session_id), (a.party, f.party)):
        if value is not None:
            where.append(column == value)
    if f.created_from is not None:
        where.append(a.created_at >= f.created_from)
    if f.created_to is not None:
        where.append(a.created_at < f.created_to)
    return where


def alerts_page(f: AlertFilters, limit: int, after: tuple[str, str] | None) -> Select:
    """One page of alerts (plus one row), newest first."""
    where = alert_conditions(f)
    if after is not None:
        where.append(_after(alerts.c.created_at, alerts.c.id, after))
    return select(alerts).where(*where).order_by(alerts.c.created_at.desc(), alerts.c.id.desc()).limit(limit + 1)


__all__ = ["LISTED_COLUMNS", "alert_conditions", "alerts_page", "condition_size", "driving_conditions", "facet_filters",
           "facet_size", "scalar_conditions", "sessions_page"]
