"""Benchmark: one hour of 1,000,000 orders, against raw COPY; plus the GE check's share.

    python benchmarks/bench_fact_load.py [--orders 1000000]

The hour's `orders.json` (from the synthetic generator, cached under /tmp) is read, validated,
masked, orphan-checked against the scaled master's customers (about 1.85 M), upserted, and its
rejects quarantined, in a fresh process whose peak RSS is reported. Baseline, in the same run and
on the same server: a plain psycopg `COPY` of the same rows' CSV bytes into a table with the same
primary key. Then the table's Great Expectations suite validates the partition read back from
Postgres, reported as a share of the partition's materialization time.

Targets: ratio >= 0.2x raw COPY, peak RSS < 2 GB; GE adds <= 35 % of a materialization.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from fastfeast_dagster.batch import PartitionFile
from fastfeast_dagster.contract import EXPECTATIONS_DIR, load_contract
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.load import load_batch

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    benchmark_database,
    csv_bytes,
    peak_rss_mb,
    print_stages,
    print_table,
    raw_copy_seconds,
    run_phase,
)

DAY = dt.date(2026, 3, 2)
HOUR = 19
ORDERS_AT_SCALE_ONE = 270  # hour 19 of the generator's daily curve
KEY = b"benchmark-key"


def data_for(orders: int) -> Path:
    """Generated once per size and reused: the generator is not what is measured."""
    from fastfeast_dagster.synthetic import generate

    root = Path(f"/tmp/fastfeast-bench-{orders}")
    if not (root / "input" / "stream" / str(DAY) / f"{HOUR:02d}" / "orders.json").exists():
        generate(root, DAY, hours=[HOUR], scale=orders / ORDERS_AT_SCALE_ONE)
    return root


def load_dimensions(url: str, root: Path) -> None:
    contract = load_contract()
    master = contract.partitions.batch_start_date.isoformat()
    with psycopg.connect(url) as conn:
        apply_schema(conn, contract)
        for name in contract.load_order():
            spec = contract.sources[name]
            if spec.kind != "dimension":
                continue
            path = root / "master" / spec.files["master"]
            batch = prepare_batch(
                name, [PartitionFile(path, "master", master)], contract, root, KEY
            )
            load_batch(conn, contract, batch, asset_key=spec.table, run_id="bench-dims")


def load_hour(url: str, root: Path) -> dict[str, object]:
    """The measured phase, in its own process so its peak RSS is its own."""
    contract = load_contract()
    partition = f"{DAY}-{HOUR:02d}:00"
    path = root / "input" / "stream" / str(DAY) / f"{HOUR:02d}" / "orders.json"
    started = time.perf_counter()
    batch = prepare_batch("orders", [PartitionFile(path, "stream", partition)], contract, root, KEY)
    prepared = time.perf_counter()
    with psycopg.connect(url) as conn:
        report = load_batch(conn, contract, batch, asset_key="fact_order", run_id="bench-facts")
    loaded = time.perf_counter()
    return {
        "rows": batch.rows_read,
        "loaded": report.rows_loaded,
        "quarantined": report.rows_quarantined,
        "orphans": report.orphans,
        "prepare_seconds": prepared - started,
        "load_seconds": loaded - prepared,
        "total_seconds": loaded - started,
        "peak_rss_mb": peak_rss_mb(),
        "stages": {f"prepare: {k}": v for k, v in batch.stage_seconds.items()}
        | {f"load: {k}": v for k, v in report.stage_seconds.items()},
    }


def check_hour(url: str) -> dict[str, float]:
    from fastfeast_dagster.checks.runner import run_suite
    from fastfeast_dagster.warehouse.readback import read_rows

    contract = load_contract()
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        frame = read_rows(conn, contract, "orders", [f"{DAY}-{HOUR:02d}:00"])
    read = time.perf_counter()
    outcome = run_suite(frame, EXPECTATIONS_DIR / "fact_order.json")
    return {
        "readback_seconds": read - started,
        "validate_seconds": time.perf_counter() - read,
        "rows": len(frame),
        "failed": outcome.failed,
    }


def baseline(url: str, root: Path) -> float:
    from fastfeast_dagster.sources.reading import read_source_file

    contract = load_contract()
    path = root / "input" / "stream" / str(DAY) / f"{HOUR:02d}" / "orders.json"
    frame = read_source_file(path, "json", root).frame
    assert frame is not None
    columns = list(contract.sources["orders"].columns)
    # Exact duplicates would break the key: the baseline loads each order once.
    data = csv_bytes(frame[columns].drop_duplicates("order_id"))
    return raw_copy_seconds(url, columns, "order_id", data)


def _phase(name: str, url: str, root: Path) -> dict[str, Any]:
    return run_phase(__file__, "--phase", name, "--url", url, "--root", str(root))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--phase", choices=["dimensions", "hour", "check", "baseline"])
    parser.add_argument("--url")
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    if args.phase:
        phases = {
            "dimensions": lambda: load_dimensions(args.url, args.root) or {},
            "hour": lambda: load_hour(args.url, args.root),
            "check": lambda: check_hour(args.url),
            "baseline": lambda: {"seconds": baseline(args.url, args.root)},
        }
        print(json.dumps(phases[args.phase]()))
        return

    root = data_for(args.orders)
    with benchmark_database() as url:
        _phase("dimensions", url, root)
        copy = _phase("baseline", url, root)["seconds"]
        hour = _phase("hour", url, root)
        check = _phase("check", url, root)
    rows = hour["rows"]
    print_table(
        f"one hour of {rows:,.0f} order rows (orphan check against the scaled master)",
        [
            ("raw psycopg COPY into a PK table (baseline, median of 3)", copy, rows / copy),
            ("  read + validate + mask", hour["prepare_seconds"], None),
            (
                "  load: COPY, orphan anti-join, upsert, quarantine, file log",
                hour["load_seconds"],
                None,
            ),
            ("pipeline total", hour["total_seconds"], rows / hour["total_seconds"]),
            ("GE check: read back the partition", check["readback_seconds"], None),
            ("GE check: validate the fact_order suite", check["validate_seconds"], None),
        ],
    )
    print_stages(hour["stages"])
    materialization = hour["total_seconds"] + check["readback_seconds"] + check["validate_seconds"]
    ge_share = (check["readback_seconds"] + check["validate_seconds"]) / materialization
    print(
        f"\nloaded {hour['loaded']:,.0f}, quarantined {hour['quarantined']:,.0f} "
        f"(orphans {hour['orphans']:,.0f}); read = loaded + quarantined: "
        f"{hour['loaded'] + hour['quarantined'] == rows}"
    )
    print(f"ratio to raw COPY: {copy / hour['total_seconds']:.2f}x (target >= 0.2x)")
    print(f"peak RSS of the load process: {hour['peak_rss_mb']:,.0f} MB (target < 2048 MB)")
    print(f"GE check share of the materialization: {ge_share:.0%} (target <= 35%)")


if __name__ == "__main__":
    main()
