"""The catalog's Alembic migrations on both databases: from empty to head, equal to schema.py, safe to run at once."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from stream.server.catalog import Catalog
from stream.server.catalog.engine import make_engine
from stream.server.catalog.location import driver_url
from stream.server.catalog.migrate import VERSION_TABLE, alembic_config, upgrade
from stream.server.catalog.schema import metadata

TABLES = {"sessions", "parties", "session_metadata", "alert_kinds", "contexts", "alerts", "access_log", VERSION_TABLE}


def _state(sync_conn):
    """(tables, the version stamped, what autogenerate would still change) of a migrated database."""
    context = MigrationContext.configure(sync_conn, opts={"version_table": VERSION_TABLE})
    return set(inspect(sync_conn).get_table_names()), context.get_current_revision(), compare_metadata(context, metadata)


def test_an_empty_database_is_migrated_to_head_and_matches_the_schema(backend):
    async def body(catalog):
        async with catalog.engine.connect() as conn:
            return await conn.run_sync(_state)

    tables, version, diff = backend.run(body)
    assert tables == TABLES
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head() == "0001"
    assert diff == []  # the migrations make exactly the tables, columns and indexes schema.py declares


def test_opening_again_and_at_once_migrates_once(backend):
    """Servers of a cluster start together against one database: the migration lock lets one of them migrate."""
    async def body():
        catalogs = await asyncio.gather(*(Catalog.open(backend.url) for _ in range(4)))
        for catalog in catalogs:
            await catalog.close()
        again = await Catalog.open(backend.url)
        async with again.engine.connect() as conn:
            state = await conn.run_sync(_state)
        await again.close()
        return state

    tables, version, diff = asyncio.run(body())
    assert tables == TABLES and version == "0001" and diff == []


def _downgrade(sync_conn) -> None:
    config = alembic_config()
    config.attributes["connection"] = sync_conn
    command.downgrade(config, "base")


def test_downgrade_to_nothing_and_up_again(backend):
    async def body():
        url = driver_url(backend.url)
        await upgrade(url)
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade)
        async with engine.connect() as conn:
            empty = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        catalog = await Catalog.open(backend.url)  # migrates up again
        async with catalog.engine.connect() as conn:
            state = await conn.run_sync(_state)
        await catalog.close()
        return empty, state

    empty, (tables, version, diff) = asyncio.run(body())
    assert empty <= {VERSION_TABLE}
    assert tables == TABLES and version == "0001" and diff == []
