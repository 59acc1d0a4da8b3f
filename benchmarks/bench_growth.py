"""Benchmark: what one hour costs as the warehouse grows (0, 2, 5 and 10 M orders stored).

    python benchmarks/bench_growth.py [--sizes 0 2 5 10] [--hour-orders 20000] [--rounds 3]
                                      [--postgres-defaults] [--set NAME=VALUE ...]
                                      [--hours-per-checkpoint K]

An hour of `--hour-orders` orders (from the synthetic generator) is read, validated, masked and
loaded with `load_batch` into a warehouse whose fact_order already holds N million rows, filled by
SQL (random UUID keys, valid parents, spread over the year before the hour, with the quarantine
and repair rows such hours leave) rather than through the pipeline. At each size: the median of
`--rounds` loads of fresh hours (each after a CHECKPOINT, as in production), their upsert and
audit-trail stages and WAL, the partition row count the IO manager reports,
the GE check of one hour (read back + validate), and the SLA update of the hour (its tickets and
events loaded, then `apply_fact_hours`; it reads the orders of the hour's tickets, so it is timed
against the stored orders too). The ratio to the empty warehouse is the result; the target is
<= 1.5x at 10 M.
`--postgres-defaults` runs the same on PostgreSQL's default memory and WAL settings instead of
the embedded server's sized ones, to show what the sizing buys.
`--hours-per-checkpoint K` (2-4) asks what checkpoints further apart would buy: in each round, K
consecutive hours are loaded once with a checkpoint before each (today's server) and once with one
checkpoint before the first only (a `checkpoint_timeout` of K hours); it reports the mean load of
an hour in each, with its WAL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import psycopg

from fastfeast_dagster.batch import PartitionFile
from fastfeast_dagster.contract import EXPECTATIONS_DIR, load_contract
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.load import load_batch
from fastfeast_dagster.warehouse.sla import apply_fact_hours

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_database

DAY = dt.date(2026, 3, 2)
HOUR = 19  # the generator's busiest hour, loaded once per round and removed again
# The hours a checkpoint cycle spans with --hours-per-checkpoint, near HOUR's size (the curve:
# 1.8, 2.0, 1.8 and 1.3 times the day's mean).
CYCLE_HOURS = (19, 20, 21, 18)
ORDERS_AT_SCALE_ONE = 270  # orders in hour 19 at scale 1
KEY = b"benchmark-key"
# What PostgreSQL itself defaults to, for --postgres-defaults.
POSTGRES_DEFAULTS = {
    "shared_buffers": "128MB",
    "effective_cache_size": "4GB",
    "maintenance_work_mem": "64MB",
    "max_wal_size": "1GB",
    "min_wal_size": "80MB",
    "checkpoint_timeout": "5min",
}

_FILL = """
INSERT INTO fact_order (order_id, customer_id, restaurant_id, driver_id, region_id,
    order_amount, delivery_fee, discount_amount, total_amount, order_status, payment_method,
    order_created_at, delivered_at, date_key, time_key,
    _source_file, _source_row, _partition_key, _run_id)
SELECT md5('stored' || g)::uuid::text,
       (%(customers)s::int[])[1 + g %% cardinality(%(customers)s::int[])],
       (%(restaurants)s::int[])[1 + g %% cardinality(%(restaurants)s::int[])],
       (%(drivers)s::int[])[1 + g %% cardinality(%(drivers)s::int[])],
       (%(regions)s::int[])[1 + g %% cardinality(%(regions)s::int[])],
       100, 10, 0, 110, 'Delivered', 'card', at, at + interval '35 minutes',
       to_char(at, 'YYYYMMDD')::integer, extract(hour FROM at)::integer * 100,
       'filled.json', g, to_char(at, 'YYYY-MM-DD-HH24:00'), 'bench-fill'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT %(day)s::timestamp - make_interval(secs => 1 + g %% 31536000)) AS t(at)
"""
# The audit trail the stored hours would have left (about what the generator's hours get: 3 % of
# rows quarantined, 2 % with a repaired value), which every load compares its own rows with.
_FILL_AUDIT = [
    """
INSERT INTO quarantine (source_file, source_path, source_table, source_row, rejection_stage,
    rejection_rule, rejection_column, rejection_reason, raw_data, asset_key, partition_key, run_id)
SELECT 'orders.json', 'filled/' || _partition_key || '/orders.json', 'fact_order', _source_row,
       'records', 'min', 'order_amount', 'below the minimum', '{}', 'fact_order', _partition_key,
       'bench-fill'
FROM fact_order WHERE _run_id = 'bench-fill' AND _source_row BETWEEN %(first)s AND %(last)s
 AND _source_row %% 33 = 0
""",
    """
INSERT INTO value_repair (source_file, source_path, source_table, source_row, repair_stage,
    repair_rule, repair_column, repair_reason, raw_value, repaired_to, asset_key, partition_key,
    run_id)
SELECT 'orders.json', 'filled/' || _partition_key || '/orders.json', 'fact_order', _source_row,
       'schema', 'allowed', 'payment_method', 'not an allowed value', 'x', 'Unknown',
       'fact_order', _partition_key, 'bench-fill'
FROM fact_order WHERE _run_id = 'bench-fill' AND _source_row BETWEEN %(first)s AND %(last)s
 AND _source_row %% 50 = 0
""",
]


def hour_files(orders: int) -> Path:
    """Generated once per size and reused: the generator is not what is measured."""
    from fastfeast_dagster.synthetic import generate

    root = Path(f"/tmp/fastfeast-growth-{orders}")
    folders = [root / "input" / "stream" / str(DAY) / f"{hour:02d}" for hour in CYCLE_HOURS]
    if not all(folder.exists() for folder in folders):
        generate(root, DAY, hours=sorted(CYCLE_HOURS), scale=orders / ORDERS_AT_SCALE_ONE)
    return root


def load_dimensions(conn: psycopg.Connection, root: Path) -> dict[str, list[int]]:
    """The master snapshot loaded; the keys of the parents the fill draws from (not a range:
    members the master quarantined are missing from it)."""
    contract = load_contract()
    master = contract.partitions.batch_start_date.isoformat()
    apply_schema(conn, contract)
    for name in contract.load_order():
        spec = contract.sources[name]
        if spec.kind == "dimension":
            path = root / "master" / spec.files["master"]
            files = [PartitionFile(path, "master", master)]
            batch = prepare_batch(name, files, contract, root, KEY)
            load_batch(conn, contract, batch, asset_key=spec.table, run_id="bench-dims")
    keys = {}
    for table in ("dim_customer", "dim_restaurant", "dim_driver", "dim_region"):
        (keys[table],) = conn.execute(
            f"SELECT array_agg({table[4:]}_id ORDER BY {table[4:]}_id) FROM {table}"
        ).fetchone()
    conn.commit()
    return keys


def fill(conn: psycopg.Connection, first: int, last: int, parents: dict[str, list[int]]) -> float:
    """Orders `first`..`last` by SQL, and their audit trail; their keys are valid by
    construction (no FK triggers)."""
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            _FILL,
            {
                "customers": parents["dim_customer"],
                "restaurants": parents["dim_restaurant"],
                "drivers": parents["dim_driver"],
                "regions": parents["dim_region"],
                "first": first,
                "last": last,
                "day": str(DAY),
            },
        )
        for statement in _FILL_AUDIT:
            conn.execute(statement, {"first": first, "last": last})
    conn.commit()
    conn.autocommit = True
    for table in ("fact_order", "quarantine", "value_repair"):
        conn.execute(f"VACUUM ANALYZE {table}")
    conn.autocommit = False
    return time.perf_counter() - started


def measure(
    conn: psycopg.Connection, root: Path, hour: int = HOUR, *, checkpoint: bool = True
) -> dict[str, float]:
    """Prepare and load one hour's orders; the GE check of them; the hour's SLA update. The
    hour stays; `undo` removes it."""
    from fastfeast_dagster.checks.runner import run_suite
    from fastfeast_dagster.warehouse.readback import read_rows

    contract = load_contract()
    partition = f"{DAY}-{hour:02d}:00"
    path = root / "input" / "stream" / str(DAY) / f"{hour:02d}" / "orders.json"
    batch = prepare_batch("orders", [PartitionFile(path, "stream", partition)], contract, root, KEY)
    if checkpoint:
        # Hours arrive an hour apart and the server checkpoints at least every
        # checkpoint_timeout, so each hour's load is the first write to its pages since one.
        conn.autocommit = True
        conn.execute("CHECKPOINT")
        conn.autocommit = False
    (wal_before,) = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
    conn.commit()
    started = time.perf_counter()
    report = load_batch(conn, contract, batch, asset_key="fact_order", run_id=f"bench-{hour}")
    loaded = time.perf_counter()
    # WAL the load wrote: after a checkpoint, each index page an insert touches first is written
    # whole (full-page writes), so this shows how many pages the hour's inserts spread over.
    (wal_bytes,) = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (wal_before,)
    ).fetchone()
    conn.execute("SELECT count(*) FROM fact_order WHERE _partition_key = %s", (partition,))
    conn.commit()
    counted = time.perf_counter()
    frame = read_rows(conn, contract, "orders", [partition])
    run_suite(frame, EXPECTATIONS_DIR / "fact_order.json")
    checked = time.perf_counter()
    for source, name in (("tickets", "tickets.csv"), ("ticket_events", "ticket_events.json")):
        files = [PartitionFile(path.with_name(name), "stream", partition)]
        batch = prepare_batch(source, files, contract, root, KEY)
        load_batch(conn, contract, batch, asset_key=source, run_id=f"bench-{hour}")
    sla_started = time.perf_counter()
    apply_fact_hours(conn, contract, [partition])
    sla_done = time.perf_counter()
    return {
        "load_batch": loaded - started,
        "upsert": report.stage_seconds.get("upsert", 0.0),
        "audit": report.stage_seconds.get("quarantine", 0.0),
        "wal_mb": float(wal_bytes) / 2**20,
        "partition_count": counted - loaded,
        "ge_check": checked - counted,
        "sla_update": sla_done - sla_started,
    }


def undo(conn: psycopg.Connection, hours: list[int]) -> None:
    """Remove the hours, so that every round loads into a warehouse of the same size."""
    partitions = [f"{DAY}-{hour:02d}:00" for hour in hours]
    with conn.transaction():
        conn.execute(
            "DELETE FROM ticket_sla_state WHERE ticket_id IN"
            " (SELECT ticket_id FROM fact_ticket WHERE _partition_key = ANY(%s))",
            (partitions,),
        )
        for table in ("fact_ticket_event", "fact_ticket", "fact_order"):
            conn.execute(f"DELETE FROM {table} WHERE _partition_key = ANY(%s)", (partitions,))
        for table in ("pipeline_file_log", "quarantine", "value_repair"):
            conn.execute(f"DELETE FROM {table} WHERE partition_key = ANY(%s)", (partitions,))


def measure_round(conn: psycopg.Connection, root: Path, cycle: int) -> dict[str, float]:
    """One hour after a checkpoint; with a `cycle` of K > 1 hours, also the mean hour of K
    consecutive hours with a checkpoint before each, and with one before the first only."""
    result = measure(conn, root)
    undo(conn, [HOUR])
    if cycle > 1:
        hours = list(CYCLE_HOURS[:cycle])
        for label, every in (("each", True), ("cycle", False)):
            loads = [
                measure(conn, root, hour, checkpoint=every or index == 0)
                for index, hour in enumerate(hours)
            ]
            undo(conn, hours)
            for name in ("load_batch", "wal_mb"):
                result[f"{label}_{name}"] = statistics.mean(load[name] for load in loads)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=float, nargs="+", default=[0, 2, 5, 10])
    parser.add_argument("--hour-orders", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-defaults", action="store_true")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for an experiment (e.g. full_page_writes=off), repeatable",
    )
    parser.add_argument("--hours-per-checkpoint", type=int, choices=range(1, 5), default=1)
    args = parser.parse_args()
    settings = dict(POSTGRES_DEFAULTS) if args.postgres_defaults else {}
    settings.update(item.split("=", 1) for item in args.set)
    root = hour_files(args.hour_orders)
    rows: list[tuple[float, dict[str, float], float]] = []
    with benchmark_database(settings or None) as url, psycopg.connect(url) as conn:
        buffers, wal = conn.execute(
            "SELECT current_setting('shared_buffers'), current_setting('max_wal_size')"
        ).fetchone()
        conn.commit()
        print(f"server: shared_buffers {buffers}, max_wal_size {wal}")
        parents = load_dimensions(conn, root)
        measure(conn, root)  # warm: Great Expectations' import is not what is measured
        undo(conn, [HOUR])
        stored = 0
        for size in sorted(args.sizes):
            target = int(size * 1_000_000)
            filled = fill(conn, stored + 1, target, parents) if target > stored else 0.0
            stored = max(stored, target)
            rounds = [
                measure_round(conn, root, args.hours_per_checkpoint) for _ in range(args.rounds)
            ]
            medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
            rows.append((size, medians, filled))
            print(f"  {size:g} M stored (filled in {filled:.0f} s): {medians}", flush=True)
    empty = rows[0][1]
    print(f"\none {args.hour_orders:,}-order hour as fact_order grows (medians of {args.rounds})")
    print(
        f"{'stored':>8} {'load_batch s':>13} {'x empty':>8} {'upsert s':>9} {'audit s':>8} "
        f"{'WAL MB':>7} {'hour count s':>13} {'GE check s':>11} {'SLA update s':>13}"
    )
    for size, medians, _ in rows:
        print(
            f"{size:>6g} M {medians['load_batch']:13.2f} "
            f"{medians['load_batch'] / empty['load_batch']:8.2f} {medians['upsert']:9.2f} "
            f"{medians['audit']:8.2f} "
            f"{medians['wal_mb']:7.0f} {medians['partition_count']:13.3f}"
            f" {medians['ge_check']:11.2f}"
            f" {medians['sla_update']:13.2f}"
        )
    print(
        f"\nratio at {rows[-1][0]:g} M: {rows[-1][1]['load_batch'] / empty['load_batch']:.2f}x"
        " the empty warehouse (target <= 1.5x)"
    )
    if args.hours_per_checkpoint > 1:
        cycle = args.hours_per_checkpoint
        hours = ", ".join(map(str, CYCLE_HOURS[:cycle]))
        print(f"\nthe mean hour of {cycle} consecutive hours ({hours}), medians of the rounds")
        print(
            f"{'stored':>8} {'checkpoint each s':>18} {'WAL MB':>7}"
            f" {f'one per {cycle} h s':>15} {'WAL MB':>7} {'x each':>7}"
        )
        for size, medians, _ in rows:
            print(
                f"{size:>6g} M {medians['each_load_batch']:18.2f} {medians['each_wal_mb']:7.0f}"
                f" {medians['cycle_load_batch']:15.2f} {medians['cycle_wal_mb']:7.0f}"
                f" {medians['cycle_load_batch'] / medians['each_load_batch']:7.2f}"
            )


if __name__ == "__main__":
    main()
