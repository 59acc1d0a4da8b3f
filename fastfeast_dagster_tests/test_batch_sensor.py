"""The batch folder sensor, evaluated by Dagster against real files in real folders."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from fastfeast_dagster.assets.partitions import daily_partitions
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.definitions import defs
from fastfeast_dagster.sensors.folders import Cursor, build_folder_sensor, scan
from fastfeast_dagster.sources.listing import FoundFile

SETTLE = 1.0


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FASTFEAST_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _definitions(contract: Contract) -> tuple[dg.Definitions, dg.SensorDefinition]:
    sensor = build_folder_sensor(
        "batch", contract, daily_partitions(contract), settle_seconds=SETTLE
    )
    # The project's assets and resources, with a sensor that settles faster than the default.
    return dg.Definitions(assets=defs.assets, resources=defs.resources, sensors=[sensor]), sensor


def _tick(contract: Contract, instance: dg.DagsterInstance, cursor: str | None):  # type: ignore[no-untyped-def]
    definitions, sensor = _definitions(contract)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
    return sensor.evaluate_tick(context)


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_settled_day_new_file_and_changed_file(
    contract: Contract, data_dir: Path, instance: dg.DagsterInstance
) -> None:
    day = data_dir / "input" / "batch" / "2026-03-02"
    # Still being written (no line ended yet), so they wait for the settle window.
    _write(day, "teams.csv", "team_id,team_name\n1,Refunds")
    _write(day, "regions.csv", "region_id,region_name,city_id,delivery_base_fee\n1,A,1,10")
    _write(day, "notes.txt", "not a contract file")
    _write(day, ".teams.csv.tmp", "still being written")

    # Just written: not settled, nothing requested, the cursor says files are pending.
    first = _tick(contract, instance, None)
    assert first.run_requests == []
    assert Cursor.loads(first.cursor).pending == 2

    time.sleep(SETTLE + 0.1)
    settled = _tick(contract, instance, first.cursor)
    assert len(settled.run_requests) == 1
    request = settled.run_requests[0]
    assert request.partition_key == "2026-03-02"
    assert {key.to_user_string() for key in request.asset_selection} == {"dim_team", "dim_region"}
    assert request.run_key.startswith("batch:2026-03-02:")

    # The same files again: nothing.
    again = _tick(contract, instance, settled.cursor)
    assert again.run_requests == []

    # A rewritten file: a new request for that table only, with a new run key.
    _write(day, "teams.csv", "team_id,team_name\n1,Refunds\n2,VIP Support")
    time.sleep(SETTLE + 0.1)
    changed = _tick(contract, instance, again.cursor)
    assert len(changed.run_requests) == 1
    assert [key.to_user_string() for key in changed.run_requests[0].asset_selection] == ["dim_team"]
    assert changed.run_requests[0].run_key != request.run_key


def test_catch_up_covers_master_and_every_past_day(
    contract: Contract, data_dir: Path, instance: dg.DagsterInstance
) -> None:
    _write(data_dir / "master", "teams.csv", "team_id,team_name\n1,Refunds\n")
    for day in ("2026-02-27", "2026-03-01"):
        _write(data_dir / "input" / "batch" / day, "teams.csv", "team_id,team_name\n1,R\n")
    _write(data_dir / "input" / "batch" / "not-a-date", "teams.csv", "team_id,team_name\n")
    time.sleep(SETTLE + 0.1)
    result = _tick(contract, instance, None)
    keys = [request.partition_key for request in result.run_requests]
    assert keys == [contract.partitions.batch_start_date.isoformat(), "2026-02-27", "2026-03-01"]
    assert all(
        [key.to_user_string() for key in request.asset_selection] == ["dim_team"]
        for request in result.run_requests
    )
    # A folder for a day that is not yet a partition waits instead of failing the tick.
    _write(data_dir / "input" / "batch" / "2099-01-01", "teams.csv", "team_id,team_name\n")
    time.sleep(SETTLE + 0.1)
    later = _tick(contract, instance, result.cursor)
    assert later.run_requests == []


def test_a_folder_dated_ahead_waits_without_holding_back_the_days_after_it() -> None:
    second = 1_000_000_000

    def files(day: str, ctime_s: int) -> list[FoundFile]:
        path = Path(day) / "teams.csv"
        return [FoundFile("teams", path, 10, ctime_s * second, ctime_s * second)]

    options = {"settle_seconds": 5, "max_requests": 10}
    early = {"2026-03-05": files("2026-03-05", 100)}  # written before its date
    first = scan(early, Cursor(), now_ns=200 * second, last_partition_key="2026-03-02", **options)
    assert first.ready == [] and first.cursor.waiting == ["2026-03-05"]

    # Days keep arriving: they run, and the watermark moves past the early folder's file.
    days = early | {"2026-03-02": files("2026-03-02", 300)}
    second_scan = scan(
        days, first.cursor, now_ns=400 * second, last_partition_key="2026-03-02", **options
    )
    assert [p.partition_key for p in second_scan.ready] == ["2026-03-02"]
    assert second_scan.cursor.watermark_ns == 300 * second
    assert second_scan.cursor.waiting == ["2026-03-05"]

    # Its date comes: the folder is taken whole though its file is below the watermark.
    dated = scan(
        days, second_scan.cursor, now_ns=500 * second, last_partition_key="2026-03-05", **options
    )
    assert [p.partition_key for p in dated.ready] == ["2026-03-05"]
    assert dated.cursor.waiting == []
    again = scan(
        days, dated.cursor, now_ns=600 * second, last_partition_key="2026-03-05", **options
    )
    assert again.ready == []


def test_a_folder_moved_in_with_old_files_is_taken(
    contract: Contract, data_dir: Path, instance: dg.DagsterInstance
) -> None:
    # Prepared elsewhere first: `mv` keeps the files' ctimes, older than what the sensor took.
    staged = data_dir / "staging" / "2026-03-03"
    _write(staged, "teams.csv", "team_id,team_name\n1,Refunds\n")
    batch = data_dir / "input" / "batch"
    _write(batch / "2026-03-02", "teams.csv", "team_id,team_name\n1,Refunds\n")
    time.sleep(SETTLE + 0.1)
    taken = _tick(contract, instance, None)
    assert [r.partition_key for r in taken.run_requests] == ["2026-03-02"]

    staged.rename(batch / "2026-03-03")
    # A producer starting an atomic write in a folder already taken changes nothing yet.
    _write(batch / "2026-03-02", ".teams.csv.tmp", "team_id,team_name\n")
    time.sleep(SETTLE + 0.1)
    moved = _tick(contract, instance, taken.cursor)
    assert [r.partition_key for r in moved.run_requests] == ["2026-03-03"]
    assert _tick(contract, instance, moved.cursor).run_requests == []


def test_a_whole_file_is_taken_at_once_and_an_unfinished_one_waits_out_the_window(
    contract: Contract, data_dir: Path, instance: dg.DagsterInstance
) -> None:
    # A long settle window: a file taken on the first tick was taken because it is whole.
    sensor = build_folder_sensor("batch", contract, daily_partitions(contract), settle_seconds=60)
    definitions = dg.Definitions(assets=defs.assets, resources=defs.resources, sensors=[sensor])

    def tick(cursor: str | None):  # type: ignore[no-untyped-def]
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
        return sensor.evaluate_tick(context)

    day = data_dir / "input" / "batch" / "2026-03-02"
    _write(day, "teams.csv", "team_id,team_name\n1,Refunds\n")  # published whole
    _write(day, "regions.csv", "region_id,region_name,city_id,delivery_base_fee\n1,A")  # half
    first = tick(None)
    # The day's files go together: the unfinished one holds the whole day back.
    assert first.run_requests == []
    assert Cursor.loads(first.cursor).pending == 1
    _write(day, "regions.csv", "region_id,region_name,city_id,delivery_base_fee\n1,A,1,10\n")
    (request,) = tick(first.cursor).run_requests
    assert {key.to_user_string() for key in request.asset_selection} == {"dim_team", "dim_region"}


def test_scan_takes_a_whole_file_inside_the_window_but_never_a_held_partition() -> None:
    second = 1_000_000_000
    path = Path("2026-03-02") / "teams.csv"
    partitions = {"2026-03-02": [FoundFile("teams", path, 10, 100 * second, 100 * second)]}
    options = {"settle_seconds": 5, "max_requests": 10, "last_partition_key": "2026-03-02"}
    just_written = {"now_ns": 101 * second, **options}
    assert scan(partitions, Cursor(), **just_written).ready == []
    taken = scan(partitions, Cursor(), complete=frozenset({path}), **just_written)
    assert [p.partition_key for p in taken.ready] == ["2026-03-02"]
    # Waiting for its parents outranks being whole.
    held = scan(
        partitions,
        Cursor(),
        complete=frozenset({path}),
        held=frozenset({"2026-03-02"}),
        **just_written,
    )
    assert held.ready == [] and held.cursor.pending == 1
