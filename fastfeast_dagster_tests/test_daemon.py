"""The real daemon: files copied into the folders fill the warehouse with no manual launch."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from fastfeast_dagster.contract import PROJECT_ROOT
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster_tests.commands import (
    BIN,
    dagster_exports,
    dagster_materialize,
    fresh_environment,
    run_command,
)

DAY = dt.date(2026, 3, 2)
HOURS = [10, 11]


@pytest.fixture
def daemon_env() -> Iterator[dict[str, str]]:
    state = Path(tempfile.mkdtemp(prefix="ffdmn", dir="/tmp"))
    env = fresh_environment(state)
    started = run_command(env, "fastfeast", "db", "start")
    assert started.returncode == 0, started.stderr
    env |= dagster_exports(env)
    yield env
    run_command(env, "fastfeast", "db", "stop")
    shutil.rmtree(state, ignore_errors=True)


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _diagnosis(url: str, log_path: str) -> str:
    """What the runs and the quarantine looked like, for a failure message."""
    with psycopg.connect(url) as conn:
        files = conn.execute(
            "SELECT file_name, partition_key, valid_records, quarantined, run_id, processed_at"
            " FROM pipeline_file_log ORDER BY processed_at"
        ).fetchall()
    log = Path(log_path).read_text()
    return "\n".join([*map(str, files), log[-4000:]])


def test_the_daemon_fills_the_warehouse_from_the_folders(daemon_env: dict[str, str]) -> None:
    staging = Path(daemon_env["FASTFEAST_STATE_DIR"]) / "incoming"
    manifest = generate(staging, DAY, hours=HOURS)
    log = (Path(daemon_env["FASTFEAST_STATE_DIR"]) / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
        env=daemon_env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Deliver the files while the daemon runs, as a producer would.
        shutil.copytree(staging, daemon_env["FASTFEAST_DATA_DIR"])
        url = daemon_env["FASTFEAST_DATABASE_URL"]
        tables = ("dim_driver", "fact_order", "fact_ticket", "fact_ticket_event")
        expected = {table: manifest.tables[table]["expected_rows"] for table in tables}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            counts = {table: _count(url, table) for table in expected}
            if counts == expected:
                break
            assert daemon.poll() is None, Path(log.name).read_text()[-3000:]
            time.sleep(3)
        assert counts == expected, _diagnosis(url, log.name)
    finally:
        log.close()
        family = psutil.Process(daemon.pid).children(recursive=True)
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            raise
        # Code servers outlive a stopped daemon until their heartbeat times out: end them now.
        for process in family:
            if process.is_running():
                process.terminate()
    assert daemon.returncode is not None

    # A fact partition from the CLI, as an operator re-runs one: it succeeds and changes nothing.
    before = _count(url, "fact_order")
    facts = ["fact_order", "fact_ticket", "fact_ticket_event"]
    rerun = dagster_materialize(daemon_env, facts, f"{DAY}-10:00")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _count(url, "fact_order") == before
