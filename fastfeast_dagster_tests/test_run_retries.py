"""Self-healing: which failed runs are taken up, when, how often, and never for a failed check."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from fastfeast_dagster.contract import DEFAULT_CONFIG_PATH
from fastfeast_dagster.sensors.retries import (
    FailedRun,
    PartitionRun,
    Retry,
    backoff_seconds,
    plan_retries,
)
from fastfeast_dagster_tests.commands import RUN_LINE, fresh_environment, run_command

HOUR = "2026-03-02-10:00"
FACTS = ("fact_order", "fact_ticket", "fact_ticket_event")


def _failed(
    run_id: str = "r0",
    *,
    partition: str = HOUR,
    committed: tuple[str, ...] = (),
    attempt: int = 0,
    check_failed: bool = False,
    at: float = 1000.0,
) -> FailedRun:
    return FailedRun(
        run_id, partition, FACTS, frozenset(committed), check_failed, attempt, at - 5, at, at
    )


def _plan(failed: list[FailedRun], runs: list[PartitionRun] = (), now: float = 1000.0):  # type: ignore[assignment,no-untyped-def]
    return plan_retries(failed, list(runs), now=now, since=0.0, max_attempts=3, backoff=60.0)


def test_a_failed_run_is_taken_up_at_once_for_the_tables_that_did_not_commit() -> None:
    plan = _plan([_failed(committed=("fact_order",))])
    assert plan.retries == [Retry("r0", HOUR, ("fact_ticket", "fact_ticket_event"), 1)]
    assert plan.waiting == []


def test_later_re_runs_wait_for_a_backoff_that_quadruples() -> None:
    assert [backoff_seconds(attempt, 60) for attempt in (1, 2, 3, 4)] == [0, 60, 240, 960]
    second = _failed(attempt=1)
    assert _plan([second], now=1059).retries == []
    assert _plan([second], now=1059).waiting == [second]
    assert _plan([second, _failed("r1", attempt=2)], now=1059).due == [1060, 1240]
    assert _plan([second], now=1060).retries == [Retry("r0", HOUR, FACTS, 2)]
    assert _plan([_failed(attempt=2)], now=1239).retries == []


def test_retries_are_bounded() -> None:
    exhausted = _failed(attempt=3)
    plan = _plan([exhausted], now=10**9)
    assert (plan.retries, plan.waiting) == ([], [])


def test_a_failed_blocking_check_is_never_retried() -> None:
    plan = _plan([_failed(committed=("fact_order",), check_failed=True)])
    assert (plan.retries, plan.waiting) == ([], [])


def test_a_later_run_of_the_partition_takes_up_what_it_selects() -> None:
    failed = _failed()
    newer_orders = PartitionRun(HOUR, frozenset({"fact_order"}), created=1001)
    older = PartitionRun(HOUR, frozenset(FACTS), created=990)
    other_hour = PartitionRun("2026-03-02-11:00", frozenset(FACTS), created=1001)
    plan = _plan([failed], [newer_orders, older, other_hour])
    assert plan.retries == [Retry("r0", HOUR, ("fact_ticket", "fact_ticket_event"), 1)]
    everything = PartitionRun(HOUR, None, created=1001)  # a run of every asset of its job
    assert _plan([failed], [everything]).retries == []


def test_the_cursor_stops_before_the_oldest_failure_still_open() -> None:
    decided = _failed("done", check_failed=True, at=900)
    waiting = _failed("later", attempt=1, at=950)
    emitted = _failed("now", at=980)
    plan = _plan([decided, waiting, emitted], now=990)
    assert [retry.failed_run for retry in plan.retries] == ["now"]
    assert plan.since == pytest.approx(950 - 1e-3)
    assert _plan([decided]).since == 900


def test_a_days_dimensions_are_retried_before_its_hours_facts() -> None:
    hour = _failed("hour", at=900)
    day = FailedRun("day", "2026-03-02", ("dim_team",), frozenset(), False, 0, 890, 950, 950)
    assert [retry.failed_run for retry in _plan([hour, day]).retries] == ["day", "hour"]


@pytest.mark.usefixtures("failing_team_suite")
def test_a_failed_blocking_check_fails_once_and_is_not_run_again(
    data_dir: Path, pipeline_env: str
) -> None:
    """In `fastfeast ingest`'s loop (the retry sensor included): one failed run, and a second
    call launches nothing; the check's alert therefore goes out once."""
    from fastfeast_dagster.definitions import defs
    from fastfeast_dagster.ingest import ingest

    master = data_dir / "master"
    master.mkdir()
    (master / "teams.csv").write_text("team_id,team_name\n1,Refunds\n2,Delivery\n")
    with dg.instance_for_test() as instance:
        first = ingest(defs, instance, max_wait_seconds=60, log_level="CRITICAL")
        second = ingest(defs, instance, max_wait_seconds=0, log_level="CRITICAL")
    team = [run for run in first.runs if "dim_team" in run.assets]
    assert [(run.assets, run.success) for run in team] == [(["dim_team"], False)]
    assert team[0].error == (
        "DagsterAssetCheckFailedError: 1 blocking asset check failed with ERROR severity:"
    )
    # Beside it only what any first call runs: the calendar, and the true-orphan schedule's tick.
    others = {tuple(run.assets) for run in first.runs if run not in team}
    assert others <= {("dim_date", "dim_time"), ("true_orphan",)}, others
    assert second.runs == []


# The contract's backoff in these tests: the second re-run of a failed run waits this long.
BACKOFF_SECONDS = 3


@pytest.fixture
def quick_retries(tmp_path: Path, pipeline_env: str, data_dir: Path) -> Iterator[dict[str, str]]:
    """`fastfeast` as a user runs it, on the test's database, with a contract whose second
    re-run waits 3 s and that re-runs at most twice."""
    contract = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    contract["retries"] = {"max_attempts": 2, "backoff_seconds": BACKOFF_SECONDS}
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(contract))
    shutil.copytree(DEFAULT_CONFIG_PATH.parent / "expectations", tmp_path / "expectations")
    env = fresh_environment(tmp_path / "state") | {
        "FASTFEAST_DATA_DIR": str(data_dir),
        "FASTFEAST_DATABASE_URL": pipeline_env,
        "FASTFEAST_PII_KEY": "test-pii-key",
        "FASTFEAST_CONFIG": str(config),
    }
    yield env


def test_a_transient_failure_is_retried_at_once_then_after_its_backoff(
    quick_retries: dict[str, str], data_dir: Path, pipeline_env: str
) -> None:
    env = quick_retries
    master = data_dir / "master"
    master.mkdir()
    (master / "teams.csv").write_text("team_id,team_name\n1,Refunds\n2,Delivery\n")
    assert run_command(env, "fastfeast", "db", "start").returncode == 0
    with psycopg.connect(pipeline_env, autocommit=True) as holder:
        database = holder.info.dbname
        # Every new session of the database gives up on a lock after 0.5 s, and this one holds
        # the table the load needs: the run fails with a lock timeout, which is not the data's
        # fault and passes.
        holder.execute(f"ALTER DATABASE \"{database}\" SET lock_timeout = '500ms'")
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE dim_team IN ACCESS EXCLUSIVE MODE")
        first = run_command(env, "fastfeast", "ingest")
        holder.execute("ROLLBACK")
        holder.execute(f'ALTER DATABASE "{database}" RESET lock_timeout')
    # The sensor's run, then its first re-run at once, both failed; the second waits 3 s.
    assert first.returncode == 1, first.stdout + first.stderr[-2000:]
    runs = [m for line in first.stdout.splitlines() if (m := RUN_LINE.match(line))]
    team = [m["outcome"] for m in runs if "dim_team" in m["assets"]]
    assert team == ["FAILED", "FAILED"], first.stdout
    assert "LockNotAvailable: canceling statement due to lock timeout" in first.stdout
    # Its quiet end is not the end of the work: the call says a re-run is still to come.
    assert "1 failed run(s) wait for their retry backoff; the next is due in" in first.stdout
    # The second re-run is due once its backoff has passed since the first re-run failed, which
    # was before `first` returned: on a fast machine the next call came sooner and found nothing.
    time.sleep(BACKOFF_SECONDS)
    second = run_command(env, "fastfeast", "ingest")
    assert second.returncode == 0, second.stdout + second.stderr[-2000:]
    assert "1 run(s), 0 failed" in second.stdout
    with psycopg.connect(pipeline_env) as conn:
        assert conn.execute("SELECT count(*) FROM dim_team").fetchone() == (2,)
        tags = conn.execute(
            "SELECT key, value FROM run_tags WHERE key IN ('fastfeast/retry')"
        ).fetchall()
    assert sorted(tags) == [("fastfeast/retry", "1"), ("fastfeast/retry", "2")]
    third = run_command(env, "fastfeast", "ingest")
    assert "nothing new to ingest" in third.stdout
    assert "retry backoff" not in second.stdout + third.stdout
