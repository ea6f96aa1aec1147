"""A throw-away PostgreSQL server: Debian's `postgresql` binaries, a private cluster on a free loopback port.

For benchmarks and tests, never for real data: `trust` logins, fsync off. PostgreSQL refuses to
run as root, so as root (CI) the cluster belongs to the `postgres` user the package creates and
its tools run through `runuser`. Failures raise PostgresError with the server's log.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or one of its tools failed (the message holds its output and log)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin folder."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresError("PostgreSQL is not installed: this needs the Debian package postgresql "
                        "(apt-get install postgresql; scripts/setup.sh --test does it)")


class PostgresCluster:
    """One private PostgreSQL cluster: `start`, `create_database`, `sql`, `stop`."""

    def __init__(self):
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="emostream-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        self._databases = 0
        if self._as_root:
            shutil.chown(self.root, "postgres")
        self.root.chmod(0o700)

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def _check(self, done: subprocess.CompletedProcess, what: str) -> None:
        if done.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise PostgresError(f"PostgreSQL {what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log}")

    def start(self) -> PostgresCluster:
        """initdb and start the cluster; returns self once it answers."""
        self._check(self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"), "initdb")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._check(self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start", "-o", options),
                    "start")
        for _ in range(50):
            if self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port)).returncode == 0:
                return self
            time.sleep(0.1)
        raise PostgresError(f"PostgreSQL did not answer on port {self.port}")

    def url(self, database: str = "postgres") -> str:
        """A plain connection URL (the catalog picks its asyncio driver)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output."""
        done = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-At", "-c", statement)
        self._check(done, f"psql {statement!r}")
        return done.stdout

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; its URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the cluster and delete its files."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


__all__ = ["PostgresCluster", "PostgresError", "bin_dir"]
