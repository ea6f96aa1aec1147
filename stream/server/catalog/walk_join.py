"""A join that keeps its left side the outer loop on every database: how a facet drives a page."""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Join


class WalkJoin(Join):
    """A facet joined to its sessions, the facet walked in page order whatever the statistics say.

    Every facet row has its session, so any join gives the same rows. SQLite gets a CROSS JOIN, which its
    planner never turns around (without ANALYZE it would rather walk a sessions index and sort);
    PostgreSQL a LEFT JOIN, which it keeps in order unless a filter on the sessions lets it choose.
    """

    inherit_cache = True

    def __init__(self, left, right, onclause):
        """`left` (a facet) joined to `right` (the sessions) on `onclause`."""
        super().__init__(left, right, onclause, isouter=True)


@compiles(WalkJoin, "sqlite")
def _cross_join(join: WalkJoin, compiler, **kw) -> str:
    kw["asfrom"] = True
    left, right = compiler.process(join.left, **kw), compiler.process(join.right, **kw)
    return f"{left} CROSS JOIN {right} ON {compiler.process(join.onclause, **kw)}"


__all__ = ["WalkJoin"]
