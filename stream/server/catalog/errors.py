"""The catalog's errors: a query the HTTP layer must answer with 400, and a catalog that cannot open."""

from __future__ import annotations

from models.errors import ConfigError, EmostreamError

QUERY_CODES = ("bad_cursor", "bad_filter")


class CatalogQueryError(EmostreamError, ValueError):
    """A malformed cursor (`bad_cursor`) or filter (`bad_filter`); the message says what to fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class CatalogUnavailable(ConfigError):
    """The catalog URL names no database this build can open (driver, scheme, path)."""

    code = "catalog_unavailable"


__all__ = ["QUERY_CODES", "CatalogQueryError", "CatalogUnavailable"]
