"""The Celery deployment (deploy/celery/) on one machine: Redis, a code server, the daemon and two
workers that share nothing but the deployment's environment, the data root in S3 (moto).

What it relies on for a killed worker: the worker's Celery master reports the lost child, so the
task is FAILURE in Redis; Dagster's run monitoring (deploy/celery/dagster.yaml, 10 s polls, no
resume) fails the run, and the project's run_retry_sensor (sensors/retries.py) requests what did
not commit again, as on one machine (Dagster's own run retries are off there too).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.instance.ref import InstanceRef
from dagster._core.workspace.context import BaseWorkspaceRequestContext, WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._utils.concurrency import ConcurrencyKeyInfo

from fastfeast_dagster.assets.tables import LOAD_POOL
from fastfeast_dagster.contract import PROJECT_ROOT, Contract
from fastfeast_dagster.sensors.retries import RETRY_OF_TAG, RUN_RETRY_SENSOR
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database, drop_database
from fastfeast_dagster_tests.cluster import Cluster, celery_cluster
from fastfeast_dagster_tests.faults import blocked_load, hold_partition, release
from fastfeast_dagster_tests.objectstore import bucket, s3_endpoint, s3_environment, upload_tree

__all__ = ["bucket", "s3_endpoint"]  # fixtures
pytestmark = pytest.mark.distributed

DAY = dt.date(2026, 3, 2)
HOURS = [8, 9]
LATE = 10  # delivered once the rest is loaded; its run's worker is killed
MASTER = "2026-01-01"  # the master snapshot's partition, the contract's start date
PREFIX = "landing"
SENSORS = ("batch_files_sensor", "stream_files_sensor")


def hour_key(hour: int) -> str:
    return f"{DAY.isoformat()}-{hour:02d}:00"


def state_snapshot(path: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in path.rglob("*")} if path.exists() else {}


class Watch:
    """Reads the deployment's run storage; remembers which worker process ran what."""

    def __init__(self, cluster: Cluster, instance: dg.DagsterInstance) -> None:
        self.cluster = cluster
        self.instance = instance
        self.pids: dict[int, str] = {}

    def until(self, what: str, done: Callable[[], bool], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            for worker in self.cluster.workers:
                self.pids |= dict.fromkeys(worker.tree(), worker.name)
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}\n{self.cluster.logs()}")
            time.sleep(1)

    def sensor_runs(self) -> list[dg.DagsterRun]:
        runs = []
        for sensor in SENSORS:
            runs += self.instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": sensor}))
        return [run for run in runs if "dagster/parent_run_id" not in run.tags]

    def by_partition(self) -> dict[str, list[dg.DagsterRun]]:
        found: dict[str, list[dg.DagsterRun]] = {}
        for run in self.sensor_runs():
            found.setdefault(run.tags["dagster/partition"], []).append(run)
        return found

    def worker_of(self, run_id: str) -> str | None:
        (start,) = self.instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
        return self.pids.get(start.dagster_event.pid)  # type: ignore[union-attr]

    def finished(self, *run_ids: str) -> bool:
        runs = [self.instance.get_run_by_id(run_id) for run_id in run_ids]
        return all(run is not None and run.is_finished for run in runs)


@pytest.fixture
def storage_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """Dagster's storage for the deployment: a database of its own."""
    name = f"celery_{uuid.uuid4().hex[:10]}"
    create_database(pg_server.url("postgres"), name)
    yield pg_server.url(name, driver="psycopg2")
    drop_database(pg_server.url("postgres"), name)


def test_two_celery_workers_load_each_partition_once_and_recover_a_killed_run(
    tmp_path: Path,
    bucket: str,
    s3_endpoint: str,
    warehouse_url: str,
    storage_url: str,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    generate(data, DAY, hours=[*HOURS, LATE], scale=0.2)
    # The master and the hours only: with no batch folder for the day, the hours need not wait
    # for its dimensions (sensors/parents.py), so the master and both hours run at once.
    shutil.rmtree(data / "input" / "batch")
    late = data / "input" / "stream" / DAY.isoformat() / f"{LATE:02d}"
    held_back = tmp_path / "late"
    late.rename(held_back)
    upload_tree(data, bucket, PREFIX)
    environment = s3_environment(s3_endpoint) | {
        "DAGSTER_PG_URL": storage_url,
        "FASTFEAST_DATABASE_URL": warehouse_url,
        "FASTFEAST_PII_KEY": "celery-test-pii-key",
        "FASTFEAST_DATA_DIR": f"s3://{bucket}/{PREFIX}",
    }
    project_state = state_snapshot(PROJECT_ROOT / ".fastfeast")
    # The master's first load waits at its partition lock until an hour has loaded: the worker
    # running it is busy, so the other one takes an hour (left alone, Celery may hand every run
    # to the same idle worker). The hours' rows wait as orphans, and load once the master is in.
    gate = psycopg.connect(warehouse_url, autocommit=True)
    hold_partition(gate, contract.sources[contract.load_order()[0]].table, MASTER)
    with gate, celery_cluster(tmp_path / "cluster", workers=2, environment=environment) as cluster:
        for name, value in cluster.environment.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(cluster.home))) as instance:
            watch = Watch(cluster, instance)
            watch.until(
                "an hour to load while the master waits",
                lambda: any(
                    watch.finished(run.run_id)
                    for key in map(hour_key, HOURS)
                    for run in watch.by_partition().get(key, [])
                ),
            )
            release(gate)
            expected = {MASTER, *map(hour_key, HOURS)}
            watch.until(
                "the sensors' runs of every partition",
                lambda: (
                    set(watch.by_partition()) == expected
                    and watch.finished(*(run.run_id for run in watch.sensor_runs()))
                ),
            )
            first = watch.by_partition()

            # A late hour arrives; the worker process running it is killed mid-load, held at the
            # orders' partition lock so that nothing of it has committed. The retry sensor is
            # stopped until the run has failed: on this one host its check for dead processes
            # (run_owners.py) would fail the run too, and the cluster has only Dagster's run
            # monitoring of the Celery task to do it.
            _set_sensor(instance, cluster, RUN_RETRY_SENSOR, running=False)
            with psycopg.connect(warehouse_url, autocommit=True) as gate:
                hold_partition(gate, "fact_order", hour_key(LATE))
                upload_tree(
                    held_back, bucket, f"{PREFIX}/input/stream/{DAY.isoformat()}/{LATE:02d}"
                )
                blocked = blocked_load(warehouse_url, "fact_order")
                (killed,) = watch.by_partition()[hour_key(LATE)]
                os.kill(blocked.client_pid, signal.SIGKILL)
            watch.until("the killed run to fail", lambda: watch.finished(killed.run_id))
            killed_loads = instance.get_records_for_run(
                killed.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
            ).records
            failure = _failure_message(instance, killed.run_id)
            _set_sensor(instance, cluster, RUN_RETRY_SENSOR, running=True)
            watch.until(
                "the killed run's retry to finish",
                lambda: (
                    bool(_retries(instance, killed.run_id))
                    and watch.finished(*(run.run_id for run in _retries(instance, killed.run_id)))
                ),
            )
            (retry,) = _retries(instance, killed.run_id)
            dagster_retries = instance.get_runs(
                dg.RunsFilter(tags={"dagster/parent_run_id": killed.run_id})
            )

            # Two runs of one partition at once: the partition's tag limit runs them in turn.
            twice = _reexecute_twice(instance, cluster, first[hour_key(8)][0])
            watch.until("both re-executions", lambda: watch.finished(*twice), timeout=180)
            windows = sorted(
                (record.start_time, record.end_time)
                for record in instance.get_run_records(dg.RunsFilter(run_ids=twice))
            )
            statuses = {instance.get_run_by_id(run_id).status for run_id in twice}  # type: ignore[union-attr]
            errors = _errors(instance, twice)
            workers = {watch.worker_of(run.run_id) for runs in first.values() for run in runs}
            killed_status = instance.get_run_by_id(killed.run_id).status  # type: ignore[union-attr]
            with psycopg.connect(warehouse_url) as conn:
                rows = conn.execute(
                    "SELECT partition_key, file_name, count(*), array_agg(DISTINCT run_id)"
                    " FROM pipeline_file_log WHERE superseded_at IS NULL GROUP BY 1, 2"
                ).fetchall()
            late = {runs[0] for key, _, _, runs in rows if key == hour_key(LATE)}
            # An orphan retry may take a range of hours, so its run has no partition tag.
            late_statuses = {instance.get_run_by_id(run_id).status for run_id in late}  # type: ignore[union-attr]
            # The killed run never gave its load's slot back; run monitoring frees it
            # (`free_slots_after_run_end_seconds`), or each kill would shrink the pool for good.
            watch.until(
                "the killed run's pool slot to be freed",
                lambda: not _pool(instance).claimed_slots,
                timeout=120,
            )
            pool = _pool(instance)

    assert {key: len(runs) for key, runs in first.items()} == dict.fromkeys(expected, 1)
    assert {run.status for runs in first.values() for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert workers == {"worker1", "worker2"}, cluster.logs()
    assert killed_status == dg.DagsterRunStatus.FAILURE
    # Run monitoring read the Celery task's state in Redis (dagster_celery.launcher).
    assert "Celery task failed" in failure, failure
    assert retry.status == dg.DagsterRunStatus.SUCCESS
    assert retry.tags["dagster/sensor_name"] == RUN_RETRY_SENSOR
    assert not dagster_retries
    # The loads took slots of the pool that caps warehouse loads across the workers: the first
    # claim created it with the deployment's default limit.
    assert (pool.slot_count, pool.using_default_limit) == (4, True), pool
    assert statuses == {dg.DagsterRunStatus.SUCCESS}, errors
    (_, first_end), (second_start, _) = windows
    assert second_start >= first_end, windows

    # Every file loaded once (replays add no row); the late hour's by the retry (or an orphan
    # retry after it), never by the killed run, which committed nothing.
    assert rows and all(count == 1 for _, _, count, _ in rows)
    assert not killed_loads
    assert late and killed.run_id not in late
    assert late_statuses == {dg.DagsterRunStatus.SUCCESS}, late
    assert {key for key, _, _, _ in rows} == {*expected, hour_key(LATE)}
    for process in [*cluster.workers, *cluster.others]:
        assert not list(process.root.rglob(".fastfeast")), process.name
    assert state_snapshot(PROJECT_ROOT / ".fastfeast") == project_state


def _retries(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={RETRY_OF_TAG: run_id})))


def _pool(instance: dg.DagsterInstance) -> ConcurrencyKeyInfo:
    return instance.event_log_storage.get_concurrency_info(LOAD_POOL)


def _errors(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, list[str]]:
    """The failure messages of each run, for an assertion's message."""
    return {
        run_id: [
            record.message
            + (
                f": {record.dagster_event.step_failure_data.error.message}"  # type: ignore[union-attr]
                if record.dagster_event and record.dagster_event.is_step_failure
                else ""
            )
            for record in instance.all_logs(
                run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
            )
        ]
        for run_id in run_ids
    }


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    (failure,) = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    return failure.message


@contextmanager
def _workspace(
    instance: dg.DagsterInstance, cluster: Cluster
) -> Iterator[BaseWorkspaceRequestContext]:
    """The deployment's code location as the webserver sees it, through the code server."""
    target = WorkspaceFileTarget([str(cluster.workspace)])
    with WorkspaceProcessContext(instance, target) as process:
        yield process.create_request_context()


def _set_sensor(instance: dg.DagsterInstance, cluster: Cluster, name: str, running: bool) -> None:
    """Start or stop a sensor as the UI's toggle does; the daemon reads the state every loop."""
    with _workspace(instance, cluster) as context:
        (repository,) = context.get_code_location("fastfeast").get_repositories().values()
        sensor = repository.get_sensor(name)
        if running:
            instance.start_sensor(sensor)
        else:
            instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)


def _reexecute_twice(
    instance: dg.DagsterInstance, cluster: Cluster, parent: dg.DagsterRun
) -> list[str]:
    """Submit two re-executions of `parent` to the queue at once, as the UI's button would."""
    with _workspace(instance, cluster) as context:
        location = context.get_code_location("fastfeast")
        origin = parent.remote_job_origin
        assert origin is not None
        repository = location.get_repository(origin.repository_origin.repository_name)
        # The parent's own assets (the full job would run every asset of the location).
        selector = repository.get_full_job(parent.job_name).get_subset_selector(
            asset_selection=parent.asset_selection,
            asset_check_selection=parent.asset_check_selection,
        )
        remote_job = location.get_job(selector)
        runs = [
            instance.create_reexecuted_run(
                request_context=context,
                parent_run=parent,
                code_location=location,
                remote_job=remote_job,
                strategy=ReexecutionStrategy.ALL_STEPS,
                use_parent_run_tags=True,
            )
            for _ in range(2)
        ]
        for run in runs:
            instance.submit_run(run.run_id, context)
    return [run.run_id for run in runs]
