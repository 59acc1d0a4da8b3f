"""One-shot ingestion: evaluate the sensors, execute their run requests, repeat until quiet,
then run each schedule's latest tick that has not run.

This is the daemon's loop without the daemon, for cron, CI and catch-up. Requests are evaluated by
the real sensors and executed through Dagster on the configured instance, tagged with the sensor's
name and run key exactly as the daemon tags them, so the daemon and `fastfeast ingest` never run
the same files twice. Its sensor cursors are kept on the instance between calls (apart from the
daemon's), so a call costs a folder listing, not a run-key lookup per partition ever seen.

Its runs name this process (`run_owners.py`), so that the next call reports a run it left
behind (killed, or its server gone) failed, and the retry sensor takes it up. A warehouse or a
Dagster storage that cannot be reached ends the call: the run it hit says so in one line, and
the next call carries on.

The derived-tables sensor is one of its sensors, so the SLA rows and marts of every day loaded are
done when it returns; schedules are tagged as the daemon's scheduler tags them, so a tick runs once.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

# Dagster 1.13 has no public name for the run-key tag its sensor daemon sets (the sensor's own
# tag comes from the public `DagsterRun.tags_for_sensor`); it must be the daemon's exact tag, or
# the daemon and `ingest` would run the same files twice.
from dagster._core.storage.tags import RUN_KEY_TAG, SCHEDULED_EXECUTION_TIME_TAG

# Nor for the latest tick of a cron schedule, which the daemon's scheduler computes with this.
from dagster._utils.schedules import get_latest_completed_cron_tick

from fastfeast_dagster.run_owners import owner_tags
from fastfeast_dagster.run_report import error_class, step_error
from fastfeast_dagster.sensors.derived import DERIVED_SENSOR
from fastfeast_dagster.sensors.folders import FOLDER_SENSOR_NAMES, Cursor
from fastfeast_dagster.sensors.orphans import ORPHAN_RETRY_SENSOR
from fastfeast_dagster.sensors.retries import RUN_RETRY_SENSOR, retries_due
from fastfeast_dagster.warehouse.connection import (
    WAREHOUSE_URL_ENV,
    is_unreachable,
    is_unreachable_class,
    unreachable_message,
)

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

# Evaluated in this order each round: what earlier runs left unfinished, a day's dimensions
# before its hours' facts, the retry of orphans whose parents those runs brought, then the tables
# derived from what loaded.
SENSOR_ORDER = (
    RUN_RETRY_SENSOR,
    FOLDER_SENSOR_NAMES["batch"],
    FOLDER_SENSOR_NAMES["stream"],
    ORPHAN_RETRY_SENSOR,
    DERIVED_SENSOR,
)
CURSOR_KEY_PREFIX = "fastfeast/ingest/cursor/"


@dataclass
class RunOutcome:
    sensor: str
    run_key: str
    partition_key: str | None
    assets: list[str]
    success: bool
    run_id: str
    error: str | None = None  # the first line of what failed it
    unreachable: bool = False  # the warehouse or Dagster's storage could not be reached


@dataclass
class IngestSummary:
    runs: list[RunOutcome] = field(default_factory=list)
    # Set when the warehouse or Dagster's storage became unreachable, which ended the call.
    unreachable: bool = False
    # When the failed runs' re-runs that wait for their backoff are due (epoch seconds): the
    # call ended quiet, but a later call (or the daemon) has these to run.
    retries_due: list[float] = field(default_factory=list)

    @property
    def failed(self) -> list[RunOutcome]:
        return [run for run in self.runs if not run.success]


def ingest(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    max_wait_seconds: float = 120.0,
    on_run: Callable[[RunOutcome], None] | None = None,
    log_level: str = "DEBUG",
) -> IngestSummary:
    summary = IngestSummary()
    try:
        _ingest(defs, instance, summary, max_wait_seconds, on_run, log_level)
    except Exception as error:
        # Dagster's storage went away (between runs, or under one): the next call carries on.
        if not is_unreachable(error):
            raise
        summary.unreachable = True
    return summary


def _ingest(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    summary: IngestSummary,
    max_wait_seconds: float,
    on_run: Callable[[RunOutcome], None] | None,
    log_level: str,
) -> None:
    sensors = [defs.resolve_sensor_def(name) for name in _present(defs)]
    stored = instance.daemon_cursor_storage.get_cursor_values(
        {CURSOR_KEY_PREFIX + sensor.name for sensor in sensors}
    )
    cursors = {sensor.name: stored.get(CURSOR_KEY_PREFIX + sensor.name) for sensor in sensors}
    deadline = time.monotonic() + max_wait_seconds
    while True:
        launched = 0
        pending = 0
        for sensor in sensors:
            with dg.build_sensor_context(
                instance=instance,
                cursor=cursors[sensor.name],
                definitions=defs,
                resources=defs.resources,
            ) as context:
                tick = sensor.evaluate_tick(context)
            if sensor.name in FOLDER_SENSOR_NAMES.values():
                pending += Cursor.loads(tick.cursor).pending
            for request in tick.run_requests or []:
                if _already_ran(instance, sensor, request.run_key):
                    continue
                outcome = _execute(defs, instance, sensor, request, log_level)
                summary.runs.append(outcome)
                launched += 1
                if on_run is not None:
                    on_run(outcome)
                if outcome.unreachable:
                    summary.unreachable = True
                    return
            # Stored once the tick's runs exist: an interrupted call re-evaluates them next time
            # and the run keys keep them from running twice.
            if tick.cursor is not None and tick.cursor != cursors[sensor.name]:
                cursors[sensor.name] = tick.cursor
                instance.daemon_cursor_storage.set_cursor_values(
                    {CURSOR_KEY_PREFIX + sensor.name: tick.cursor}
                )
        if launched:
            continue
        if pending and time.monotonic() < deadline:
            time.sleep(1.0)
            continue
        _run_due_schedules(defs, instance, summary, on_run, log_level)
        summary.retries_due = retries_due(cursors.get(RUN_RETRY_SENSOR))
        return


def _present(defs: dg.Definitions) -> list[str]:
    names = {sensor.name for sensor in defs.sensors or []}
    return [name for name in SENSOR_ORDER if name in names]


def _already_ran(
    instance: dg.DagsterInstance, sensor: dg.SensorDefinition, run_key: str | None
) -> bool:
    if run_key is None:
        return False
    tags = {RUN_KEY_TAG: run_key, **dg.DagsterRun.tags_for_sensor(sensor)}
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags=tags), limit=1))


def _execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sensor: dg.SensorDefinition,
    request: dg.RunRequest,
    log_level: str,
) -> RunOutcome:
    return _run_request(
        defs, instance, sensor.name, request, dg.DagsterRun.tags_for_sensor(sensor), log_level
    )


def _run_request(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    instigator: str,
    request: dg.RunRequest,
    instigator_tags: Mapping[str, str],
    log_level: str,
) -> RunOutcome:
    selection = list(request.asset_selection or [])
    job = defs.resolve_implicit_job_def_def_for_assets(selection)
    assert job is not None, f"no job for {selection}"
    # Partition tags are re-derived from partition_key; keep the request's own tags.
    tags = {key: value for key, value in request.tags.items() if not key.startswith("dagster/")}
    tags.update(instigator_tags)
    tags.update(owner_tags())
    if request.run_key:
        tags[RUN_KEY_TAG] = request.run_key
    outcome = RunOutcome(
        sensor=instigator,
        run_key=request.run_key or "",
        partition_key=request.partition_key,
        assets=[key.to_user_string() for key in selection],
        success=False,
        # Chosen here, so that a run the storage lost mid-way can still be named.
        run_id=str(uuid.uuid4()),
    )
    try:
        result = job.execute_in_process(
            # The console only; the run's full event log is stored on the instance either way.
            run_config={
                **request.run_config,
                "loggers": {"console": {"config": {"log_level": log_level}}},
            },
            instance=instance,
            partition_key=request.partition_key,
            asset_selection=selection,
            tags=tags,
            run_id=outcome.run_id,
            raise_on_error=False,
        )
    except Exception as error:
        if not is_unreachable(error):
            raise
        url = os.environ.get(WAREHOUSE_URL_ENV, "the configured server")
        outcome.error, outcome.unreachable = unreachable_message(url), True
        return outcome
    outcome.success = result.success
    if not result.success:
        outcome.error, outcome.unreachable = _failure(result)
    return outcome


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, bool]:
    """The first line of what failed the run (later lines of a database error may quote a row),
    and whether the warehouse or Dagster's storage was unreachable."""
    failures = result.get_step_failure_events()
    if not failures:
        return "the run failed", False
    data = failures[0].step_failure_data
    return step_error(data), _recorded_unreachable(data.error)


def _recorded_unreachable(error: SerializableErrorInfo | None) -> bool:
    """Whether a step's recorded error, or one it was raised from, says a server is gone: the
    `Warehouse` resource's verdict, or a driver's error that reached the step unwrapped."""
    while error is not None:
        if error.cls_name == "WarehouseUnreachable" or is_unreachable_class(error_class(error)):
            return True
        error = error.cause or error.context
    return False


def _run_due_schedules(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    summary: IngestSummary,
    on_run: Callable[[RunOutcome], None] | None,
    log_level: str,
) -> None:
    """Each schedule's latest tick, unless a run of it exists (the daemon's or an earlier call's),
    evaluated and tagged as the daemon's scheduler does; true-orphan promotion is one."""
    now = dt.datetime.now(dt.UTC)
    for schedule in defs.schedules or []:
        tick = get_latest_completed_cron_tick(
            schedule.cron_schedule, now, schedule.execution_timezone
        )
        tags = {
            **dg.DagsterRun.tags_for_schedule(schedule),
            SCHEDULED_EXECUTION_TIME_TAG: tick.astimezone(dt.UTC).isoformat(),
        }
        if instance.get_run_ids(filters=dg.RunsFilter(tags=tags), limit=1):
            continue
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=tick,
            repository_def=defs.get_repository_def(),
        ) as context:
            requests = schedule.evaluate_tick(context).run_requests or []
        # A schedule's request names no assets: they are its job's.
        targets = sorted(defs.resolve_job_def(schedule.job_name).asset_layer.selected_asset_keys)
        for request in requests:
            request = request.with_replaced_attrs(
                asset_selection=request.asset_selection or targets
            )
            outcome = _run_request(defs, instance, schedule.name, request, tags, log_level)
            summary.runs.append(outcome)
            if on_run is not None:
                on_run(outcome)
            if outcome.unreachable:
                summary.unreachable = True
                return
