"""A real PostgreSQL server for tests: bench.postgres's private cluster, its failures failing the test.

Each test asks for a fresh database (`create_database`), so tests never see each other's rows.
A conftest or test module that wants it imports the session-scoped fixture:
`from postgres_harness import postgres`.
"""

from __future__ import annotations

import pytest

from bench.postgres import PostgresCluster, PostgresError


@pytest.fixture(scope="session")
def postgres():
    """One private PostgreSQL cluster for the whole test run."""
    try:
        server = PostgresCluster().start()
    except PostgresError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()
