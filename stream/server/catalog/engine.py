"""The catalog's SQLAlchemy engine on an asyncio driver, with SQLite set up for a busy server.

SQLite runs in WAL mode (readers never wait for the writer), with foreign keys on (deleting a
session deletes its alerts) and a busy timeout, so the server, a `catalog rebuild` and another
process on the same file take turns instead of failing. aiosqlite runs every query in its own
thread and asyncpg speaks to PostgreSQL over non-blocking sockets: neither blocks the event loop.
"""

from __future__ import annotations

import json
import os

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .location import sqlite_file

BUSY_TIMEOUT_S = 30.0


def _dumps(value) -> str:
    # ASCII escapes: JSON columns then take any text, lone surrogates and NUL included.
    return json.dumps(value, ensure_ascii=True, allow_nan=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # 16 MiB of page cache (SQLite's default is 2 MiB): a catalog of 100,000 sessions keeps its indexes in memory.
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "cache_size=-16384"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _private_file(path) -> None:
    """Create the SQLite file readable by its owner only, like the recordings it indexes."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives -wal and -shm the same mode


def make_engine(url: URL, pool_size: int = 5) -> AsyncEngine:
    """An async engine for a driver URL (location.driver_url)."""
    path = sqlite_file(url)
    if path is not None:
        _private_file(path)
        engine = create_async_engine(url, json_serializer=_dumps, connect_args={"timeout": BUSY_TIMEOUT_S})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # asyncpg prepares every statement; a cached generic plan would ignore which filter value is rare,
    # so each execution is planned for its own values (planning costs well under a millisecond).
    settings = {"plan_cache_mode": "force_custom_plan", "application_name": "emostream-catalog"}
    return create_async_engine(url, json_serializer=_dumps, pool_size=pool_size, pool_pre_ping=True,
                               connect_args={"server_settings": settings})


__all__ = ["BUSY_TIMEOUT_S", "make_engine"]
