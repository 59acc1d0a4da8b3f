"""`fastfeast db …` run as a user runs it: a real server started, reused, stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

FASTFEAST = [sys.executable, "-m", "fastfeast_dagster.cli"]
# The Dagster storage URL that a process resolves (as `dagster_storage.py` does).
_STORAGE = (
    "from fastfeast_dagster.contract import default_contract\n"
    "from fastfeast_dagster.warehouse.connection import resolve_database_urls\n"
    "print(resolve_database_urls(default_contract()).dagster)"
)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FASTFEAST, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _alive(pid: int) -> bool:
    # The stopped postmaster may linger as a zombie where PID 1 does not reap orphans.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def state_env() -> Iterator[dict[str, str]]:
    state = Path(tempfile.mkdtemp(prefix="ffcli", dir="/tmp"))
    env = {**os.environ, "FASTFEAST_STATE_DIR": str(state)}
    yield env
    _run(env, "db", "stop")
    shutil.rmtree(state, ignore_errors=True)


def test_start_status_stop_lifecycle(state_env: dict[str, str]) -> None:
    stopped = _run(state_env, "db", "status")
    assert stopped.returncode == 3
    assert "is stopped" in stopped.stdout

    started = _run(state_env, "db", "start")
    assert started.returncode == 0, started.stderr
    assert "is running" in started.stdout
    assert "warehouse schema applied" in started.stdout

    again = _run(state_env, "db", "start")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout

    status = _run(state_env, "db", "status")
    assert status.returncode == 0
    pid = int(status.stdout.split("pid ")[1].split(",")[0])
    # The server outlives the commands that started it.
    assert _alive(pid)

    url = _run(state_env, "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        databases = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert {"fastfeast", "dagster"} <= databases
        assert conn.execute("SELECT count(*) FROM dim_time").fetchone() == (1440,)
        # Text keys compare byte by byte (`create_database`); case mapping keeps the server's
        # locale, which knows UTF-8.
        assert conn.execute(
            "SELECT datcollate FROM pg_database WHERE datname = 'fastfeast'"
        ).fetchone() == ("C",)
        assert conn.execute(
            "SELECT array_agg(v ORDER BY v), lower('ÉCLAIR') FROM unnest(%s::text[]) v",
            (["é", "b", "B", "a"],),
        ).fetchone() == (["B", "a", "b", "é"], "éclair")

    exports = _run(state_env, "db", "env").stdout
    assert "export FASTFEAST_DATABASE_URL='postgresql://" in exports
    assert "export DAGSTER_HOME=" in exports
    # A shell of its own, which evaluates them, opens this state dir's Dagster storage: the
    # embedded server's `dagster` database, not the warehouse's as an external server's would.
    shell = {name: value for name, value in state_env.items() if name != "FASTFEAST_STATE_DIR"}
    resolved = subprocess.run(
        ["bash", "-c", 'eval "$1" && exec "$2" -c "$3"', "-", exports, sys.executable, _STORAGE],
        env=shell, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    dagster = url.replace("postgresql://", "postgresql+psycopg2://").replace(
        "/fastfeast?", "/dagster?"
    )
    assert resolved.stdout.strip() == dagster

    stop = _run(state_env, "db", "stop")
    assert stop.returncode == 0
    assert "stopped" in stop.stdout
    assert _run(state_env, "db", "status").returncode == 3
    assert not _alive(pid)
    not_running = _run(state_env, "db", "url")
    assert not_running.returncode == 2
    assert "fastfeast db start" in not_running.stderr
    assert "Traceback" not in not_running.stderr


def test_an_explicit_database_url_is_used_and_nothing_is_started(
    state_env: dict[str, str], warehouse_url: str
) -> None:
    env = {**state_env, "FASTFEAST_DATABASE_URL": warehouse_url}
    started = _run(env, "db", "start")
    assert started.returncode == 0, started.stderr
    assert "nothing to start" in started.stdout
    assert not (Path(env["FASTFEAST_STATE_DIR"]) / "pg").exists()
    assert _run(env, "db", "url").stdout.strip() == warehouse_url
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM dim_time").fetchone() == (1440,)


def test_the_embedded_server_is_sized_to_the_machine(state_env: dict[str, str]) -> None:
    from fastfeast_dagster.warehouse.embedded import server_settings

    assert _run(state_env, "db", "start").returncode == 0
    stop = _run(state_env, "db", "stop")
    assert stop.returncode == 0, stop.stderr
    assert _run(state_env, "db", "start").returncode == 0  # settings survive a restart
    url = _run(state_env, "db", "url").stdout.strip()
    wanted = server_settings(psutil.virtual_memory().total)
    with psycopg.connect(url) as conn:
        shown, wanted_bytes, wal = conn.execute(
            "SELECT pg_size_bytes(current_setting('shared_buffers')), pg_size_bytes(%s),"
            " pg_size_bytes(current_setting('max_wal_size'))",
            (wanted["shared_buffers"],),
        ).fetchone()
    assert shown == wanted_bytes and wal == 8 * 2**30
    # Above PostgreSQL's 128 MB default on any machine with more than a gigabyte.
    assert shown > 128 * 2**20
    conf = (Path(state_env["FASTFEAST_STATE_DIR"]) / "pg" / "postgresql.conf").read_text()
    assert conf.count("include_if_exists = 'fastfeast.conf'") == 1
