"""The data root in S3 (moto's real S3 server on loopback) behaves as the same data in a folder."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import psycopg
import pytest

from fastfeast_dagster.assets.partitions import partitions_by_kind
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.ingest import ingest
from fastfeast_dagster.sensors.folders import build_folder_sensor
from fastfeast_dagster.sensors.objects import ObjectCursor, scan_objects
from fastfeast_dagster.sources import reading
from fastfeast_dagster.sources.listing import FoundFile, list_partition_files
from fastfeast_dagster.sources.objects import window
from fastfeast_dagster.sources.reading import read_source_file
from fastfeast_dagster.sources.storage import (
    ObjectChanged,
    ObjectPath,
    ObjectRoot,
    StoreUnavailable,
)
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres
from fastfeast_dagster_tests.commands import free_port
from fastfeast_dagster_tests.conftest import new_database
from fastfeast_dagster_tests.objectstore import bucket, s3_endpoint, upload_tree

__all__ = ["bucket", "s3_endpoint"]  # fixtures
pytestmark = pytest.mark.distributed

DAY = dt.date(2026, 3, 2)
HOURS = [8]
PREFIX = "feeds/fastfeast"


def hour_key(hour: int) -> str:
    return f"{DAY.isoformat()}-{hour:02d}:00"


@pytest.fixture
def generated(tmp_path: Path, bucket: str) -> tuple[Path, str]:
    """A small generated day in a folder, and the same files in the bucket under PREFIX."""
    folder = tmp_path / "data"
    generate(folder, DAY, hours=HOURS, scale=0.2)
    # The master and the hours: with no batch folder for the day, its hours need not wait for
    # the day's dimensions (sensors/parents.py), so one tick requests every partition.
    shutil.rmtree(folder / "input" / "batch")
    upload_tree(folder, bucket, PREFIX)
    return folder, f"s3://{bucket}/{PREFIX}"


def requests(contract: Contract, root: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """What both folder sensors request on their first tick, settle 0, as comparable tuples."""
    from fastfeast_dagster.definitions import defs

    monkeypatch.setenv("FASTFEAST_DATA_DIR", root)
    partitions = partitions_by_kind(contract)
    found = []
    with dg.instance_for_test() as instance:
        for kind, grain in (("batch", "dimension"), ("stream", "fact")):
            sensor = build_folder_sensor(kind, contract, partitions[grain], settle_seconds=0)
            context = dg.build_sensor_context(instance=instance, definitions=defs)
            for request in sensor.evaluate_tick(context).run_requests or []:
                found.append(
                    (
                        request.partition_key,
                        tuple(key.to_user_string() for key in request.asset_selection or []),
                        request.tags["fastfeast/files"],
                    )
                )
    return found


def test_the_same_day_in_a_folder_and_a_bucket_requests_the_same_runs(
    contract: Contract, generated: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = generated
    from_folder = requests(contract, str(folder), monkeypatch)
    from_bucket = requests(contract, url, monkeypatch)
    assert from_bucket == from_folder
    assert {key for key, _, _ in from_bucket} == {"2026-01-01", *map(hour_key, HOURS)}


@pytest.fixture
def second_warehouse(pg_server: EmbeddedPostgres) -> Iterator[str]:
    yield from new_database(pg_server)


COUNTED = (
    "SELECT 'file_log', count(*), sum(total_records), sum(valid_records), sum(quarantined)"
    " FROM pipeline_file_log",
    "SELECT 'quarantine', count(*), count(DISTINCT source_file), 0, 0 FROM quarantine",
    "SELECT 'value_repair', count(*), 0, 0, 0 FROM value_repair",
)


def warehouse_counts(url: str, contract: Contract) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        counts = {
            spec.table: conn.execute(f"SELECT count(*) FROM {spec.table}").fetchone()
            for spec in contract.sources.values()
        }
        for query in COUNTED:
            name, *values = conn.execute(query).fetchone()  # type: ignore[misc]
            counts[name] = tuple(values)
    return counts


def test_the_same_day_in_a_folder_and_a_bucket_loads_the_same_warehouse_and_replays_nothing(
    contract: Contract,
    generated: tuple[Path, str],
    warehouse_url: str,
    second_warehouse: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastfeast_dagster.definitions import defs

    folder, url = generated
    monkeypatch.setenv("FASTFEAST_PII_KEY", "test-pii-key")
    outcomes = {}
    for root, warehouse in ((str(folder), warehouse_url), (url, second_warehouse)):
        monkeypatch.setenv("FASTFEAST_DATA_DIR", root)
        monkeypatch.setenv("FASTFEAST_DATABASE_URL", warehouse)
        with dg.instance_for_test() as instance:
            first = ingest(defs, instance, max_wait_seconds=60, log_level="WARNING")
            replay = ingest(defs, instance, max_wait_seconds=60, log_level="WARNING")
        assert not first.failed
        assert replay.runs == []
        # The calendar's run has no partition.
        outcomes[root] = sorted((run.partition_key or "", tuple(run.assets)) for run in first.runs)
    assert outcomes[url] == outcomes[str(folder)]
    in_bucket = warehouse_counts(second_warehouse, contract)
    assert in_bucket == warehouse_counts(warehouse_url, contract)
    assert in_bucket["fact_order"][0] > 0 and in_bucket["dim_customer"][0] > 0
    # The same bytes were read (md5 of what was parsed), from the bucket's objects.
    logged = {}
    for warehouse in (warehouse_url, second_warehouse):
        with psycopg.connect(warehouse) as conn:
            logged[warehouse] = conn.execute(
                "SELECT file_path, file_hash FROM pipeline_file_log ORDER BY file_name, file_path"
            ).fetchall()
    assert [md5 for _, md5 in logged[second_warehouse]] == [md5 for _, md5 in logged[warehouse_url]]
    assert all(path.startswith(f"{url}/") for path, _ in logged[second_warehouse])


def evaluate(
    contract: Contract, cursor: str | None, kind: str = "batch"
) -> tuple[list[dg.RunRequest], str | None]:
    """One tick of a folder sensor (the batch one: the master's partition), settle 0."""
    from fastfeast_dagster.definitions import defs

    partitions = partitions_by_kind(contract)["dimension" if kind == "batch" else "fact"]
    sensor = build_folder_sensor(kind, contract, partitions, settle_seconds=0)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        tick = sensor.evaluate_tick(context)
    return list(tick.run_requests or []), tick.cursor


def test_a_changed_object_reruns_its_partition_and_a_reupload_runs_nothing(
    contract: Contract, generated: tuple[Path, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = generated
    monkeypatch.setenv("FASTFEAST_DATA_DIR", url)
    first, cursor = evaluate(contract, None)
    (master,) = first
    pins = json.loads(master.tags["fastfeast/etags"])
    names = master.tags["fastfeast/files"].split(",")
    assert len(names) == 13 and set(pins) == {f"master/{name}" for name in names}

    client = boto3.client("s3")
    customers = "master/customers.csv"
    # The same bytes again: a new LastModified, the same ETag, nothing to run.
    client.upload_file(str(folder / customers), bucket, f"{PREFIX}/{customers}")
    again, cursor = evaluate(contract, cursor)
    assert again == []

    lines = (folder / customers).read_text().splitlines(keepends=True)
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/{customers}", Body="".join(lines[:-1]))
    changed, cursor = evaluate(contract, cursor)
    assert [
        (request.partition_key, [key.to_user_string() for key in request.asset_selection or []])
        for request in changed
    ] == [("2026-01-01", ["dim_customer"])]
    assert changed[0].run_key != master.run_key
    assert json.loads(changed[0].tags["fastfeast/etags"])[customers] != pins[customers]
    assert evaluate(contract, cursor)[0] == []


def test_a_stream_tick_checks_the_parents_of_new_objects_only(
    contract: Contract, generated: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = generated
    monkeypatch.setenv("FASTFEAST_DATA_DIR", url)
    # A session of the test's own, whose clients (the sensor's) report what they list.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.session.Session())
    listed: list[str] = []
    boto3.DEFAULT_SESSION.events.register(
        "before-parameter-build.s3.ListObjectsV2",
        lambda params, **_: listed.append(params["Prefix"]),
    )
    day_files = f"{PREFIX}/input/batch/{DAY.isoformat()}/"
    first, cursor = evaluate(contract, None, "stream")
    assert [request.partition_key for request in first] == [hour_key(8)]
    assert day_files in listed  # is the hour's day of dimensions loaded?
    listed.clear()
    again, _ = evaluate(contract, cursor, "stream")
    assert again == []
    assert day_files not in listed, listed  # nothing new: no day's dimensions to ask about


def _pinned_cities(bucket: str) -> tuple[Any, ObjectRoot]:
    """An object `p/master/cities.csv`, and a data root pinned to its ETag as a run's would be."""
    client = boto3.client("s3")
    client.put_object(Bucket=bucket, Key="p/master/cities.csv", Body=b"city_id\n1\n")
    etag = client.head_object(Bucket=bucket, Key="p/master/cities.csv")["ETag"]
    pins = {"fastfeast/etags": json.dumps({"master/cities.csv": etag})}
    return client, ObjectRoot(bucket, "p").pinned(pins)


def test_an_object_gone_before_its_run_reads_it_is_a_rejected_file(bucket: str) -> None:
    client, root = _pinned_cities(bucket)
    client.delete_object(Bucket=bucket, Key="p/master/cities.csv")
    result = read_source_file(root / "master/cities.csv", "csv", root)  # type: ignore[arg-type]
    assert result.frame is None and result.rejection is not None
    assert (result.rejection.rule, result.rejection.message) == (
        "unreadable",
        "the object cannot be read: NoSuchKey",
    )
    assert (result.file.relative_path, result.file.size) == ("master/cities.csv", 0)


def test_an_object_store_that_cannot_be_reached_fails_the_run_without_its_address(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a verdict on the file: the run fails, and the retry of failed runs reads it again."""
    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    root = ObjectRoot(bucket, "p")
    with pytest.raises(StoreUnavailable) as failure:
        read_source_file(root / "master/cities.csv", "csv", root)  # type: ignore[arg-type]
    assert str(failure.value).endswith(": EndpointConnectionError")
    assert str(port) not in str(failure.value)


def test_listing_pages_past_1000_keys(contract: Contract, bucket: str) -> None:
    client = boto3.client("s3")
    hour = f"{PREFIX}/input/stream/{DAY.isoformat()}/05"
    # 1,100 keys sort before the hour's real file: only a listing that pages finds it.
    for number in range(1100):
        client.put_object(Bucket=bucket, Key=f"{hour}/aaa-{number:04d}.json.tmp", Body=b"[]")
    client.put_object(Bucket=bucket, Key=f"{hour}/orders.json", Body=b"[]")
    root = ObjectRoot(bucket, PREFIX)
    found = list_partition_files(contract, root, "stream")
    assert [(f.path.name, f.size) for f in found[f"{DAY.isoformat()}-05:00"]] == [
        ("orders.json", 2)
    ]


def test_a_pinned_read_refuses_an_object_replaced_since_the_sensor_saw_it(bucket: str) -> None:
    client, pinned = _pinned_cities(bucket)
    path = pinned / "master" / "cities.csv"
    assert isinstance(path, ObjectPath) and path.read().data == b"city_id\n1\n"
    client.put_object(Bucket=bucket, Key="p/master/cities.csv", Body=b"city_id\n2\n")
    with pytest.raises(ObjectChanged, match="changed since its sensor saw ETag"):
        path.read()
    assert (ObjectRoot(bucket, "p") / "master/cities.csv").read().data == b"city_id\n2\n"


def _object(name: str, etag: str, modified_s: int) -> FoundFile:
    path = ObjectRoot("b") / f"input/stream/2026-03-02/08/{name}"
    return FoundFile("orders", path, 10, modified_s * 10**9, modified_s * 10**9, version=etag)  # type: ignore[arg-type]


def test_an_object_that_appears_with_an_old_last_modified_is_still_taken() -> None:
    """A multipart upload's LastModified is its start: it can show up after newer objects."""
    key = "2026-03-02-08:00"
    scan = lambda files, cursor: scan_objects(  # noqa: E731
        {key: files},
        cursor,
        now_ns=1000 * 10**9,
        settle_seconds=5,
        last_partition_key=None,
        max_requests=10,
    )
    first = scan([_object("tickets.csv", "t1", 990)], ObjectCursor())
    assert [p.partition_key for p in first.ready] == [key]
    late = scan(
        [_object("tickets.csv", "t1", 990), _object("orders.json", "o1", 100)], first.cursor
    )
    assert [[f.path.name for f in p.files] for p in late.ready] == [["orders.json"]]
    still = scan(
        [_object("tickets.csv", "t1", 990), _object("orders.json", "o1", 100)], late.cursor
    )
    assert still.ready == [] and still.cursor.pending == 0


def test_a_partition_waits_while_its_newest_object_is_inside_the_settle_window() -> None:
    cursor = scan_objects(
        {"2026-03-02-08:00": [_object("orders.json", "o1", 998)]},
        ObjectCursor(),
        now_ns=1000 * 10**9,
        settle_seconds=5,
        last_partition_key=None,
        max_requests=10,
    )
    assert cursor.ready == [] and cursor.cursor.pending == 1 and cursor.cursor.taken == {}


def test_the_listing_window_follows_the_newest_date_not_a_typo_in_the_future() -> None:
    dates = ["2026-02-20", "2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02", "2099-01-01"]
    assert window(dates, dt.date(2026, 12, 2)) == [
        "2026-02-27",
        "2026-02-28",
        "2026-03-01",
        "2026-03-02",
        "2099-01-01",
    ]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("cities.json", '[{"city_id": 1, "city_name": "Café"}, {"city_id": 2}]'.encode()),
        ("cities.csv", b"city_id,city_name\n1,Caf\xc3\xa9\n2,Caf\xe9\n"),
    ],
)
def test_an_object_is_read_in_the_same_blocks_as_a_file(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, content: bytes
) -> None:
    """One reading path: the same verdict, frame and md5 from a bucket as from a folder."""
    monkeypatch.setattr(reading, "_BLOCK_BYTES", 3)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"p/master/{name}", Body=content)
    (tmp_path / name).write_bytes(content)
    root = ObjectRoot(bucket, "p")
    file_format = name.rsplit(".", 1)[1]
    from_object = read_source_file(root / f"master/{name}", file_format, root)  # type: ignore[arg-type]
    from_file = read_source_file(tmp_path / name, file_format, tmp_path)
    assert from_object.file.md5 == from_file.file.md5 == hashlib.md5(content).hexdigest()
    assert from_object.file.size == from_file.file.size == len(content)
    assert from_object.rejection == from_file.rejection
    if from_file.frame is not None:
        assert from_object.frame.equals(from_file.frame)
