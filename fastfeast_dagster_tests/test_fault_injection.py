"""Fault injection: real processes interrupted at known points heal with no manual step.

One embedded server and data root for the module, as a user has them. The state before the hour
(the master snapshot and a batch day, loaded by `fastfeast ingest`) is kept as template databases;
each case starts from it, loads the hour as a user does, is interrupted at a point where a lock of
the test holds the load (`faults.py`: no sleeps, no luck), and must then reach exactly the state
of an uninterrupted run: every table's row count and content digest, the open quarantine and the
current file log included. The batch day carries a customers row that lost a field and an
agents file without its header, so the PII scan at the end has something to find if masking
ever misses.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fastfeast_dagster_tests import faults
from fastfeast_dagster_tests.commands import fresh_environment, run_command
from fastfeast_dagster_tests.world import (
    World,
    digest,
    kill_held_ingest,
    kill_run_worker_under_dev,
    prepare_world,
)

DAY = dt.date(2026, 3, 2)
HOUR = f"{DAY}-10:00"
FACTS = "fact_order, fact_ticket, fact_ticket_event"
# The daemon checks its sensors every 5 s and they tick at most every 10 s.
TWO_TICKS_SECONDS = 2 * (10 + 5)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    state = Path(tempfile.mkdtemp(prefix="fffault", dir="/tmp"))
    try:
        yield prepare_world(state, DAY, hour=10, scale=0.2)
    finally:
        run_command(fresh_environment(state), "fastfeast", "db", "stop")
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def clean(world: World) -> dict[str, tuple[int, str]]:
    """The state an uninterrupted `fastfeast ingest` of the hour reaches."""
    world.restore()
    done = world.run("fastfeast", "ingest")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert _runs_of_the_hour(done.stdout) == [f"ok: {FACTS}"]
    state = digest(world.url())
    assert state["fact_order"][0] == world.manifest.tables["fact_order"]["expected_rows"]
    return state


def _runs_of_the_hour(stdout: str) -> list[str]:
    """`ok: <tables>` or `FAILED: <tables>` for each run of the hour that `ingest` printed."""
    found = re.findall(rf"^  (ok|FAILED) +{HOUR}  (.+?)  \(run ", stdout, flags=re.MULTILINE)
    return [f"{state}: {tables}" for state, tables in found]


@pytest.mark.parametrize("point", ["copy", "upsert", "between tables"])
def test_a_killed_ingest_heals_with_one_more_ingest(
    world: World, clean: dict[str, tuple[int, str]], point: str
) -> None:
    world.restore()
    load, killed, seconds = kill_held_ingest(world, point, HOUR)
    assert load.client_pid == killed  # the load was ingest's own, in its process
    assert seconds < 5, f"the killed load held its locks for {seconds:.1f} s"
    healed = world.run("fastfeast", "ingest")
    assert healed.returncode == 0, healed.stdout + healed.stderr[-3000:]
    # Only what did not commit is loaded again.
    expected = "fact_ticket, fact_ticket_event" if point == "between tables" else FACTS
    assert _runs_of_the_hour(healed.stdout) == [f"ok: {expected}"]
    assert digest(world.url()) == clean
    if point == "copy":
        assert "nothing new to ingest" in world.run("fastfeast", "ingest").stdout


def test_a_server_stopped_mid_run_ends_in_one_line_and_the_next_ingest_heals(
    world: World, clean: dict[str, tuple[int, str]]
) -> None:
    world.restore()
    url = world.url()
    holder = psycopg.connect(url, autocommit=True)
    faults.hold_partition(holder, "fact_ticket", HOUR)
    ingest = world.start("fastfeast", "ingest")
    faults.blocked_load(url, "fact_ticket")
    stopped = world.run("fastfeast", "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    ingest.wait(180)
    holder.close()
    out, err = world.output("fastfeast", "ingest")
    assert ingest.returncode == 1, out + err[-3000:]
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1, out
    assert re.search(
        rf"FAILED {HOUR}  {FACTS}  \(run \w{{8}}\): warehouse unreachable at"
        r" postgresql://postgres@/fastfeast\?host=\S+, will retry$",
        failed[0],
    ), failed[0]
    assert "Traceback" not in out + err
    healed = world.run("fastfeast", "ingest")  # starts the embedded server again
    assert healed.returncode == 0, healed.stdout + healed.stderr[-3000:]
    assert _runs_of_the_hour(healed.stdout) == ["ok: fact_ticket, fact_ticket_event"]
    assert digest(url) == clean


def _dagster_query(world: World, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(world.url("dagster")) as conn:
        return conn.execute(query).fetchall()


def test_a_killed_run_worker_under_fastfeast_dev_heals_within_two_sensor_ticks(
    world: World, clean: dict[str, tuple[int, str]]
) -> None:
    world.restore()
    killed = kill_run_worker_under_dev(world)
    # The worker was a process of dev's tree, not dev (nor its daemon) itself.
    assert killed.worker_pid != killed.dev_pid and killed.dev_pid in killed.ancestors
    assert killed.seconds < 5, f"its load held its locks for {killed.seconds:.1f} s"
    # The code server saw its worker die and failed the run; the retry sensor took it up.
    assert killed.retry is not None, world.output("fastfeast", "dev", "--port")[0][-3000:]
    retry, failed, delay = killed.retry
    assert (retry, failed) == ("SUCCESS", "FAILURE")
    assert delay < TWO_TICKS_SECONDS, f"re-run requested {delay:.0f} s after the failure"
    assert digest(world.url()) == clean


def test_no_clear_pii_value_is_stored_or_logged_anywhere(world: World) -> None:
    """Every text and jsonb column of the warehouse (file log and quarantine included) and
    Dagster's event log, after the cases above: none holds a clear value the generator wrote."""
    clear = sorted(
        {
            value
            for columns in world.manifest.pii_clear_values.values()
            for values in columns.values()
            for value in values
        },
        key=len,
        reverse=True,
    )
    assert len(clear) > 100
    pattern = re.compile("|".join(map(re.escape, clear)))
    found: list[tuple[str, str]] = []
    with psycopg.connect(world.url()) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type IN ('text', 'jsonb', 'character varying')"
        ).fetchall()
        for table, column in columns:
            values = conn.execute(
                sql.SQL("SELECT DISTINCT {}::text FROM {}").format(
                    sql.Identifier(column), sql.Identifier(table)
                )
            ).fetchall()
            found += [(f"{table}.{column}", v) for (v,) in values if v and pattern.search(v)]
    events = _dagster_query(world, "SELECT event FROM event_logs")
    assert len(events) > 100
    found += [("event_logs", e) for (e,) in events if pattern.search(str(e))]
    assert found == []
    # The damaged rows are there, masked: the scan looked where the values would be.
    with psycopg.connect(world.url()) as conn:
        rules = dict(
            conn.execute(
                "SELECT rejection_rule, count(*) FROM quarantine WHERE superseded_at IS NULL"
                " AND rejection_rule IN ('field_count', 'header_not_names') GROUP BY 1"
            ).fetchall()
        )
    assert rules["field_count"] == 1 and rules["header_not_names"] > 1
