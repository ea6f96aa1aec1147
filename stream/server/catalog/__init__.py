"""The session catalog: recordings, alerts and the access log indexed in SQLite or PostgreSQL.

`GET /api/sessions` pages through it instead of opening every session.json. The recordings
folder stays the source of truth: the catalog is written as sessions start and end and as
alerts fire (`CatalogFeed`), reconciled with the folder at start-up (`reconcile`), and rebuilt
from it by `emostream catalog rebuild` (`rebuild`). SQLite by default, in the recordings folder
(`.catalog.sqlite3`, WAL); PostgreSQL for a cluster (`--catalog postgresql://...` or
`EMOSTREAM_CATALOG`). Queries: `Catalog.sessions`, `.alerts`, `.acknowledge`; query strings:
`session_request`, `alert_request`; bad input: `CatalogQueryError` (code bad_cursor or bad_filter).
"""

from .errors import CatalogQueryError, CatalogUnavailable
from .feed import CatalogFeed
from .filters import DEFAULT_LIMIT, MAX_LIMIT, AlertFilters, PageRequest, SessionFilters, alert_request, session_request
from .location import CATALOG_FILE, ENV_VAR, catalog_url, default_url, redacted
from .rebuild import SyncReport, rebuild, rebuild_folder, reconcile
from .store import Catalog, Page

__all__ = [
    "CATALOG_FILE", "DEFAULT_LIMIT", "ENV_VAR", "MAX_LIMIT", "AlertFilters", "Catalog", "CatalogFeed",
    "CatalogQueryError", "CatalogUnavailable", "Page", "PageRequest", "SessionFilters", "SyncReport",
    "alert_request", "catalog_url", "default_url", "rebuild", "rebuild_folder", "reconcile", "redacted", "session_request",
]
