"""The access log of recordings: who downloaded or deleted which session, one JSON line each.

It lives in the recordings folder as `.access.jsonl` (session ids cannot start with '.', so it
never clashes with a session), readable by its owner only, and is also written to the server log
at level INFO. Listeners (the catalog) are told of each entry, from whichever thread wrote it.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ACCESS_LOG = ".access.jsonl"
log = logging.getLogger("emostream.access")


class AccessLog:
    """Appends one line per download or deletion of a recording."""

    def __init__(self, root: Path):
        self.path = Path(root) / ACCESS_LOG
        self.listeners: list[Callable[[dict], None]] = []  # called with each entry, on the writing thread

    def record(self, action: str, session_id: str, by: str, client: str | None = None, **details) -> None:
        """Log `action` ("download", "delete") on `session_id` by the credential named `by`."""
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "action": action,
                 "session_id": session_id, "by": by, "client": client, **details}
        log.info("%s %s by %s from %s %s", action, session_id, by, client, details or "")
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:  # a full disk must not stop a deletion that frees it
            log.error("cannot write the access log %s: %s", self.path, exc)
        for listener in self.listeners:
            listener(entry)

    def entries(self) -> list[dict]:
        """Every logged line (for tests and audits)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
