"""Self-healing: a partition whose run did not finish is requested again, by itself.

The folder sensors request a file set once: its run key is spent as soon as its run exists,
whatever became of the run, so a run that failed, was killed or lost its server left its
partition unloaded until the files changed. This sensor looks at the failed runs of the
pipeline's own sensors (a run whose process died is reported failed first, `run_owners.py`) and,
for each whose partition no later run has taken up, requests the table assets that did not
commit in it. Each table is retried on its own: an hour whose orders committed before its
tickets load died reloads its tickets and events. A failed blocking check is not retried (the
same files fail it the same way; its alert went out once). Re-runs are bounded
(`retries.max_attempts` in the contract), the first at once, then after a backoff that
quadruples each time.

It is a sensor of its own, not a run key that reflects the outcome: the folder sensors' scan
stays a pure function of the files, and `fastfeast ingest` evaluates this sensor like the others,
so the daemon and `ingest` heal alike. Dagster's own run retries are off (`dagster.yaml`): they
re-execute daemon-launched runs only, at once, and would re-run a failed check.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from fastfeast_dagster.assets.partitions import PARTITION_TAG
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.run_owners import fail_abandoned_runs
from fastfeast_dagster.sensors.folders import FOLDER_SENSOR_NAMES
from fastfeast_dagster.sensors.orphans import ORPHAN_RETRY_SENSOR

RUN_RETRY_SENSOR = "run_retry_sensor"
RETRY_OF_TAG = "fastfeast/retry_of"  # the failed run a re-run takes up
ATTEMPT_TAG = "fastfeast/retry"  # 1 for the first re-run of a sensor's run, 2 for the next, …
# Runs of these sensors are the pipeline's own; a run started by hand is its operator's.
RETRIED_SENSORS = (*FOLDER_SENSOR_NAMES.values(), ORPHAN_RETRY_SENSOR, RUN_RETRY_SENSOR)
# Failures that the same files repeat: a blocking check, the output's type check.
_DETERMINISTIC = {"DagsterAssetCheckFailedError", "DagsterTypeCheckDidNotPass"}
# A first tick looks back this far: older failures predate the sensor.
_FIRST_LOOK_BACK_SECONDS = 24 * 3600
_RUNS_PER_TICK = 200


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    partition: str
    assets: tuple[str, ...]  # the table assets it was to load, in load order
    committed: frozenset[str]  # those that materialized in it
    check_failed: bool  # a deterministic failure stopped it
    attempt: int  # 0 for a sensor's own run, n for its n-th re-run
    created: float
    ended: float
    updated: float


@dataclass(frozen=True)
class PartitionRun:
    """Any run of a partition, which takes up the assets it selects from older failed runs."""

    partition: str
    assets: frozenset[str] | None  # None: every asset of its job
    created: float


@dataclass(frozen=True)
class Retry:
    failed_run: str
    partition: str
    assets: tuple[str, ...]
    attempt: int


@dataclass
class Plan:
    retries: list[Retry]
    waiting: list[FailedRun]  # due after their backoff
    due: list[float]  # when each waiting re-run is due (epoch seconds), soonest first
    since: float  # the next tick's cursor: older failures are all decided


def backoff_seconds(attempt: int, base: float) -> float:
    """The wait before re-run `attempt` (1, 2, …) after the run it takes up failed."""
    return 0.0 if attempt <= 1 else base * 4 ** (attempt - 2)


def plan_retries(
    failed: list[FailedRun],
    runs: list[PartitionRun],
    *,
    now: float,
    since: float,
    max_attempts: int,
    backoff: float,
) -> Plan:
    """Which failed runs to take up now, which wait, and the cursor. Pure: no I/O."""
    retries: list[Retry] = []
    waiting: list[FailedRun] = []
    due: list[float] = []
    for run in failed:
        later = [r for r in runs if r.partition == run.partition and r.created > run.created]
        left = tuple(
            asset
            for asset in run.assets
            if asset not in run.committed
            and not any(r.assets is None or asset in r.assets for r in later)
        )
        attempt = run.attempt + 1
        if run.check_failed or not left or attempt > max_attempts:
            continue
        due_at = run.ended + backoff_seconds(attempt, backoff)
        if now < due_at:
            waiting.append(run)
            due.append(due_at)
        else:
            retries.append(Retry(run.run_id, run.partition, left, attempt))
    # A failure stays open until a later run takes it up (a re-run requested now exists by the
    # next tick) or it waits: the cursor stops just before the oldest open one.
    emitted = {retry.failed_run for retry in retries}
    open_since = [run.updated for run in failed if run in waiting or run.run_id in emitted]
    if open_since:
        since = min(open_since) - 1e-3
    else:
        since = max([since, *(run.updated for run in failed)])
    # A day's dimensions before its hours' facts.
    retries.sort(key=lambda retry: (len(retry.partition), retry.partition))
    return Plan(retries, waiting, sorted(due), since)


def retries_due(cursor: str | None) -> list[float]:
    """From the sensor's cursor: when the re-runs that wait for their backoff are due."""
    return json.loads(cursor).get("due", []) if cursor else []


def build_run_retry_sensor(contract: Contract) -> dg.SensorDefinition:
    tables = [contract.sources[name].table for name in contract.load_order()]
    policy = contract.retries

    @dg.sensor(
        name=RUN_RETRY_SENSOR,
        description=(
            "Re-requests the table assets of a partition whose run failed, was killed or lost its"
            f" server, at most {policy.max_attempts} times with a growing backoff; a failed"
            " blocking check is not retried."
        ),
        minimum_interval_seconds=contract.sensors.minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[dg.AssetKey(table) for table in tables],
    )
    def run_retry_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance = context.instance
        abandoned = fail_abandoned_runs(instance)
        if abandoned:
            context.log.info(f"reported {len(abandoned)} run(s) of ended processes failed")
        now = time.time()
        since = (
            json.loads(context.cursor)["since"]
            if context.cursor
            else now - _FIRST_LOOK_BACK_SECONDS
        )
        sensor_tag = next(iter(dg.DagsterRun.tags_for_sensor(run_retry_sensor)))
        records = instance.get_run_records(
            dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE],
                tags={sensor_tag: list(RETRIED_SENSORS)},
                updated_after=dt.datetime.fromtimestamp(since, dt.UTC),
            ),
            limit=_RUNS_PER_TICK,
            order_by="update_timestamp",
            ascending=True,
        )
        failed = [
            _failed_run(instance, record, tables)
            for record in records
            if PARTITION_TAG in record.dagster_run.tags
        ]
        plan = plan_retries(
            [run for run in failed if run.assets],
            _partition_runs(instance, failed),
            now=now,
            since=since,
            max_attempts=policy.max_attempts,
            backoff=policy.backoff_seconds,
        )
        requests = [
            dg.RunRequest(
                run_key=f"retry:{retry.failed_run}",
                partition_key=retry.partition,
                asset_selection=[dg.AssetKey(asset) for asset in retry.assets],
                tags={RETRY_OF_TAG: retry.failed_run, ATTEMPT_TAG: str(retry.attempt)},
            )
            for retry in plan.retries
        ]
        skip = None
        if not requests:
            skip = (
                f"{len(plan.waiting)} failed run(s) wait for their backoff"
                if plan.waiting
                else "no failed run to take up"
            )
        return dg.SensorResult(
            run_requests=requests,
            # `due` tells `fastfeast ingest` that its quiet end still has re-runs to come.
            cursor=json.dumps({"since": plan.since, "due": plan.due}),
            skip_reason=skip,
        )

    return run_retry_sensor


def _failed_run(instance: dg.DagsterInstance, record: dg.RunRecord, tables: list[str]) -> FailedRun:
    run = record.dagster_run
    selected = {key.to_user_string() for key in run.asset_selection or []}
    committed: set[str] = set()
    check_failed = False
    events = instance.get_records_for_run(
        run.run_id,
        of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.STEP_FAILURE},
    ).records
    for event_record in events:
        event = event_record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key:
            committed.add(event.asset_key.to_user_string())
        elif event.is_step_failure and event.step_failure_data.error is not None:
            check_failed |= event.step_failure_data.error.cls_name in _DETERMINISTIC
    updated = _timestamp(record.update_timestamp)
    return FailedRun(
        run_id=run.run_id,
        partition=run.tags[PARTITION_TAG],
        assets=tuple(table for table in tables if table in selected),
        committed=frozenset(committed),
        check_failed=check_failed,
        attempt=int(run.tags.get(ATTEMPT_TAG, 0)),
        created=_timestamp(record.create_timestamp),
        ended=record.end_time or updated,
        updated=updated,
    )


def _partition_runs(
    instance: dg.DagsterInstance, failed: Iterable[FailedRun]
) -> list[PartitionRun]:
    """Every run of the failed runs' partitions created since the oldest of them."""
    failed = list(failed)
    if not failed:
        return []
    records = instance.get_run_records(
        dg.RunsFilter(
            tags={PARTITION_TAG: sorted({run.partition for run in failed})},
            created_after=dt.datetime.fromtimestamp(min(run.created for run in failed), dt.UTC),
        )
    )
    return [
        PartitionRun(
            record.dagster_run.tags[PARTITION_TAG],
            None
            if record.dagster_run.asset_selection is None
            else frozenset(key.to_user_string() for key in record.dagster_run.asset_selection),
            _timestamp(record.create_timestamp),
        )
        for record in records
    ]


def _timestamp(moment: dt.datetime) -> float:
    # Run storage keeps naive UTC times.
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
