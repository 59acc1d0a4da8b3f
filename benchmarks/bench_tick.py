"""Benchmark: what one stream-sensor tick costs as the delivered history grows.

    python benchmarks/bench_tick.py [--days 365]

Builds a data root of `--days` delivered days (a batch folder of dimension files and 24 stream
hour folders of three files each, the names the contract expects, a few bytes each) and a Dagster
instance on a throwaway embedded PostgreSQL in which every dimension of every day has loaded.
Then times, median of five, the parts of a stream tick after the startup catch-up (a cursor whose
watermark is past every file, so nothing is new):

    listing   list_partition_files: scandir and stat of every hour folder and file
    scan      changed_partitions + scan (pure)
    parents   held_for_parents over the changed hours only (what the sensor does)
    parents, all hours  held_for_parents over every hour (what it did: a query per dimension
              file of every day, on every tick)

The baseline is the same tick with one delivered day, in the same run; the table gives each part
against it. CPU per hour of ticks follows from the sensor's interval: the daemon ticks every 5-6 s
at `minimum_interval_seconds` 3, every 10-15 s at 10 (the previous setting).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from fastfeast_dagster.contract import Contract, load_contract
from fastfeast_dagster.sensors.folders import Cursor, changed_partitions, scan
from fastfeast_dagster.sensors.parents import held_for_parents
from fastfeast_dagster.sources.listing import list_partition_files

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_database

FIRST_DAY = dt.date(2026, 1, 2)
TICK_SECONDS = {"3 s (now)": 5.5, "10 s (before)": 12.5}  # the daemon's actual spacing


def build_root(contract: Contract, root: Path, days: int) -> list[str]:
    """`days` delivered days under `root`; returns the day keys."""
    batch = {spec.files["batch"] for spec in contract.dimensions.values() if "batch" in spec.files}
    stream = {spec.files["stream"] for spec in contract.facts.values()}
    keys = []
    for offset in range(days):
        day = (FIRST_DAY + dt.timedelta(days=offset)).isoformat()
        keys.append(day)
        folder = root / contract.paths.batch / day
        folder.mkdir(parents=True)
        for name in batch:
            (folder / name).write_text("x\n")
        for hour in range(24):
            folder = root / contract.paths.stream / day / f"{hour:02d}"
            folder.mkdir(parents=True)
            for name in stream:
                (folder / name).write_text("x\n")
    return keys


def record_dimension_loads(
    instance: dg.DagsterInstance, contract: Contract, days: list[str]
) -> None:
    """Every dimension materialized for every day, after its files were written."""
    for spec in contract.dimensions.values():
        for day in days:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=spec.table, partition=day)
            )


def median_seconds(action: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(contract: Contract, instance: dg.DagsterInstance, root: Path) -> dict[str, float]:
    os.environ["FASTFEAST_DATA_DIR"] = str(root)
    partitions = list_partition_files(contract, root, "stream")
    now = time.time_ns()
    # After the catch-up: the watermark is past every file, nothing is new.
    cursor = Cursor(watermark_ns=now)

    def tick_scan() -> object:
        changed = changed_partitions(partitions, cursor)
        return scan(
            partitions,
            cursor,
            now_ns=now,
            settle_seconds=contract.sensors.settle_seconds,
            last_partition_key=None,
            max_requests=contract.sensors.max_requests_per_tick,
            held=frozenset(changed),
        )

    changed = {key: partitions[key] for key in changed_partitions(partitions, cursor)}
    return {
        "listing": median_seconds(lambda: list_partition_files(contract, root, "stream")),
        "scan": median_seconds(tick_scan),
        "parents": median_seconds(
            lambda: held_for_parents(contract, instance, root, changed, now_ns=now)
        ),
        "parents, all hours": median_seconds(
            lambda: held_for_parents(contract, instance, root, partitions, now_ns=now), repeats=3
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    contract = load_contract()
    work = Path(tempfile.mkdtemp(prefix="fftick", dir="/tmp"))
    load_before = os.getloadavg()
    try:
        with benchmark_database() as url:
            storage = {
                "storage": {"postgres": {"postgres_url": url.replace("://", "+psycopg2://", 1)}}
            }
            with dg.instance_for_test(overrides=storage) as instance:
                results = {}
                for days in (1, args.days):
                    root = work / f"days{days}"
                    keys = build_root(contract, root, days)
                    record_dimension_loads(instance, contract, keys)
                    results[days] = measure(contract, instance, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base, grown = results[1], results[args.days]
    print(f"\nstream tick with nothing new, {args.days} delivered days against 1 (median of 5)")
    print(f"{'part':22} {'1 day ms':>9} {f'{args.days} days ms':>12} {'ratio':>7}")
    for part in base:
        print(
            f"{part:22} {base[part] * 1e3:9.1f} {grown[part] * 1e3:12.1f}"
            f" {grown[part] / max(base[part], 1e-6):6.0f}x"
        )
    tick = grown["listing"] + grown["scan"] + grown["parents"]
    before = grown["listing"] + grown["scan"] + grown["parents, all hours"]
    print(f"\nCPU of a core spent on stream ticks with {args.days} days delivered:")
    for interval, spacing in TICK_SECONDS.items():
        print(
            f"  interval {interval:14} tick every ~{spacing:4.1f} s:"
            f" {100 * tick / spacing:5.1f} %"
            f"  (with every hour's parents: {100 * before / spacing:5.1f} %)"
        )
    load_after = os.getloadavg()
    print(
        "load average before "
        + "/".join(f"{v:.1f}" for v in load_before)
        + ", after "
        + "/".join(f"{v:.1f}" for v in load_after)
        + " (2 cores, shared)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
