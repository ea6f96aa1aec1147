"""Which filter drives a session query: the one matching the fewest sessions.

A page walks one index in page order and checks the other filters on every row it meets, so
its cost is the rows met before the page fills: few when the walked filter is rare. Databases
guess this from statistics that a young or busy catalog lacks, so with two filters or more that
an index can walk, each is counted (up to DRIVER_CAP, from its index alone) and the rarest walks.
A context substring is never counted (that would read every context) but taken for common: its
narrow rows are read at about 15,000 a millisecond, so only a filter known to be rare does better.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from .filters import SessionFilters
from .queries import Facet, condition_size, driving_conditions, facet_filters, facet_size
from .schema import contexts

DRIVER_CAP = 2000  # beyond this many matches a filter is common: no need to count further


@dataclass(frozen=True)
class Plan:
    """The facet filters in the order to apply them, and whether the first drives the query."""

    facets: list[Facet]
    drive: bool  # False: a filter on the sessions' own columns is rarer, so their index drives


async def _size(conn: AsyncConnection, facet: Facet) -> int:
    """A facet filter's matches up to DRIVER_CAP; a substring search counts as common (counting it is a scan)."""
    if facet[0] is contexts:
        return DRIVER_CAP  # so a filter known to be rare walks instead, and a common one does not
    return await conn.scalar(facet_size(facet, DRIVER_CAP))


async def plan(conn: AsyncConnection, f: SessionFilters) -> Plan:
    """The cheapest way to page through `f` (checked filters)."""
    facets = facet_filters(f)
    scalars = driving_conditions(f)
    if not facets or len(facets) + len(scalars) < 2:
        return Plan(facets, True)
    counted = sorted([(await _size(conn, facet), n, facet) for n, facet in enumerate(facets)], key=lambda c: c[:2])
    rarest_scalar = min([await conn.scalar(condition_size(c, DRIVER_CAP)) for c in scalars], default=DRIVER_CAP + 1)
    return Plan([facet for _, _, facet in counted], counted[0][0] <= rarest_scalar)


__all__ = ["DRIVER_CAP", "Plan", "plan"]
