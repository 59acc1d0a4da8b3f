"""Which process executes a run, so that a run whose process died can be marked failed.

Dagster marks a run failed when its run worker dies under a living code server (the server
watches its children), and nothing does when there is no one left to watch: `fastfeast ingest`
executes its runs in its own process, and a `dagster dev` killed whole takes its code server with
it. Such a run stays STARTED for good, and its partition looks busy to everything that follows.
So every run carries the host and the process executing it (`ingest` tags its runs when it
creates them; a run worker tags its own run as its warehouse resource starts), and a run still
starting or started whose process is gone from this host is reported failed. A re-execution
starts with a copy of its parent's tags, the parent's process among them: until its own worker
claims it, that dead process is not taken for its own.
"""

from __future__ import annotations

import socket

import dagster as dg
import psutil
from dagster._core.storage.tags import PARENT_RUN_ID_TAG

HOST_TAG = "fastfeast/host"
# pid:start time, so that a pid the system gave to another process since does not pass for it.
PROCESS_TAG = "fastfeast/process"
_ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def owner_tags() -> dict[str, str]:
    process = psutil.Process()
    return {HOST_TAG: socket.gethostname(), PROCESS_TAG: f"{process.pid}:{process.create_time()}"}


def claim_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag the run with this process, unless it names this process already (`ingest` tags the
    runs it executes itself). A re-execution arrives with its parent's tags, this one included."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.tags.get(PROCESS_TAG) != owner_tags()[PROCESS_TAG]:
        instance.add_run_tags(run_id, owner_tags())


def _inherited(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the run's process tag is its parent's, copied before its own worker claimed it."""
    parent_id = run.tags.get(PARENT_RUN_ID_TAG)
    parent = instance.get_run_by_id(parent_id) if parent_id else None
    return parent is not None and parent.tags.get(PROCESS_TAG) == run.tags.get(PROCESS_TAG)


def is_alive(process_tag: str) -> bool:
    pid, _, started = process_tag.partition(":")
    try:
        process = psutil.Process(int(pid))
        # A killed child that its parent has not reaped yet is a zombie: dead.
        same = abs(process.create_time() - float(started)) < 1
        return same and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report failed every run of this host still starting or started whose process is gone."""
    host = socket.gethostname()
    records = instance.get_run_records(
        dg.RunsFilter(statuses=_ACTIVE, tags={HOST_TAG: host}), limit=100
    )
    failed = []
    for record in records:
        tag = record.dagster_run.tags.get(PROCESS_TAG)
        if tag is None or is_alive(tag):
            continue
        run = instance.get_run_by_id(record.dagster_run.run_id)
        if run is None or run.status not in _ACTIVE:
            continue  # it ended meanwhile (its code server saw the worker die, say)
        if _inherited(instance, run):
            continue  # a re-execution still starting: the dead process is its parent's
        pid = tag.partition(":")[0]
        instance.report_run_failed(
            run, f"the process executing this run (pid {pid} on {host}) ended before it did"
        )
        failed.append(run.run_id)
    return failed
