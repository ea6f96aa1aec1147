"""The catalog's Alembic migrations (env.py and versions/), run by stream.server.catalog.migrate."""
