"""The durable outbox: every webhook delivery is a row of a SQLite file before its first attempt.

`<recordings>/.webhooks.sqlite3` (WAL; 0600 like the recordings). A row is one payload for one
receiver: it stays `pending` until the receiver answers 2xx (then it is deleted), or becomes a
`dead` letter when the schedule gives up; a dead letter can be revived. Rows are taken per
receiver in insertion order (`id`), which is the order the server raised them.

Plain `sqlite3`, synchronous: `delivery.WebhookOutbox` calls it from one worker thread, never
from the event loop. A process killed with `kill -9` loses no committed row.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

OUTBOX_FILE = ".webhooks.sqlite3"
KEEP_DEAD = 10_000  # the newest dead letters kept (older ones are deleted)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order of delivery, per receiver
    receiver    TEXT NOT NULL,                      -- the receiver's URL
    message_id  TEXT NOT NULL,                      -- webhook-id: the same on every attempt
    type        TEXT NOT NULL,                      -- alert.raised, session.started, ...
    body        TEXT NOT NULL,                      -- the JSON payload exactly as signed and sent
    created_at  REAL NOT NULL,                      -- when it was queued (Unix seconds)
    since       REAL NOT NULL,                      -- when it was queued or revived: the give-up age counts from here
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,                      -- not before this
    state       TEXT NOT NULL DEFAULT 'pending',    -- pending | dead
    last_status INTEGER,                            -- the last answer's HTTP status (NULL: none came)
    last_error  TEXT,                               -- why the last attempt failed
    failed_at   REAL,                               -- when it last failed
    UNIQUE (receiver, message_id)
);
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries (receiver, state, id);
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (state, failed_at);
"""

_COLUMNS = ("id, receiver, message_id, type, body, created_at, since, attempts, next_at, state, last_status, "
            "last_error, failed_at")


@dataclass(frozen=True)
class Delivery:
    """One row of the outbox."""

    id: int
    receiver: str
    message_id: str
    type: str
    body: str
    created_at: float
    since: float
    attempts: int
    next_at: float
    state: str
    last_status: int | None
    last_error: str | None
    failed_at: float | None


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to queue: one payload for one receiver."""

    receiver: str
    message_id: str
    type: str
    body: str
    created_at: float


class OutboxStore:
    """The outbox file; every method is blocking (call them from one worker thread)."""

    def __init__(self, path: Path):
        """Open (and create) the outbox at `path`."""
        self.path = path
        new = not path.exists()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        if new:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: a committed row survives the process's death
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, rows: list[NewDelivery]) -> None:
        """Queue deliveries, in this order, in one transaction (a row already there is kept)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR IGNORE INTO deliveries (receiver, message_id, type, body, created_at, since, next_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.receiver, r.message_id, r.type, r.body, r.created_at, r.created_at, r.created_at) for r in rows])

    def pending(self, receiver: str, limit: int = 100) -> list[Delivery]:
        """The receiver's next pending deliveries, oldest first."""
        cursor = self.db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE receiver = ? AND state = 'pending' "
                                 "ORDER BY id LIMIT ?", (receiver, limit))
        return [Delivery(*row) for row in cursor]

    def delivered(self, delivery_id: int) -> None:
        """The receiver took it: forget it."""
        self.db.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))

    def failed(self, delivery_id: int, attempts: int, next_at: float, status: int | None, error: str,
               at: float) -> None:
        """An attempt failed: count it and say when to try again."""
        self.db.execute("UPDATE deliveries SET attempts = ?, next_at = ?, last_status = ?, last_error = ?, "
                        "failed_at = ? WHERE id = ?", (attempts, next_at, status, error, at, delivery_id))

    def bury(self, delivery_id: int, attempts: int, status: int | None, error: str, at: float) -> None:
        """Give a delivery up: it becomes a dead letter (the oldest beyond KEEP_DEAD are deleted)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE deliveries SET state = 'dead', attempts = ?, last_status = ?, last_error = ?, "
                            "failed_at = ? WHERE id = ?", (attempts, status, error, at, delivery_id))
            self.db.execute("DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state = 'dead' "
                            "ORDER BY failed_at DESC, id DESC LIMIT -1 OFFSET ?)", (KEEP_DEAD,))

    def revive(self, delivery_id: int, now: float) -> Delivery | None:
        """A dead letter queued again (attempts and give-up age start afresh); None: no such dead letter."""
        with self.db:
            self.db.execute("BEGIN")
            changed = self.db.execute("UPDATE deliveries SET state = 'pending', attempts = 0, since = ?, next_at = ? "
                                      "WHERE id = ? AND state = 'dead'", (now, now, delivery_id)).rowcount
        if not changed:
            return None
        row = self.db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return Delivery(*row)

    def dead_letters(self, limit: int = 100) -> list[Delivery]:
        """The newest dead letters, newest first."""
        cursor = self.db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE state = 'dead' "
                                 "ORDER BY failed_at DESC, id DESC LIMIT ?", (limit,))
        return [Delivery(*row) for row in cursor]

    def counts(self) -> dict[str, dict]:
        """Per receiver: `pending`, `dead`, and `oldest_pending` (when the oldest pending one was queued)."""
        out: dict[str, dict] = {}
        for receiver, state, count, oldest in self.db.execute(
                "SELECT receiver, state, count(*), min(created_at) FROM deliveries GROUP BY receiver, state"):
            entry = out.setdefault(receiver, {"pending": 0, "dead": 0, "oldest_pending": None})
            entry[state] = count
            if state == "pending":
                entry["oldest_pending"] = oldest
        return out

    def due_now(self, now: float) -> None:
        """Every pending delivery may be tried at once (a restarting server tries every receiver again)."""
        self.db.execute("UPDATE deliveries SET next_at = ? WHERE state = 'pending' AND next_at > ?", (now, now))


__all__ = ["KEEP_DEAD", "OUTBOX_FILE", "Delivery", "NewDelivery", "OutboxStore"]
