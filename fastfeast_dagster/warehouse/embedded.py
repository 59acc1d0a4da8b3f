"""The embedded default: a real PostgreSQL server run from the project's state directory.

The server binaries come from the `pgserver` wheel, so a fresh machine needs no manual install.
The server outlives the command that started it (the webserver, the daemon and every run worker
share it) and listens only on a Unix socket inside its data directory. It holds two databases: the
warehouse and Dagster's own storage.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql

WAREHOUSE_DATABASE = "fastfeast"
DAGSTER_DATABASE = "dagster"


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    pgdata: Path
    socket_dir: Path | None

    def describe(self) -> str:
        if not self.running:
            return f"embedded PostgreSQL is stopped (data in {self.pgdata})"
        return f"embedded PostgreSQL is running (pid {self.pid}, data and socket in {self.pgdata})"


def _pgserver() -> ModuleType:
    # pgserver resolves an XDG runtime dir at import and warns when the variable is unset, as it
    # is under cron, CI and daemons; its fallback (/tmp/runtime-<uid>) is fine for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver.utils

    return pgserver


class EmbeddedPostgres:
    """One PostgreSQL server whose data directory is `<state_dir>/pg`."""

    def __init__(self, state_dir: Path) -> None:
        self.pgdata = state_dir / "pg"

    def status(self) -> ServerStatus:
        postmaster = _pgserver().utils.PostmasterInfo
        info = postmaster.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        if info is None or not info.is_running():
            return ServerStatus(False, None, self.pgdata, None)
        return ServerStatus(True, info.pid, self.pgdata, info.socket_dir)

    def start(self) -> ServerStatus:
        """Start the server (initialising it on first use) and create the databases; idempotent."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server must not stop when this process exits.
        _pgserver().get_server(self.pgdata, cleanup_mode=None)
        for database in (WAREHOUSE_DATABASE, DAGSTER_DATABASE):
            create_database(self.url("postgres"), database)
        return self.status()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the server with a fast shutdown; returns False when it was not running."""
        status = self.status()
        if not status.running or status.pid is None:
            return False
        # SIGINT is Postgres' "fast" shutdown. Signalling the postmaster works whichever OS user
        # pgserver started it as (it runs as `pgserver` when we are root).
        os.kill(status.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.status().running:
                return True
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL (pid {status.pid}) did not stop within {timeout:.0f} s")

    def url(self, database: str, *, driver: str | None = None) -> str:
        status = self.status()
        if not status.running or status.socket_dir is None:
            raise RuntimeError(f"{status.describe()}: run `fastfeast db start` first")
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@/{database}?host={status.socket_dir}"


def create_database(admin_url: str, database: str) -> bool:
    """Create `database` unless it exists; returns whether it was created."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        return True


def drop_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def psql_path() -> Path:
    """The `psql` shipped inside the pgserver wheel."""
    return Path(_pgserver().__file__).parent / "pginstall" / "bin" / "psql"
