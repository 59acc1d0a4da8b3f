"""Runs of ended processes are reported failed; a re-execution is not taken for its parent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import dagster as dg
import psutil
import pytest
from dagster._core.storage.tags import PARENT_RUN_ID_TAG

from fastfeast_dagster.run_owners import (
    HOST_TAG,
    PROCESS_TAG,
    claim_run,
    fail_abandoned_runs,
    owner_tags,
)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def ended_process_tags() -> dict[str, str]:
    """The owner tags of a process that has ended (as a killed run worker's are)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return owner_tags() | {PROCESS_TAG: f"{child.pid}:{started}"}


def add_run(
    instance: dg.DagsterInstance, tags: dict[str, str], status: dg.DagsterRunStatus
) -> dg.DagsterRun:
    run = dg.DagsterRun(job_name="load", tags=tags, status=status)
    instance.add_run(run)
    return run


def status(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRunStatus:
    found = instance.get_run_by_id(run.run_id)
    assert found is not None
    return found.status


def test_a_started_run_of_an_ended_process_is_reported_failed(
    instance: dg.DagsterInstance,
) -> None:
    dead = add_run(instance, ended_process_tags(), dg.DagsterRunStatus.STARTED)
    alive = add_run(instance, owner_tags(), dg.DagsterRunStatus.STARTED)
    assert fail_abandoned_runs(instance) == [dead.run_id]
    assert status(instance, dead) == dg.DagsterRunStatus.FAILURE
    assert status(instance, alive) == dg.DagsterRunStatus.STARTED


def test_a_re_execution_is_not_failed_for_its_parents_process_and_claims_its_own(
    instance: dg.DagsterInstance,
) -> None:
    """The UI's re-execution (and Dagster's retries) copy the parent's tags, owner tags too."""
    parent_tags = ended_process_tags()
    parent = add_run(instance, parent_tags, dg.DagsterRunStatus.SUCCESS)
    child = add_run(
        instance, parent_tags | {PARENT_RUN_ID_TAG: parent.run_id}, dg.DagsterRunStatus.STARTING
    )
    assert fail_abandoned_runs(instance) == []
    assert status(instance, child) == dg.DagsterRunStatus.STARTING

    claim_run(instance, child.run_id)  # its worker's warehouse resource starts
    claimed = instance.get_run_by_id(child.run_id)
    assert claimed is not None
    assert {key: claimed.tags[key] for key in (HOST_TAG, PROCESS_TAG)} == owner_tags()


def test_a_run_that_names_its_process_keeps_it(instance: dg.DagsterInstance) -> None:
    """`ingest` tags the runs it executes when it creates them; claiming changes nothing."""
    run = add_run(instance, owner_tags(), dg.DagsterRunStatus.STARTED)
    before = instance.get_run_by_id(run.run_id)
    claim_run(instance, run.run_id)
    assert instance.get_run_by_id(run.run_id) == before
