"""Where the catalog lives: a URL from `--catalog`, `EMOSTREAM_CATALOG`, or a SQLite file in the recordings.

Users write plain URLs (`postgresql://user@host/db`, `sqlite:///path`, or a bare file path); the
catalog runs them on SQLAlchemy's asyncio drivers (asyncpg, aiosqlite), so nothing blocks the
server's event loop.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .errors import CatalogUnavailable

CATALOG_FILE = ".catalog.sqlite3"  # a leading '.': never taken for a session folder
ENV_VAR = "EMOSTREAM_CATALOG"
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def default_url(recordings: str | Path) -> str:
    """The SQLite file beside the recordings: `<recordings>/.catalog.sqlite3`."""
    return f"sqlite:///{Path(recordings).resolve() / CATALOG_FILE}"


def catalog_url(recordings: str | Path, url: str | None = None) -> str:
    """`url` if given, else `EMOSTREAM_CATALOG`, else the SQLite file beside the recordings."""
    return url or os.environ.get(ENV_VAR) or default_url(recordings)


def driver_url(url: str) -> URL:
    """`url` with the asyncio driver its database needs; a bare path is a SQLite file."""
    if "://" not in url:
        url = f"sqlite:///{Path(url).resolve()}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise CatalogUnavailable(f"not a catalog URL: {redacted(url)}") from None
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise CatalogUnavailable(f"the catalog runs on SQLite or PostgreSQL, not {backend!r}: {redacted(url)}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Every pooled connection would see its own empty database, and the catalog would vanish on exit.
        raise CatalogUnavailable("an in-memory SQLite catalog cannot be shared: name a file")
    return parsed.set(drivername=_DRIVERS[backend])


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, else None."""
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def redacted(url: str | URL) -> str:
    """`url` with its password hidden, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True) if isinstance(url, str) else url.render_as_string()
    except (ArgumentError, ValueError):
        return "<unparsable catalog URL>"


__all__ = ["CATALOG_FILE", "ENV_VAR", "catalog_url", "default_url", "driver_url", "redacted", "sqlite_file"]
