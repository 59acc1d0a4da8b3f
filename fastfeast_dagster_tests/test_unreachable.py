"""A server that is gone, told apart from a data error: in a failed run's recorded error
(`ingest.py`), and in what `fastfeast ingest` prints when Dagster's storage goes away (`cli.py`).

The runs are real Dagster runs whose step meets a real PostgreSQL error; the storage that goes
away is a real instance's database that stops accepting connections.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from fastfeast_dagster.cli import CliError, _ingest_summary, _run_line
from fastfeast_dagster.ingest import IngestSummary, RunOutcome, _failure, ingest
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database, drop_database
from fastfeast_dagster_tests.commands import RUN_LINE, free_port


def _failed_run(step: Callable[[], None]) -> tuple[str, bool]:
    """`ingest`'s verdict on a run whose one step runs `step` and fails."""

    @dg.asset
    def table() -> None:
        step()

    with dg.instance_for_test() as instance:
        result = dg.materialize([table], instance=instance, raise_on_error=False)
    assert not result.success
    return _failure(result)


def test_a_refused_connection_in_a_step_is_a_server_that_is_gone() -> None:
    port = free_port()
    line, unreachable = _failed_run(
        lambda: psycopg.connect(f"postgresql://fastfeast@127.0.0.1:{port}/fastfeast").close()
    )
    assert unreachable
    assert line.startswith("OperationalError: connection failed: ")


def test_a_connection_the_server_ends_mid_query_is_a_server_that_is_gone(
    warehouse_url: str,
) -> None:
    def lose_the_connection() -> None:
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    line, unreachable = _failed_run(lose_the_connection)
    assert unreachable, line


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1 / 0",  # a data error
        "SET statement_timeout = 1; SELECT pg_sleep(1)",  # an OperationalError, server alive
    ],
    ids=["division-by-zero", "query-canceled"],
)
def test_an_error_of_a_server_that_answers_is_not(warehouse_url: str, statement: str) -> None:
    def fail() -> None:
        with psycopg.connect(warehouse_url) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    line, unreachable = _failed_run(fail)
    assert not unreachable, line


@contextmanager
def postgres_instance(pg_server: EmbeddedPostgres) -> Iterator[tuple[dg.DagsterInstance, str]]:
    """A Dagster instance whose storage is a new database of the session's server; the instance
    and the database's name."""
    name = f"d_{uuid.uuid4().hex[:12]}"
    admin = pg_server.url("postgres")
    create_database(admin, name)
    storage = {"postgres": {"postgres_url": pg_server.url(name, driver="psycopg2")}}
    try:
        with dg.instance_for_test(overrides={"storage": storage}) as instance:
            yield instance, name
            _connections(admin, name, allowed=True)  # for the instance to close
    finally:
        drop_database(admin, name)


def _connections(admin_url: str, database: str, *, allowed: bool) -> None:
    """Whether the database accepts connections; refusing them ends the ones it has."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.SQL("true" if allowed else "false")
            )
        )
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [database],
            )


def test_storage_lost_after_a_run_still_prints_its_line_and_ingest_exits_1(
    pipeline_env: str,
    data_dir: Path,
    pg_server: EmbeddedPostgres,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fastfeast_dagster.definitions import defs

    # The master snapshot alone: one run, then the storage goes before its line is printed.
    generate(data_dir, dt.date(2026, 3, 2), hours=[], scale=0.2)
    shutil.rmtree(data_dir / "input")
    lines = []
    with postgres_instance(pg_server) as (instance, database):

        def storage_goes_then_print(run: RunOutcome) -> None:
            _connections(pg_server.url("postgres"), database, allowed=False)
            lines.append(_run_line(instance, run))

        summary = ingest(
            defs, instance, max_wait_seconds=0, on_run=storage_goes_then_print, log_level="ERROR"
        )
    (run,) = summary.runs
    assert run.success and summary.unreachable
    (line,) = lines
    # What `ingest` saw of the run: its outcome, partition and tables, sorted as a record's are.
    match = RUN_LINE.match(line)
    assert match is not None, line
    assert (match["outcome"], match["partition"]) == ("ok", "2026-01-01")
    assert match["assets"] == "dim_agent, dim_category, dim_channel +10 more"
    assert run.run_id.startswith(match["run"])

    assert _ingest_summary(summary, 1.0) == 1
    summary_line, stopped = capsys.readouterr().out.splitlines()
    assert summary_line == "1 run(s), 0 failed, in 1.0 s"
    assert stopped == f"stopped: warehouse unreachable at {pipeline_env}, will retry"


def _outcome(**changes: object) -> RunOutcome:
    fields: dict[str, object] = {
        "sensor": "stream_files_sensor",
        "run_key": "stream:2026-03-02-10:00:0123456789abcdef",
        "partition_key": "2026-03-02-10:00",
        "assets": ["fact_ticket_event", "fact_order", "fact_ticket"],
        "success": False,
        "run_id": "6d9391e2-7fdc-409d-8299-487f0716f404",
    }
    return RunOutcome(**(fields | changes))  # type: ignore[arg-type]


def test_a_run_that_lost_its_storage_is_reported_from_its_outcome() -> None:
    run = _outcome(error="warehouse unreachable at postgresql://h/db, will retry", unreachable=True)
    with dg.instance_for_test() as instance:
        line, error = _run_line(instance, run).splitlines()
    match = RUN_LINE.match(line)
    assert match is not None, line
    assert (match["outcome"], match["assets"]) == (
        "FAILED",
        "fact_order, fact_ticket, fact_ticket_event",
    )
    assert error == "    warehouse unreachable at postgresql://h/db, will retry"


def test_ingest_exits_1_and_says_so_only_when_the_storage_went_between_runs(
    pipeline_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = _outcome(success=True)
    assert _ingest_summary(IngestSummary(runs=[ok]), 2.0) == 0
    # Lost by a run: its own line said so, and it failed.
    lost = _outcome(error="warehouse unreachable", unreachable=True)
    assert _ingest_summary(IngestSummary(runs=[ok, lost], unreachable=True), 2.0) == 1
    assert capsys.readouterr().out.splitlines() == [
        "1 run(s), 0 failed, in 2.0 s",
        "2 run(s), 1 failed, in 2.0 s",
    ]
    with pytest.raises(CliError, match="warehouse unreachable"):  # before any run
        _ingest_summary(IngestSummary(unreachable=True), 2.0)
