"""`fastfeast dev` as a user starts it: files dropped in the folders load with no manual action,
and Ctrl-C leaves no process behind."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import psycopg

from fastfeast_dagster.synthetic import generate
from fastfeast_dagster_tests.commands import BIN, fresh_environment, run_command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _responds(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_dev_loads_dropped_files_and_stops_cleanly_on_ctrl_c() -> None:
    state = Path(tempfile.mkdtemp(prefix="ffdev", dir="/tmp"))
    env = fresh_environment(state)
    port = _free_port()
    log = (state / "dev.log").open("w")
    dev = subprocess.Popen(
        [BIN / "fastfeast", "dev", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    family: list[psutil.Process] = []
    try:
        _wait_for(lambda: _responds(f"http://127.0.0.1:{port}/server_info"), 180, "the UI")
        manifest = generate(state / "incoming", dt.date(2026, 3, 2), hours=[10])
        shutil.copytree(state / "incoming", state / "data")
        url = run_command(env, "fastfeast", "db", "url").stdout.strip()
        expected = manifest.tables["fact_order"]["expected_rows"]

        def loaded() -> bool:
            with psycopg.connect(url) as conn:
                (count,) = conn.execute("SELECT count(*) FROM fact_order").fetchone()
                return count == expected

        _wait_for(loaded, 300, f"{expected} orders in the warehouse")
        family = psutil.Process(dev.pid).children(recursive=True)
        assert family, "dagster dev runs its webserver and daemon as children"
    finally:
        dev.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        dev.wait(timeout=150)
        log.close()
        alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        run_command(env, "fastfeast", "db", "stop")
    assert alive == [], (alive, (state / "dev.log").read_text()[-3000:])
    shutil.rmtree(state, ignore_errors=True)
