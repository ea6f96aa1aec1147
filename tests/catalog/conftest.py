"""Fixtures of the catalog tests: each test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio

import pytest

from postgres_harness import postgres  # noqa: F401 — the session's PostgreSQL cluster, as a fixture
from stream.server.catalog import Catalog, default_url


class Backend:
    """A fresh, empty catalog database of one kind, and a recordings folder beside it."""

    def __init__(self, name: str, url: str, recordings):
        self.name = name
        self.url = url
        self.recordings = recordings

    def run(self, body, *args):
        """Run `await body(catalog, *args)` on a freshly opened catalog, closing it after."""
        async def go():
            catalog = await Catalog.open(self.url)
            try:
                return await body(catalog, *args)
            finally:
                await catalog.close()

        return asyncio.run(go())


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path) -> Backend:
    """The same test on SQLite (the file beside the recordings) and on PostgreSQL (a new database)."""
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    if request.param == "sqlite":
        return Backend("sqlite", default_url(recordings), recordings)
    return Backend("postgresql", request.getfixturevalue("postgres").create_database(), recordings)


@pytest.fixture()
def spare(backend, request, tmp_path) -> Backend:
    """A second empty catalog of the same kind, over the same recordings (to compare two catalogs)."""
    if backend.name == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'spare.sqlite3'}", backend.recordings)
    return Backend("postgresql", request.getfixturevalue("postgres").create_database("spare"), backend.recordings)
