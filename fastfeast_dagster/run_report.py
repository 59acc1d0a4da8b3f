"""One line per finished run: what `fastfeast dev` and `fastfeast ingest` print in the terminal.

Read from what the run recorded on the instance (its record, the load metadata of its
materializations, its check evaluations, its failures), so that a daemon-launched run, one of
`fastfeast ingest` and one launched from the UI read alike. A failed run's errors follow, one line
each (the error's class and the first line of its message): the later lines of a database error
(DETAIL, CONTEXT) can quote a row's values, and no PII may reach the terminal. The run's full
errors stay in its event log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from fastfeast_dagster.assets.partitions import run_partition

if TYPE_CHECKING:
    from dagster._core.execution.plan.objects import StepFailureData
    from dagster._utils.error import SerializableErrorInfo

# The load report's counts on each table materialization (resources/io_manager.py).
ROW_COUNTS = ("rows_loaded", "rows_quarantined", "rows_repaired")
_SHOWN_ASSETS = 3
_OUTCOMES = {
    dg.DagsterRunStatus.SUCCESS: "ok",
    dg.DagsterRunStatus.FAILURE: "FAILED",
    dg.DagsterRunStatus.CANCELED: "CANCELED",
}
FINISHED = list(_OUTCOMES)


@dataclass(frozen=True)
class RunReport:
    run_id: str
    outcome: str  # ok | FAILED | CANCELED
    ended: dt.datetime | None
    partition: str | None
    assets: tuple[str, ...]
    rows: dict[str, int]  # ROW_COUNTS summed over the run's tables; empty when it loaded none
    seconds: float | None
    failed_checks: tuple[str, ...]  # "table:check (SEVERITY)"
    errors: tuple[str, ...]  # one line each (`step_error`)


def report_run(instance: dg.DagsterInstance, run_id: str) -> RunReport | None:
    """The report of a finished run, or None while it runs (or if there is no such run)."""
    record = instance.get_run_record_by_id(run_id)
    if record is None or record.dagster_run.status not in _OUTCOMES:
        return None
    run = record.dagster_run
    types = dg.DagsterEventType
    events = [
        entry.event_log_entry.dagster_event
        for entry in instance.get_records_for_run(
            run_id,
            of_type={
                types.ASSET_MATERIALIZATION,
                types.ASSET_CHECK_EVALUATION,
                types.STEP_FAILURE,
                types.RUN_FAILURE,
            },
        ).records
    ]
    events = [event for event in events if event is not None]
    materializations = [
        event.step_materialization_data.materialization
        for event in events
        if event.event_type == types.ASSET_MATERIALIZATION
    ]
    assets = sorted(
        {key.to_user_string() for key in run.asset_selection or ()}
        | {m.asset_key.to_user_string() for m in materializations}
    )
    return RunReport(
        run_id=run_id,
        outcome=_OUTCOMES[run.status],
        ended=(
            dt.datetime.fromtimestamp(record.end_time, tz=dt.UTC).astimezone()
            if record.end_time
            else None
        ),
        partition=run_partition(run.tags),
        assets=tuple(assets),
        rows=_row_counts((m.asset_key.to_user_string(), m.metadata) for m in materializations),
        seconds=(
            record.end_time - record.start_time
            if record.start_time is not None and record.end_time is not None
            else None
        ),
        failed_checks=tuple(
            f"{data.asset_key.to_user_string()}:{data.check_name} ({data.severity.value})"
            for event in events
            if event.event_type == types.ASSET_CHECK_EVALUATION
            and not (data := event.event_specific_data).passed  # type: ignore[union-attr]
        ),
        errors=tuple(_errors(events)),
    )


def _row_counts(materializations: Iterable[tuple[str, dict[str, object]]]) -> dict[str, int]:
    """Per table, its first materialization's counts: a range run records one event per
    partition, each carrying the whole load's metadata."""
    first: dict[str, dict[str, object]] = {}
    for table, metadata in materializations:
        first.setdefault(table, metadata)
    loaded = [meta for meta in first.values() if all(name in meta for name in ROW_COUNTS)]
    return {
        name: sum(int(meta[name].value) for meta in loaded)  # type: ignore[attr-defined]
        for name in ROW_COUNTS
        if loaded
    }


def _errors(events: list[dg.DagsterEvent]) -> list[str]:
    types = dg.DagsterEventType
    errors = [
        f"{event.step_key} failed: {step_error(event.step_failure_data)}"
        for event in events
        if event.event_type == types.STEP_FAILURE
    ]
    if not errors:  # a run that failed before or outside its steps (code, resources, launch)
        for event in events:
            if event.event_type == types.RUN_FAILURE:
                error = event.job_failure_data.error
                errors.append(error_line(error) if error else _first_line(event.message or ""))
    return errors


def step_error(data: StepFailureData) -> str:
    """What failed a step, in one line: its `Failure`'s description, or else its error's."""
    if data.user_failure_data is not None and data.user_failure_data.description:
        return _first_line(data.user_failure_data.description)
    if data.error is not None:
        return error_line(data.error)
    return "the step failed"


def error_line(error: SerializableErrorInfo) -> str:
    """The class and the first message line of the error under Dagster's wrappers, which is the
    error our code (or a library under it) raised; never the lines after it."""
    while error.cause is not None:
        error = error.cause
    text = _first_line(error.message)
    qualified = error_class(error)
    message = text.removeprefix(qualified).removeprefix(":").strip()
    return f"{error.cls_name}: {message}" if message else error.cls_name


def error_class(error: SerializableErrorInfo) -> str:
    """The error's module-qualified class name, which its recorded message starts with."""
    head = _first_line(error.message).partition(": ")[0]
    return head if head.endswith(error.cls_name) else error.cls_name


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def format_report(report: RunReport) -> str:
    """One line (`HH:MM:SS outcome partition assets rows duration`), then its errors indented."""
    assets = ", ".join(report.assets[:_SHOWN_ASSETS])
    if len(report.assets) > _SHOWN_ASSETS:
        assets += f" +{len(report.assets) - _SHOWN_ASSETS} more"
    cells = [
        f"{report.ended:%H:%M:%S}" if report.ended else "--:--:--",
        f"{report.outcome:8}",
        f"{report.partition or '-':17}",
        assets or "(no assets)",
    ]
    if report.rows:
        cells.append(
            f"loaded {report.rows['rows_loaded']:,} · quarantined"
            f" {report.rows['rows_quarantined']:,} · repaired {report.rows['rows_repaired']:,}"
        )
    if report.seconds is not None:
        cells.append(f"{report.seconds:.1f} s")
    if report.failed_checks:
        cells.append("checks failed: " + ", ".join(report.failed_checks))
    cells.append(f"[{report.run_id[:8]}]")
    lines = ["  ".join(cells)]
    lines += ["    " + error for error in report.errors]
    return "\n".join(lines)
