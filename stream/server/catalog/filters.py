"""What a list may be narrowed to, checked once: session and alert filters, page sizes, query strings.

The HTTP layer hands `session_request` / `alert_request` the query string's (name, value)
pairs; anything malformed raises CatalogQueryError("bad_filter") naming the parameter, which
the HTTP layer answers with 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

from ..alerts import ALERT_KINDS
from .errors import CatalogQueryError
from .records import iso_utc
from .schema import ALERT_STATES, MAX_KEY, MAX_VALUE

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_FILTER_CHARS = 256  # any one filter value
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bad(message: str) -> CatalogQueryError:
    return CatalogQueryError("bad_filter", message)


def page_size(limit: int | None) -> int:
    """`limit` items per page: DEFAULT_LIMIT when None, at most MAX_LIMIT; below 1 is bad_filter."""
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise _bad(f"limit must be a whole number from 1 (at most {MAX_LIMIT} are returned), got {limit!r}")
    return min(limit, MAX_LIMIT)


def _time(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return iso_utc(value)
    except (ValueError, TypeError, OverflowError):
        raise _bad(f"{name} must be an ISO 8601 time like 2025-01-31T12:00:00Z, got {value!r}") from None


def _short(name: str, value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_FILTER_CHARS):
        raise _bad(f"{name} must be text of at most {MAX_FILTER_CHARS} characters")
    return value


@dataclass(frozen=True)
class SessionFilters:
    """Sessions to list; every field set narrows the list (all must hold)."""

    live: bool | None = None  # True: status "live"; False: every other status
    started_from: str | None = None  # ISO time, inclusive
    started_to: str | None = None  # ISO time, exclusive
    status: str | None = None
    source: str | None = None  # "native", "twilio"...
    context: str | None = None  # a substring of the context, any case
    profile: str | None = None  # the domain profile's name
    party: str | None = None  # has a party of this name
    alert_kind: str | None = None  # has an alert of this kind (stream.server.alerts.ALERT_KINDS)
    unacknowledged: bool = False  # has open alerts
    metadata: tuple[tuple[str, str], ...] = field(default=())  # (key, value) pairs, "outer.inner" keys too

    def checked(self) -> SessionFilters:
        """These filters with times normalized to UTC; CatalogQueryError("bad_filter") when one is malformed."""
        for name in ("status", "source", "context", "profile", "party"):
            _short(name, getattr(self, name))
        if self.alert_kind is not None and self.alert_kind not in ALERT_KINDS:
            raise _bad(f"alert must be one of {', '.join(ALERT_KINDS)}, got {self.alert_kind!r}")
        for pair in self.metadata:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
                    and 0 < len(pair[0]) <= MAX_KEY and len(pair[1]) <= MAX_VALUE):
                raise _bad(f"meta takes key=value with a key of 1-{MAX_KEY} and a value of at most "
                           f"{MAX_VALUE} characters, got {pair!r}")
        return replace(self, started_from=_time("from", self.started_from), started_to=_time("to", self.started_to),
                       metadata=tuple(self.metadata))


@dataclass(frozen=True)
class AlertFilters:
    """Alerts to list; every field set narrows the list."""

    state: str | None = None  # "open" or "acknowledged"
    kind: str | None = None  # one of ALERT_KINDS
    session_id: str | None = None
    party: str | None = None
    created_from: str | None = None  # ISO time, inclusive
    created_to: str | None = None  # ISO time, exclusive

    def checked(self) -> AlertFilters:
        """These filters with times normalized to UTC; CatalogQueryError("bad_filter") when one is malformed."""
        if self.state is not None and self.state not in ALERT_STATES:
            raise _bad(f"state must be one of {', '.join(ALERT_STATES)}, got {self.state!r}")
        if self.kind is not None and self.kind not in ALERT_KINDS:
            raise _bad(f"kind must be one of {', '.join(ALERT_KINDS)}, got {self.kind!r}")
        _short("session", self.session_id)
        _short("party", self.party)
        return replace(self, created_from=_time("from", self.created_from), created_to=_time("to", self.created_to))


@dataclass(frozen=True)
class PageRequest:
    """One page of a list: its filters, how many items, and where to start (a cursor from the last page)."""

    filters: SessionFilters | AlertFilters
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _bad(f"{name} must be true or false, got {value!r}")


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad(f"limit must be a whole number, got {value!r}") from None
    return page_size(number)


# Query-string names of the filter fields (the rest are the fields' own names).
_SESSION_PARAMS = {"from": "started_from", "to": "started_to", "alert": "alert_kind"}
_ALERT_PARAMS = {"from": "created_from", "to": "created_to", "session": "session_id"}
_FLAGS = {"live", "unacknowledged"}


def _request(items: Iterable[tuple[str, str]], cls, renamed: dict[str, str]) -> PageRequest:
    """Parse (name, value) pairs into a checked PageRequest for `cls` filters."""
    own = {f.name for f in fields(cls)} - {"metadata"} - set(renamed.values())
    params = {**{name: name for name in own}, **renamed}  # query name -> field
    values: dict = {}
    meta: list[tuple[str, str]] = []
    limit, cursor = DEFAULT_LIMIT, None
    for name, value in items:
        if name == "limit":
            limit = _limit(value)
        elif name == "cursor":
            cursor = value
        elif name == "meta" and cls is SessionFilters:
            key, eq, wanted = value.partition("=")
            if not eq:
                raise _bad(f"meta takes key=value, got {value!r}")
            meta.append((key, wanted))
        elif name not in params:
            known = sorted({*params, "limit", "cursor"} | ({"meta"} if cls is SessionFilters else set()))
            raise _bad(f"unknown parameter {name!r}: use {', '.join(known)}")
        elif params[name] in values:
            raise _bad(f"{name} may be given once")
        else:
            values[params[name]] = _flag(name, value) if name in _FLAGS else value
    if meta:
        values["metadata"] = tuple(meta)
    return PageRequest(cls(**values).checked(), limit, cursor)


def session_request(items: Iterable[tuple[str, str]]) -> PageRequest:
    """`GET /api/sessions?...` parameters: live, from, to, status, source, context, profile, party, alert,
    unacknowledged, meta=key=value (repeatable), limit, cursor."""
    return _request(items, SessionFilters, _SESSION_PARAMS)


def alert_request(items: Iterable[tuple[str, str]]) -> PageRequest:
    """`GET /api/alerts?...` parameters: state, kind, session, party, from, to, limit, cursor."""
    return _request(items, AlertFilters, _ALERT_PARAMS)


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "AlertFilters", "PageRequest", "SessionFilters", "alert_request",
           "page_size", "session_request"]
