"""The first catalog: sessions, their facets (parties, metadata, alert kinds, contexts), alerts, the access log.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None



def _bytewise(length: int) -> sa.String:
    """Text that sorts byte by byte on both databases (PostgreSQL: the "C" collation)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


ID = _bytewise(64)
TIME = _bytewise(40)


def _cascade(name: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["session_id"], ["sessions.session_id"], name=f"fk_{name}_session_id",
                                   ondelete="CASCADE")


def upgrade() -> None:
    """Create the tables and their indexes."""
    op.create_table(
        "sessions",
        sa.Column("session_id", ID, nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("ended_at", TIME),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32)),
        sa.Column("context", sa.Text()),
        sa.Column("profile", sa.String(64)),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("record", sa.String(16)),
        sa.Column("replay", sa.Boolean(), nullable=False),
        sa.Column("model_id", sa.Text()),
        sa.Column("random_weights", sa.Boolean()),
        sa.Column("metadata", sa.JSON()),
        sa.Column("parties", sa.JSON()),
        sa.Column("summary", sa.JSON()),
        sa.Column("details", sa.JSON()),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("open_alerts", sa.Integer(), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_started", "sessions", ["started_at", "session_id"])
    op.create_index("ix_sessions_status", "sessions", ["status", "started_at", "session_id"])
    op.create_index("ix_sessions_source", "sessions", ["source", "started_at", "session_id"])
    op.create_index("ix_sessions_profile", "sessions", ["profile", "started_at", "session_id"])
    op.create_index("ix_sessions_ended", "sessions", ["ended_at"])
    op.create_index("ix_sessions_open", "sessions", ["started_at", "session_id"],
                    sqlite_where=sa.text("open_alerts > 0"), postgresql_where=sa.text("open_alerts > 0"))

    op.create_table(
        "parties",
        sa.Column("session_id", ID, nullable=False),
        sa.Column("party", ID, nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("session_id", "party", name="pk_parties"),
        _cascade("parties"),
    )
    op.create_index("ix_parties_party", "parties", ["party", "started_at", "session_id"])

    op.create_table(
        "session_metadata",
        sa.Column("session_id", ID, nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("session_id", "key", name="pk_session_metadata"),
        _cascade("session_metadata"),
    )
    op.create_index("ix_session_metadata_value", "session_metadata", ["key", "value", "started_at", "session_id"])

    op.create_table(
        "alert_kinds",
        sa.Column("session_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("session_id", "kind", name="pk_alert_kinds"),
        _cascade("alert_kinds"),
    )
    op.create_index("ix_alert_kinds_kind", "alert_kinds", ["kind", "started_at", "session_id"])

    op.create_table(
        "contexts",
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("folded", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("started_at", "session_id", name="pk_contexts"),
        _cascade("contexts"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_contexts_session", "contexts", ["session_id"], unique=True)

    op.create_table(
        "alerts",
        sa.Column("id", _bytewise(80), nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("party", ID),
        sa.Column("stream_time", sa.Float()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ack_by", sa.Text()),
        sa.Column("ack_at", TIME),
        sa.Column("ack_note", sa.Text()),
        sa.Column("assignee", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("session_id", "seq", name="uq_alerts_session_id_seq"),
        _cascade("alerts"),
    )
    op.create_index("ix_alerts_created", "alerts", ["created_at", "id"])
    op.create_index("ix_alerts_state", "alerts", ["state", "created_at", "id"])
    op.create_index("ix_alerts_kind", "alerts", ["kind", "created_at", "id"])

    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_key", sa.String(64), nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("session_id", ID),
        sa.Column("credential", sa.Text()),
        sa.Column("client", sa.Text()),
        sa.Column("details", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
        sa.UniqueConstraint("entry_key", name="uq_access_log_entry_key"),
    )
    op.create_index("ix_access_log_time", "access_log", ["time"])
    op.create_index("ix_access_log_session", "access_log", ["session_id", "time"])


def downgrade() -> None:
    """Drop everything this revision made."""
    for table in ("access_log", "alerts", "contexts", "alert_kinds", "session_metadata", "parties", "sessions"):
        op.drop_table(table)
