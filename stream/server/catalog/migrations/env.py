"""Alembic's environment for the catalog: it runs on the connection `migrate.py` hands it, never on a URL."""

from __future__ import annotations

from alembic import context

from stream.server.catalog.migrate import VERSION_TABLE
from stream.server.catalog.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the catalog's migrations run through stream.server.catalog.migrate.upgrade")
context.configure(
    connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
