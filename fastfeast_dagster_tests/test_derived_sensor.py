"""The derived-tables sensor on a real instance and warehouse: what it asks for after fact loads
of any day, while that day's runs are in flight, after an SLA run that changed another day, and
when a due time passes."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.sensors.derived import DERIVED_SENSOR, Loaded, days_of_run, hold_busy_days
from fastfeast_dagster_tests.sensing import Pipeline
from fastfeast_dagster_tests.sla_hour import (
    DAY,
    FACTS,
    FAR,
    HOUR,
    hour_folder,
    load_master,
    status_event,
    write_hour,
)

NEXT_DAY = "2026-03-03"
LATE_HOUR = f"{NEXT_DAY}-01:00"
DERIVED = ["ticket_sla", "mart_orders_daily", "mart_tickets_daily"]


@pytest.fixture
def pipeline(pipeline_env: str) -> Iterator[Pipeline]:
    with dg.instance_for_test() as instance:
        yield Pipeline(instance, DERIVED_SENSOR)


def _shape(requests: list[dg.RunRequest]) -> list[tuple[str | None, list[str], object]]:
    return [
        (
            request.partition_key,
            [key.to_user_string() for key in request.asset_selection or []],
            request.run_config.get("ops", {}).get("ticket_sla", {}).get("config"),
        )
        for request in requests
    ]


def test_fact_loads_of_any_day_bring_that_days_derived_assets_in_one_run(
    pipeline: Pipeline, data_dir: Path, contract: Contract
) -> None:
    (calendar,) = pipeline.tick()
    assert calendar.run_key == "calendar:2019-01-01..2030-12-31"
    assert [key.to_user_string() for key in calendar.asset_selection or []] == [
        "dim_date",
        "dim_time",
    ]
    load_master(data_dir, pipeline.materialize, contract)
    assert pipeline.tick() == [], "dimension loads derive nothing"
    write_hour(data_dir, [None, None])
    pipeline.materialize(FACTS, HOUR)
    (day_run,) = pipeline.tick()
    # The SLA rows of the hour, then both marts, in one run of the day.
    assert _shape([day_run]) == [(DAY, DERIVED, {"hours": [HOUR]})]
    assert pipeline.tick() == []
    result = pipeline.run(day_run)
    sla = next(
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["ticket_sla"]
    )
    assert sla.step_materialization_data.materialization.metadata["hours_applied"].value == 1
    # It ran with its own day's mart: nothing more for that day.
    assert pipeline.tick() == []

    # The next morning the resolved ticket is reopened: its events only.
    reopen = status_event("met", 7, "Resolved", "Reopened", f"{NEXT_DAY} 01:10:00", None)
    (hour_folder(data_dir, NEXT_DAY, 1) / "ticket_events.json").write_text(json.dumps([reopen]))
    pipeline.materialize(["fact_ticket_event"], LATE_HOUR)
    (late_run,) = pipeline.tick()
    assert _shape([late_run]) == [
        (NEXT_DAY, ["ticket_sla", "mart_tickets_daily"], {"hours": [LATE_HOUR]})
    ]
    pipeline.run(late_run)
    # The ticket it changed was created the day before: that day's ticket mart follows.
    (other_day,) = pipeline.tick()
    assert _shape([other_day]) == [(DAY, ["mart_tickets_daily"], None)]
    assert other_day.run_key.startswith(f"sla-days:{DAY}:")
    assert pipeline.tick() == []

    # A re-run of a past hour from the UI or the CLI is a fact load like any other (the SLA
    # view reads the orders' regions, so ticket_sla follows fact_order too).
    pipeline.materialize(["fact_order"], HOUR)
    assert _shape(pipeline.tick()) == [(DAY, DERIVED, {"hours": [HOUR]})]


def _running(
    instance: dg.DagsterInstance, assets: list[str], tags: dict[str, str]
) -> dg.DagsterRun:
    """A run of `assets` that has started and not finished."""
    return instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags=tags,
            asset_selection=frozenset(dg.AssetKey(asset) for asset in assets),
        )
    )


def test_a_day_with_runs_in_flight_gets_one_run_when_they_are_done(
    pipeline: Pipeline, data_dir: Path, contract: Contract
) -> None:
    load_master(data_dir, pipeline.materialize, contract)
    pipeline.tick()  # the calendar
    instance = pipeline.instance
    later_hour = _running(instance, ["fact_order"], {"dagster/partition": f"{DAY}-11:00"})
    _running(instance, ["mart_orders_daily"], {"dagster/partition": NEXT_DAY})
    write_hour(data_dir, [None, None])
    pipeline.materialize(FACTS, HOUR)
    assert pipeline.tick() == [], "the day's 11:00 is still loading: its marts would be rebuilt"
    pipeline.materialize(["fact_order"], HOUR)
    assert pipeline.tick() == []
    instance.report_run_canceled(later_hour)
    # Both loads of the hour in one run, named by the newest; another day's run held nothing.
    (day_run,) = pipeline.tick()
    assert _shape([day_run]) == [(DAY, DERIVED, {"hours": [HOUR]})]
    newest = instance.fetch_materializations(dg.AssetKey("fact_order"), limit=1).records[0]
    assert day_run.run_key == f"derived:{DAY}:{newest.storage_id}"
    assert pipeline.tick() == []


def test_what_waits_keeps_the_newest_load_of_each_asset_and_hour() -> None:
    loaded = [
        Loaded("fact_order", HOUR, 5),
        Loaded("fact_ticket", HOUR, 6),
        Loaded("fact_order", f"{NEXT_DAY}-00:00", 7),
        Loaded("fact_order", HOUR, 9),
    ]
    ready, waiting = hold_busy_days(loaded, {DAY})
    assert ready == [Loaded("fact_order", f"{NEXT_DAY}-00:00", 7)]
    assert waiting == [Loaded("fact_ticket", HOUR, 6), Loaded("fact_order", HOUR, 9)]


def test_the_days_a_run_holds_back_come_from_its_partition_or_its_range() -> None:
    assert days_of_run({"dagster/partition": HOUR}) == {DAY}
    assert days_of_run({"dagster/partition": DAY}) == {DAY}
    backfill = {
        "dagster/asset_partition_range_start": f"{DAY}-22:00",
        "dagster/asset_partition_range_end": f"{NEXT_DAY}-02:00",
    }
    assert days_of_run(backfill) == {DAY, NEXT_DAY}
    assert days_of_run({"dagster/asset_partition_range_start": HOUR}) == set()
    assert days_of_run({}) == set()


def test_a_due_time_passing_on_a_waiting_ticket_rebuilds_its_days_ticket_mart(
    pipeline: Pipeline, data_dir: Path, contract: Contract
) -> None:
    load_master(data_dir, pipeline.materialize, contract)
    pipeline.tick()  # the first: the calendar, and the clock starts
    # Far enough ahead that the day's own run comes first, even on a busy machine.
    due = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=20)
    waiting = {"pending": ("Open", None, due.strftime("%Y-%m-%d %H:%M:%S.%f"), None, FAR, 0)}
    write_hour(data_dir, [None], waiting)
    pipeline.materialize(FACTS, HOUR)
    (day_run,) = pipeline.tick()
    pipeline.run(day_run)
    time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds()) + 1)
    (judged,) = pipeline.tick()
    assert _shape([judged]) == [(DAY, ["mart_tickets_daily"], None)]
    assert judged.run_key.startswith(f"sla-clock:{DAY}:")
    assert pipeline.tick() == []
