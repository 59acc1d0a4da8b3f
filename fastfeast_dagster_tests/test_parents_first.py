"""An hour of facts waits for its day's dimension files to load: the stream sensor, evaluated by
Dagster on real folders, against materializations of real runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg

from fastfeast_dagster.assets.partitions import hourly_partitions
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.sensors.folders import Cursor, build_folder_sensor

DAY = "2026-03-02"
ORDER = (
    '[{"order_id": "3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "customer_id": null,'
    ' "restaurant_id": null, "driver_id": null, "region_id": null, "order_amount": 10.0,'
    ' "delivery_fee": 2.0, "discount_amount": 0.0, "total_amount": 12.0,'
    ' "order_status": "Pending", "payment_method": "cash",'
    f' "order_created_at": "{DAY} 10:05:00", "delivered_at": null}}]'
)


def _tick(contract: Contract, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    from fastfeast_dagster.definitions import defs

    sensor = build_folder_sensor("stream", contract, hourly_partitions(contract), settle_seconds=0)
    definitions = dg.Definitions(assets=defs.assets, resources=defs.resources, sensors=[sensor])
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
    return sensor.evaluate_tick(context)


def _load_teams(instance: dg.DagsterInstance) -> None:
    from fastfeast_dagster.definitions import defs

    keys = [dg.AssetKey("dim_team")]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    assert job is not None
    assert job.execute_in_process(
        instance=instance, partition_key=DAY, asset_selection=keys
    ).success


def test_an_hour_waits_until_its_days_dimensions_have_loaded(
    contract: Contract, data_dir: Path, pipeline_env: str
) -> None:
    teams = data_dir / "input" / "batch" / DAY / "teams.csv"
    teams.parent.mkdir(parents=True)
    teams.write_text("team_id,team_name\n1,Refunds\n")
    hour = data_dir / "input" / "stream" / DAY / "10"
    hour.mkdir(parents=True)
    (hour / "orders.json").write_text(ORDER)
    with dg.instance_for_test() as instance:
        waiting = _tick(contract, instance, None)
        assert waiting.run_requests == []
        assert "waiting for their day's dimensions" in (waiting.skip_message or "")
        assert Cursor.loads(waiting.cursor).pending == 1  # `fastfeast ingest` waits for it

        _load_teams(instance)
        ready = _tick(contract, instance, waiting.cursor)
        assert [request.partition_key for request in ready.run_requests] == [f"{DAY}-10:00"]

        # A dimension file re-delivered after its load holds the next hour back again.
        time.sleep(0.05)
        os.utime(teams)
        (data_dir / "input" / "stream" / DAY / "11").mkdir()
        (data_dir / "input" / "stream" / DAY / "11" / "orders.json").write_text(ORDER)
        held = _tick(contract, instance, ready.cursor)
        assert held.run_requests == []
        # ...but not for ever: past the contract's patience the hour loads, orphans and all.
        impatient = contract.model_copy(
            update={"sensors": contract.sensors.model_copy(update={"parent_wait_minutes": 0})}
        )
        late = _tick(impatient, instance, ready.cursor)
        assert [request.partition_key for request in late.run_requests] == [f"{DAY}-11:00"]


def test_an_hour_without_dimension_files_that_day_does_not_wait(
    contract: Contract, data_dir: Path
) -> None:
    hour = data_dir / "input" / "stream" / DAY / "10"
    hour.mkdir(parents=True)
    (hour / "orders.json").write_text(ORDER)
    with dg.instance_for_test() as instance:
        result = _tick(contract, instance, None)
    assert [request.partition_key for request in result.run_requests] == [f"{DAY}-10:00"]
