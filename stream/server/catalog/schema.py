"""The catalog's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are ISO 8601 strings in UTC with fixed-width microseconds (as the recorder writes
`started_at`), so that they sort as text identically on both databases and round-trip to the
API unchanged. Every index serves one query of `queries.py`: newest first by
(started_at, session_id) within one filter value, which is what keyset paging walks.
The migrations (migrations/versions) create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
)


def _bytewise(length: int) -> String:
    """Text compared byte by byte on both databases (PostgreSQL's "C" collation; SQLite's default).

    Sort keys must order alike on SQLite and PostgreSQL whatever locale a cluster was made with,
    and byte comparisons are also the cheapest.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


ID = _bytewise(64)  # session ids and party names (stream.protocol.native: at most 64 characters)
TIME = _bytewise(40)  # "2025-01-31T12:00:00.000000+00:00"
MAX_KEY = 128  # metadata keys and values longer than these are kept in `metadata` but not filterable
MAX_VALUE = 256  # (a PostgreSQL b-tree entry must stay well below 2.7 kB)
ALERT_STATES = ("open", "acknowledged")

# Constraint names fixed here, so the migrations and both databases name them alike.
metadata = MetaData(naming_convention={
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
})

sessions = Table(
    "sessions", metadata,
    Column("session_id", ID, primary_key=True),
    Column("started_at", TIME, nullable=False),  # "" when session.json has none: sorts oldest
    Column("ended_at", TIME),
    Column("status", String(32), nullable=False),
    Column("source", String(32)),
    Column("context", Text),
    Column("profile", String(64)),
    Column("duration_seconds", Float),
    Column("record", String(16)),  # the --record mode it was recorded under
    Column("replay", Boolean, nullable=False, default=False),
    Column("model_id", Text),
    Column("random_weights", Boolean),
    Column("metadata", JSON),
    Column("parties", JSON),  # the party names, in order, as session.json lists them
    Column("summary", JSON),  # what the session's end reported (counts, per-party readings)
    Column("details", JSON),  # the rest of session.json (rates, encoding, error...) but its `parameters`
    Column("alerts", Integer, nullable=False, default=0),
    Column("open_alerts", Integer, nullable=False, default=0),
    Column("record_hash", String(64), nullable=False),  # of the columns above but the counts: reconcile compares it
    Index("ix_sessions_started", "started_at", "session_id"),
    Index("ix_sessions_status", "status", "started_at", "session_id"),
    Index("ix_sessions_source", "source", "started_at", "session_id"),
    Index("ix_sessions_profile", "profile", "started_at", "session_id"),
    Index("ix_sessions_ended", "ended_at"),  # retention: what ended before a time
)
# Few sessions have open alerts: a partial index lists exactly those, newest first.
Index("ix_sessions_open", sessions.c.started_at, sessions.c.session_id,
      sqlite_where=sessions.c.open_alerts > 0, postgresql_where=sessions.c.open_alerts > 0)

# Facets: what a filter names beside a session's own columns. Each carries the session's
# started_at, so that its (value, started_at, session_id) index yields one value's sessions
# newest first and a page reads 51 index entries, however common or rare the value.
parties = Table(
    "parties", metadata,
    Column("session_id", ID, ForeignKey("sessions.session_id", ondelete="CASCADE"), primary_key=True),
    Column("party", ID, primary_key=True),
    Column("started_at", TIME, nullable=False),
    Index("ix_parties_party", "party", "started_at", "session_id"),
)

session_metadata = Table(
    "session_metadata", metadata,  # metadata flattened for `key=value` filters
    Column("session_id", ID, ForeignKey("sessions.session_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(MAX_KEY), primary_key=True),  # "customer", or "twilio.call_sid" one level down
    Column("value", String(MAX_VALUE), nullable=False),  # the scalar as a string: "abc", "42", "true", "null"
    Column("started_at", TIME, nullable=False),
    Index("ix_session_metadata_value", "key", "value", "started_at", "session_id"),
)

alert_kinds = Table(
    "alert_kinds", metadata,  # which kinds of alert each session has (kept by writes.recount)
    Column("session_id", ID, ForeignKey("sessions.session_id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("started_at", TIME, nullable=False),
    Index("ix_alert_kinds_kind", "kind", "started_at", "session_id"),
)

contexts = Table(
    "contexts", metadata,  # narrow rows: a substring search reads these, never the wide sessions rows
    Column("started_at", TIME, primary_key=True),
    Column("session_id", ID, ForeignKey("sessions.session_id", ondelete="CASCADE"), primary_key=True),
    Column("folded", Text, nullable=False),  # the context, str.casefold()ed: any case matches, any script
    Index("ix_contexts_session", "session_id", unique=True),
    # SQLite stores the rows in key order, so a search reads them newest first with nothing to look up.
    sqlite_with_rowid=False,
)

alerts = Table(
    "alerts", metadata,
    Column("id", _bytewise(80), primary_key=True),  # "<session_id>#<n>" (stream.server.alerts)
    Column("session_id", ID, ForeignKey("sessions.session_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("party", ID),
    Column("stream_time", Float),
    Column("text", Text, nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("state", String(16), nullable=False, default="open"),
    Column("ack_by", Text),
    Column("ack_at", TIME),
    Column("ack_note", Text),
    Column("assignee", Text),
    UniqueConstraint("session_id", "seq"),
    Index("ix_alerts_created", "created_at", "id"),
    Index("ix_alerts_state", "state", "created_at", "id"),
    Index("ix_alerts_kind", "kind", "created_at", "id"),
)

access_log = Table(
    "access_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_key", String(64), nullable=False),  # sha256 of the entry: rebuilds add no twins
    Column("time", TIME, nullable=False),
    Column("action", String(32), nullable=False),
    Column("session_id", ID),
    Column("credential", Text),  # the credential's name (never the secret)
    Column("client", Text),
    Column("details", JSON),  # the entry's other fields: file, reason...
    UniqueConstraint("entry_key"),
    Index("ix_access_log_time", "time"),
    Index("ix_access_log_session", "session_id", "time"),
)

FACETS = (parties, session_metadata, alert_kinds, contexts)

__all__ = ["ALERT_STATES", "FACETS", "MAX_KEY", "MAX_VALUE", "access_log", "alert_kinds", "alerts", "contexts",
           "metadata", "parties", "session_metadata", "sessions"]
