"""Where the catalog lives: URLs users write, the driver each needs, the default file, secrets kept out of messages."""

from __future__ import annotations

import pytest

from stream.server.catalog import CatalogUnavailable, catalog_url, default_url, redacted
from stream.server.catalog.location import driver_url


def test_the_default_is_a_sqlite_file_in_the_recordings(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOSTREAM_CATALOG", raising=False)
    assert catalog_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/.catalog.sqlite3" == default_url(tmp_path)
    monkeypatch.setenv("EMOSTREAM_CATALOG", "postgresql://u@db/emo")
    assert catalog_url(tmp_path) == "postgresql://u@db/emo"
    assert catalog_url(tmp_path, "sqlite:///x.db") == "sqlite:///x.db"  # the option wins


@pytest.mark.parametrize(("url", "driver", "database"), [
    ("postgresql://u:p@db:5433/emo", "postgresql+asyncpg", "emo"),
    ("postgres://u@db/emo", "postgresql+asyncpg", "emo"),
    ("postgresql+asyncpg://u@db/emo", "postgresql+asyncpg", "emo"),
    ("sqlite:////var/lib/emo/catalog.sqlite3", "sqlite+aiosqlite", "/var/lib/emo/catalog.sqlite3"),
    ("sqlite+aiosqlite:////tmp/c.db", "sqlite+aiosqlite", "/tmp/c.db"),
])
def test_urls_get_their_asyncio_driver(url, driver, database):
    parsed = driver_url(url)
    assert (parsed.drivername, parsed.database) == (driver, database)


def test_a_bare_path_is_a_sqlite_file(tmp_path):
    parsed = driver_url(str(tmp_path / "c.sqlite3"))
    assert (parsed.drivername, parsed.database) == ("sqlite+aiosqlite", str(tmp_path / "c.sqlite3"))


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://u:hunter2@db/emo", "SQLite or PostgreSQL"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
    ("postgresql://u:hunter2@db:notaport/emo", "not a catalog URL"),
])
def test_other_databases_are_refused_without_showing_the_password(url, says):
    with pytest.raises(CatalogUnavailable) as info:
        driver_url(url)
    assert says in str(info.value) and "hunter2" not in str(info.value)
    assert info.value.code == "catalog_unavailable"


def test_redacted_hides_passwords():
    assert redacted("postgresql://u:hunter2@db/emo") == "postgresql://u:***@db/emo"
