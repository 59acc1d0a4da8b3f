"""The pipeline from the command line, as a user runs it, on the embedded default."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster_tests.commands import (
    dagster_exports,
    dagster_materialize,
    fresh_environment,
    run_command,
)

DAY_1 = dt.date(2026, 3, 2)
DAY_2 = dt.date(2026, 3, 3)


@pytest.fixture
def user_env() -> Iterator[dict[str, str]]:
    """A fresh state dir (its own embedded server) and data root, nothing else set."""
    state = Path(tempfile.mkdtemp(prefix="ffpipe", dir="/tmp"))
    env = fresh_environment(state)
    yield env
    run_command(env, "fastfeast", "db", "stop")
    shutil.rmtree(state, ignore_errors=True)


def test_dagster_asset_materialize_loads_a_day(user_env: dict[str, str]) -> None:
    generate(Path(user_env["FASTFEAST_DATA_DIR"]), DAY_1, hours=[])
    assert run_command(user_env, "fastfeast", "db", "start").returncode == 0
    env = user_env | dagster_exports(user_env)
    tables = ["dim_city", "dim_region", "dim_segment", "dim_customer"]
    result = dagster_materialize(env, tables, DAY_1.isoformat())
    assert result.returncode == 0, result.stderr[-3000:]
    with psycopg.connect(env["FASTFEAST_DATABASE_URL"]) as conn:
        counts = dict(
            conn.execute(
                "SELECT source_table, sum(valid_records) FROM pipeline_file_log GROUP BY 1"
            ).fetchall()
        )
        (customers,) = conn.execute("SELECT count(*) FROM dim_customer").fetchone()
    assert set(counts) == {"dim_city", "dim_region", "dim_segment", "dim_customer"}
    assert customers == counts["dim_customer"] > 400


def test_ingest_loads_everything_and_a_second_ingest_runs_nothing(
    user_env: dict[str, str],
) -> None:
    root = Path(user_env["FASTFEAST_DATA_DIR"])
    generate(root, DAY_1, hours=[])
    manifest = generate(root, DAY_2, hours=[])
    first = run_command(user_env, "fastfeast", "ingest")
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    assert "3 run(s), 0 failed" in first.stdout  # master, day 1, day 2
    second = run_command(user_env, "fastfeast", "ingest")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing new to ingest" in second.stdout
    url = run_command(user_env, "fastfeast", "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        (drivers,) = conn.execute("SELECT count(*) FROM dim_driver").fetchone()
        (runs,) = conn.execute("SELECT count(DISTINCT run_id) FROM pipeline_file_log").fetchone()
    assert drivers == manifest.tables["dim_driver"]["expected_rows"]
    assert runs == 3


def test_demo_loads_a_day_and_prints_the_summary(user_env: dict[str, str]) -> None:
    result = run_command(user_env, "fastfeast", "demo", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # 26 loads (master, batch day, 24 hours); the calendar; the day's SLA rows and marts; the
    # ticket mart of the next day (tickets of late orders); the due orphan promotion.
    assert "30 runs, 0 failed" in out
    for heading in ("rows per table", "quarantine (open rows) by stage / rule", "true orphans:"):
        assert heading in out
    assert "SLA compliance: first response" in out
    fact_orders = next(line for line in out.splitlines() if line.strip().startswith("fact_order"))
    assert int(fact_orders.split()[-1].replace(",", "")) > 1000
    # The project's loggers wrote JSON lines, and no log anywhere holds a clear PII value.
    assert '"logger": "fastfeast_dagster.warehouse.load"' in result.stderr
    state = Path(user_env["FASTFEAST_STATE_DIR"])
    manifest = Manifest.load(Path(user_env["FASTFEAST_DATA_DIR"]) / "manifest.json")
    clear = {
        str(value)
        for columns in manifest.pii_clear_values.values()
        for values in columns.values()
        for value in values
    }
    logs = [result.stdout, result.stderr]
    logs += [
        path.read_text(errors="replace")
        for path in state.rglob("*")
        if path.suffix in (".out", ".err", ".log")
    ]
    assert clear and not [value for value in clear if any(value in text for text in logs)]
