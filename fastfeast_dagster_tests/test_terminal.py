"""What the terminal shows and the log file keeps (run_report.py, dev_console.py): the pure parts
on crafted input, and the report of a real failed run.

The same code against a real `fastfeast dev` session is in test_dev.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from fastfeast_dagster.dev_console import OutputPump, starts_record
from fastfeast_dagster.run_report import RunReport, _row_counts, format_report, report_run

RUN = "6d9391e2-7fdc-409d-8299-487f0716f404"
ENDED = dt.datetime(2026, 3, 2, 10, 15, 2)


def _report(**changes: object) -> RunReport:
    fields: dict[str, object] = {
        "run_id": RUN,
        "outcome": "ok",
        "ended": ENDED,
        "partition": "2026-03-02-10:00",
        "assets": ("fact_order", "fact_ticket", "fact_ticket_event"),
        "rows": {"rows_loaded": 1240, "rows_quarantined": 6, "rows_repaired": 1},
        "seconds": 3.14,
        "failed_checks": (),
        "errors": (),
    }
    return RunReport(**(fields | changes))  # type: ignore[arg-type]


def test_a_run_is_one_line_with_its_partition_tables_rows_and_time() -> None:
    assert format_report(_report()) == (
        "10:15:02  ok        2026-03-02-10:00   fact_order, fact_ticket, fact_ticket_event"
        "  loaded 1,240 · quarantined 6 · repaired 1  3.1 s  [6d9391e2]"
    )


def test_a_day_of_dimensions_names_three_tables_and_counts_the_rest() -> None:
    assets = tuple(f"dim_{n}" for n in "abcdefghijklm")
    line = format_report(_report(assets=assets, partition="2026-03-02"))
    assert "dim_a, dim_b, dim_c +10 more" in line


def test_a_failed_run_prints_its_errors_below_its_line() -> None:
    errors = ("fact_order failed: ValueError: boom", "fact_ticket failed: OSError: gone")
    text = format_report(_report(outcome="FAILED", rows={}, errors=errors))
    first, *rest = text.splitlines()
    assert first.startswith("10:15:02  FAILED    2026-03-02-10:00")
    assert "loaded" not in first
    assert rest == [
        "    fact_order failed: ValueError: boom",
        "    fact_ticket failed: OSError: gone",
    ]


def test_failed_checks_are_named_on_the_runs_line() -> None:
    line = format_report(_report(failed_checks=("fact_ticket:quarantine_rate (WARN)",)))
    assert line.endswith("checks failed: fact_ticket:quarantine_rate (WARN)  [6d9391e2]")


def test_a_range_run_counts_each_tables_load_once() -> None:
    # A range run records one materialization per partition, each with the whole load's counts.
    hour = {
        name: dg.IntMetadataValue(n)
        for name, n in [("rows_loaded", 100), ("rows_quarantined", 2), ("rows_repaired", 1)]
    }
    other = {
        name: dg.IntMetadataValue(n)
        for name, n in [("rows_loaded", 7), ("rows_quarantined", 0), ("rows_repaired", 0)]
    }
    counts = _row_counts([("fact_order", hour)] * 24 + [("fact_ticket", other)] * 24)
    assert counts == {"rows_loaded": 107, "rows_quarantined": 2, "rows_repaired": 1}
    assert _row_counts([("ticket_sla", {"dagster/row_count": dg.IntMetadataValue(3)})]) == {}


DAEMON_ERROR = json.dumps(
    {
        "event": "Sensor stream_files_sensor failed",
        "logger": "dagster.daemon.SensorDaemon",
        "level": "error",
        "exception": "Traceback (most recent call last):\nOSError: gone",
    }
)
LINES = [
    '{"event": "Checking for new runs", "logger": "dagster.daemon.SensorDaemon", "level": "info"}',
    DAEMON_ERROR,
    "\x1b[32m2026-03-02 10:15:02 +0000\x1b[0m - dagster - ERROR - code location failed to load",
    "Traceback (most recent call last):",
    '  File "defs.py", line 1',
    "ImportError: nope",
    f"2026-03-02 10:15:03 +0000 - dagster - ERROR - __ASSET_JOB - {RUN} - fact_order - failed",
    "2026-03-02 10:15:04 +0000 - dagster - INFO - loaded",
]


def _pump(*, verbose: bool) -> tuple[list[str], str]:
    """LINES through an OutputPump: what the terminal got, and the log file."""
    said: list[str] = []
    log = io.StringIO()
    pump = OutputPump(log, said.append, verbose=verbose)
    for line in LINES:
        pump.feed(line + "\n")
    pump.flush()
    return said, log.getvalue()


def test_the_terminal_gets_the_error_records_of_dagsters_processes_in_full() -> None:
    said, log = _pump(verbose=False)
    assert said == [
        "Sensor stream_files_sensor failed\nTraceback (most recent call last):\nOSError: gone",
        # A record's continuation lines are part of it; the run's own failure is the run's line.
        "2026-03-02 10:15:02 +0000 - dagster - ERROR - code location failed to load\n"
        'Traceback (most recent call last):\n  File "defs.py", line 1\nImportError: nope',
    ]
    records = [json.loads(line) for line in log.splitlines()]
    assert len(records) == 5  # one per record, every one JSON
    assert records[1] == json.loads(DAEMON_ERROR)  # JSON records are kept as they were logged
    assert records[2]["level"] == "ERROR" and records[2]["message"].endswith("ImportError: nope")
    assert "\x1b" not in log


def test_verbose_prints_every_line_as_dagster_wrote_it_and_still_logs_it() -> None:
    said, log = _pump(verbose=True)
    assert said == LINES
    assert len(log.splitlines()) == 5


def test_a_bare_traceback_is_an_error_and_other_text_continues_a_record() -> None:
    record = starts_record("Traceback (most recent call last):")
    assert record is not None and record.is_error
    assert starts_record("  File x") is None
    assert starts_record("{not json") is None


@pytest.mark.usefixtures("failing_team_suite", "pipeline_env")
def test_a_real_failed_run_reports_its_tables_counts_and_error(data_dir: Path) -> None:
    from fastfeast_dagster.definitions import defs

    day = data_dir / "input" / "batch" / "2026-03-02"
    day.mkdir(parents=True)
    (day / "teams.csv").write_text("team_id,team_name\n1,Refunds\n2,VIP Support\n")
    keys = [dg.AssetKey("dim_team")]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    assert job is not None
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, partition_key="2026-03-02", asset_selection=keys,
            raise_on_error=False,
        )  # fmt: skip
        report = report_run(instance, result.run_id)
    assert report is not None
    # The load committed (checks run after it); the blocking suite then failed the run.
    assert (report.outcome, report.partition, report.assets) == (
        "FAILED",
        "2026-03-02",
        ("dim_team",),
    )
    assert report.rows == {"rows_loaded": 2, "rows_quarantined": 0, "rows_repaired": 0}
    assert report.failed_checks == ("dim_team:great_expectations (ERROR)",)
    (error,) = report.errors
    # The checks it names on its next lines are on the run's line.
    assert error == (
        "dim_team_checks failed: DagsterAssetCheckFailedError:"
        " 1 blocking asset check failed with ERROR severity:"
    )
    first, *rest = format_report(report).splitlines()
    assert "FAILED" in first and "checks failed: dim_team:great_expectations (ERROR)" in first
    assert rest == [f"    {error}"]  # one line: the run's event log has the stack trace


def test_a_failed_runs_database_error_is_its_first_line_never_the_rows_values(
    warehouse_url: str,
) -> None:
    secret = "alice@example.com"

    @dg.asset
    def customers() -> None:
        with psycopg.connect(warehouse_url) as conn:
            conn.execute("CREATE TEMPORARY TABLE customer (email text PRIMARY KEY)")
            # The server's error quotes the key in its DETAIL line, the function in CONTEXT.
            conn.execute(
                "CREATE FUNCTION pg_temp.add(value text) RETURNS void LANGUAGE sql"
                " AS 'INSERT INTO customer VALUES (value)'"
            )
            conn.execute("SELECT pg_temp.add(%s), pg_temp.add(%s)", [secret, secret])

    with dg.instance_for_test() as instance:
        result = dg.materialize([customers], instance=instance, raise_on_error=False)
        (failure,) = result.get_step_failure_events()
        recorded = failure.step_failure_data.error
        report = report_run(instance, result.run_id)
    assert recorded is not None and secret in recorded.to_string()  # what the event log keeps
    assert report is not None
    assert report.errors == (
        "customers failed: UniqueViolation: duplicate key value violates unique constraint"
        ' "customer_pkey"',
    )
    assert secret not in format_report(report)
