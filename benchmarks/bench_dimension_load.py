"""Benchmark: read + validate + mask + load a large customers file, against raw COPY.

    python benchmarks/bench_dimension_load.py [--rows 1000000] [--changed 0.01]

Both measurements run in the same process against the same embedded PostgreSQL, so the ratio is
meaningful on any machine: the pipeline's rows/s divided by a plain psycopg `COPY` of the same
file's CSV bytes into a table with the same primary key. Two snapshots are loaded: the first
(every member new, each a first history version) and the next day's, the same members with
`--changed` of them moved to another region (what a daily load does from then on: compare every
member, update and version the changed ones). Target: ratio >= 0.35.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from fastfeast_dagster.batch import PartitionFile
from fastfeast_dagster.contract import load_contract
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.load import load_batch

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_database, print_stages, print_table, raw_copy_seconds

COLUMNS = list(load_contract().sources["customers"].columns)
# Named columns: the tables' audit columns (`_rescued`, lineage) come after the contract's and
# change with it, so positional VALUES would shift into them.
_LINEAGE = "_source_file, _source_row, _partition_key, _run_id"
PARENTS = f"""
INSERT INTO dim_city (city_id, city_name, country, timezone, {_LINEAGE})
VALUES (1, 'Cairo', 'Egypt', 'Africa/Cairo', 'b', 1, 'p', 'r');
INSERT INTO dim_region (region_id, region_name, city_id, delivery_base_fee, {_LINEAGE})
SELECT r, 'r' || r, 1, 10, 'b', r, 'p', 'r' FROM generate_series(1, 18) r;
INSERT INTO dim_segment (segment_id, segment_name, discount_pct, priority_support, {_LINEAGE})
VALUES (1, 'Regular', 0, false, 'b', 1, 'p', 'r'), (2, 'VIP', 10, true, 'b', 2, 'p', 'r');
"""


def write_customers(path: Path, rows: int, changed: float = 0.0, seed: int = 7) -> None:
    """A customers.csv of `rows` rows, ~1.5 % of them defective, built column-wise with numpy;
    `changed` of them in another region than the file of the same seed without changes."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, rows + 1).astype(str)
    emails = np.char.add(np.char.add("user", ids), "@example.com")
    emails[rng.random(rows) < 0.005] = "notanemail"
    phones = np.char.add("010", np.char.zfill(rng.integers(0, 10**8, rows).astype(str), 8))
    region_ids = rng.integers(1, 19, rows)
    moved = np.random.default_rng(seed + 1).random(rows) < changed
    region_ids[moved] = region_ids[moved] % 18 + 1  # the next of the 18 regions
    regions = region_ids.astype(str)
    regions[rng.random(rows) < 0.01] = ""
    signup = np.datetime_as_string(
        np.datetime64("2019-01-01") + rng.integers(0, 2000, rows), unit="D"
    )
    created = np.char.add(signup, " 00:00:00")
    columns = [
        ids,
        np.char.add("Customer ", ids),
        emails,
        phones,
        regions,
        rng.integers(1, 3, rows).astype(str),
        signup,
        np.array(["male", "female"])[rng.integers(0, 2, rows)],
        created,
        created,
    ]
    lines = columns[0]
    for column in columns[1:]:
        lines = np.char.add(np.char.add(lines, ","), column)
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(lines.tolist()) + "\n")


def pipeline(url: str, path: Path, day: str) -> tuple[float, float, int, int, dict[str, float]]:
    contract = load_contract()
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        partition = [PartitionFile(path, "batch", day)]
        batch = prepare_batch("customers", partition, contract, path.parent, b"benchmark-key")
        prepared = time.perf_counter()
        report = load_batch(conn, contract, batch, asset_key="dim_customer", run_id="bench")
        done = time.perf_counter()
    stages = {f"prepare: {k}": v for k, v in batch.stage_seconds.items()} | {
        f"load: {k}": v for k, v in report.stage_seconds.items()
    }
    return (
        prepared - started,
        done - prepared,
        report.rows_loaded,
        report.rows_quarantined,
        stages,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    # (day, share of members changed since the day before, what the table says of it)
    snapshots = [
        ("2026-03-02", 0.0, "the first snapshot (every member new)"),
        ("2026-03-03", args.changed, f"the next day's ({args.changed:.0%} changed)"),
    ]
    with tempfile.TemporaryDirectory(prefix="ffbench") as folder, benchmark_database() as url:
        paths = {day: Path(folder) / day / "customers.csv" for day, _, _ in snapshots}
        for day, changed, _ in snapshots:
            paths[day].parent.mkdir()
            write_customers(paths[day], args.rows, changed)
        data = paths[snapshots[0][0]].read_bytes().split(b"\n", 1)[1]
        copy = raw_copy_seconds(url, COLUMNS, "customer_id", data)
        with psycopg.connect(url) as conn:
            apply_schema(conn, load_contract())
            conn.execute(PARENTS)
        runs = {day: pipeline(url, path, day) for day, path in paths.items()}
    for day, _, title in snapshots:
        prepare, load, loaded, quarantined, stages = runs[day]
        total = prepare + load
        print_table(
            f"{args.rows:,} customers ({len(data) / 1e6:.0f} MB CSV): {title}",
            [
                (
                    "raw psycopg COPY into a PK table (baseline, median of 3)",
                    copy,
                    args.rows / copy,
                ),
                ("  read + validate + mask", prepare, None),
                ("  load: COPY, orphan anti-join, upsert, history, audit", load, None),
                ("pipeline total", total, args.rows / total),
            ],
        )
        print_stages(stages)
        print(
            f"\nloaded {loaded:,}, quarantined {quarantined:,} "
            f"(read = loaded + quarantined: {loaded + quarantined == args.rows})"
        )
        print(f"ratio to raw COPY: {copy / total:.2f}x (target >= 0.35x)\n")


if __name__ == "__main__":
    main()
