"""Benchmark: one hour of orders loaded side by side by this project and its peers, in one run.

    .venv/bin/pip install -e '.[bench]'    # dlt, for this benchmark only
    python benchmarks/bench_peers.py [--orders 500000] [--rounds 3] [--pandas-orders 100000]

The same generated `orders.json` (one hour) goes into the same server by:
- raw COPY: the file's rows as CSV into a text table with only the primary key (the transport's
  limit);
- schema COPY: the validated rows as CSV into a table with fact_order's own columns and indexes
  (what the schema costs to write, whoever writes it);
- this project: read, validate, mask, orphan proof, upsert, quarantine and file log
  (`prepare_batch` + `load_batch`), from the file to the commit;
- dlt's `merge` write disposition on order_id with its csv loader, from the file to the commit;
- pandas `read_json` + `to_sql(method="multi")`, the reference system's path, on the first
  `--pandas-orders` rows (it is too slow for the whole hour).
Each path runs `--rounds` times, interleaved, each into an empty table, each in a process of its
own; the table shows medians and rows/s as ratios to raw COPY and to schema COPY.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql

from fastfeast_dagster.batch import PartitionFile
from fastfeast_dagster.contract import load_contract
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.load import load_batch

sys.path.insert(0, str(Path(__file__).parent))
from bench_fact_load import DAY, HOUR, KEY, data_for, load_dimensions
from common import benchmark_database, csv_bytes, peak_rss_mb, raw_copy_seconds, run_phase

PARTITION = f"{DAY}-{HOUR:02d}:00"
_SCHEMA_TABLE = sql.Identifier("bench_schema_copy")


def _orders_file(root: Path) -> Path:
    return root / "input" / "stream" / str(DAY) / f"{HOUR:02d}" / "orders.json"


_LINEAGE = ["_source_file", "_source_row", "_partition_key", "_run_id"]


def _schema_columns() -> list[str]:
    """What the schema COPY writes: fact_order's columns and lineage (the rest take defaults)."""
    return [column.name for column in load_contract().table_columns("orders")] + _LINEAGE


def _clean_csv(root: Path) -> Path:
    """The validated hour as CSV in `_schema_columns` order, made once, outside any timing."""
    cached = root / "orders.clean.csv"
    if not cached.exists():
        contract = load_contract()
        files = [PartitionFile(_orders_file(root), "stream", PARTITION)]
        clean = prepare_batch("orders", files, contract, root, KEY).clean
        frame = clean.assign(_run_id="bench")[_schema_columns()].drop_duplicates("order_id")
        cached.write_bytes(csv_bytes(frame))
    return cached


def raw_copy(url: str, root: Path) -> dict[str, float]:
    from fastfeast_dagster.sources.reading import read_source_file

    frame = read_source_file(_orders_file(root), "json", root).frame
    assert frame is not None
    columns = list(load_contract().sources["orders"].columns)
    data = csv_bytes(frame[columns].drop_duplicates("order_id"))
    return {"seconds": raw_copy_seconds(url, columns, "order_id", data, repeats=1), "rows": 0}


def schema_copy(url: str, root: Path) -> dict[str, float]:
    data = _clean_csv(root).read_bytes()
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_SCHEMA_TABLE))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE fact_order INCLUDING DEFAULTS INCLUDING INDEXES)"
            ).format(_SCHEMA_TABLE)
        )
        conn.commit()
        started = time.perf_counter()
        columns = sql.SQL(", ").join(sql.Identifier(name) for name in _schema_columns())
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(_SCHEMA_TABLE, columns)
            ) as copy,
        ):
            for start in range(0, len(data), 1 << 20):
                copy.write(data[start : start + (1 << 20)])
        conn.commit()
        seconds = time.perf_counter() - started
        (rows,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_SCHEMA_TABLE)).fetchone()
        conn.execute(sql.SQL("DROP TABLE {}").format(_SCHEMA_TABLE))
        conn.commit()
    return {"seconds": seconds, "rows": rows}


def this_project(url: str, root: Path) -> dict[str, float]:
    contract = load_contract()
    started = time.perf_counter()
    batch = prepare_batch(
        "orders", [PartitionFile(_orders_file(root), "stream", PARTITION)], contract, root, KEY
    )
    with psycopg.connect(url) as conn:
        report = load_batch(conn, contract, batch, asset_key="fact_order", run_id="bench")
        seconds = time.perf_counter() - started
        # Back to an empty hour for the next round.
        with conn.transaction():
            for table, column in [
                ("fact_order", "_partition_key"),
                ("pipeline_file_log", "partition_key"),
                ("quarantine", "partition_key"),
                ("value_repair", "partition_key"),
            ]:
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                        sql.Identifier(table), sql.Identifier(column)
                    ),
                    (PARTITION,),
                )
    return {"seconds": seconds, "rows": report.rows_loaded, "peak_rss_mb": peak_rss_mb()}


def dlt_merge(url: str, root: Path) -> dict[str, float]:
    import dlt

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS dlt_bench CASCADE")
    started = time.perf_counter()
    records = json.loads(_orders_file(root).read_text())
    # dlt wants a host and a password; libpq's `host` query parameter names the embedded
    # server's socket directory, and the server trusts local connections.
    parsed = urlsplit(url)
    database, socket_dir = parsed.path.lstrip("/"), parse_qs(parsed.query)["host"][0]
    credentials = f"postgresql://postgres:unused@localhost:5432/{database}?host={socket_dir}"
    pipeline = dlt.pipeline(
        pipeline_name="fastfeast_bench",
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name="dlt_bench",
        pipelines_dir=tempfile.mkdtemp(prefix="ffdlt"),
    )
    pipeline.run(
        records,
        table_name="orders",
        write_disposition="merge",
        primary_key="order_id",
        loader_file_format="csv",
    )
    seconds = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM dlt_bench.orders").fetchone()
    return {"seconds": seconds, "rows": rows}


def pandas_to_sql(url: str, root: Path, orders: int) -> dict[str, float]:
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS pandas_orders")
    started = time.perf_counter()
    frame = pd.read_json(_orders_file(root)).head(orders)
    frame.to_sql("pandas_orders", engine, method="multi", chunksize=1000, index=False)
    return {"seconds": time.perf_counter() - started, "rows": len(frame)}


PATHS = {
    "raw": raw_copy,
    "schema": schema_copy,
    "project": this_project,
    "dlt": dlt_merge,
}


def _phase(name: str, url: str, root: Path, extra: list[str] | None = None) -> dict[str, Any]:
    return run_phase(__file__, "--phase", name, "--url", url, "--root", str(root), *(extra or []))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pandas-orders", type=int, default=100_000)
    parser.add_argument("--phase", choices=[*PATHS, "pandas", "dimensions"])
    parser.add_argument("--url")
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    if args.phase == "dimensions":
        load_dimensions(args.url, args.root)
        print(json.dumps({}))
        return
    if args.phase == "pandas":
        print(json.dumps(pandas_to_sql(args.url, args.root, args.pandas_orders)))
        return
    if args.phase:
        print(json.dumps(PATHS[args.phase](args.url, args.root)))
        return

    root = data_for(args.orders)
    _clean_csv(root)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in [*PATHS, "pandas"]}
    with benchmark_database() as url:
        _phase("dimensions", url, root)
        for round_number in range(args.rounds):
            for name in PATHS:
                results[name].append(_phase(name, url, root))
            print(
                f"round {round_number + 1}: "
                + ", ".join(
                    f"{name} {runs[-1]['seconds']:.1f} s" for name, runs in results.items() if runs
                ),
                flush=True,
            )
        pandas = ["--pandas-orders", str(args.pandas_orders)]
        results["pandas"].append(_phase("pandas", url, root, pandas))
    rows = {name: max(run["rows"] for run in runs) for name, runs in results.items()}
    rows["raw"] = rows["schema"]
    seconds = {
        name: statistics.median(run["seconds"] for run in runs) for name, runs in results.items()
    }
    rate = {name: rows[name] / seconds[name] for name in results}
    print(
        f"\none hour of {rows['project']:,} loaded orders, medians of {args.rounds} rounds"
        f" (pandas: {rows['pandas']:,} rows, one round)"
    )
    print(f"{'path':44} {'s':>7} {'rows/s':>9} {'vs raw COPY':>12} {'vs schema COPY':>15}")
    labels = {
        "raw": "raw COPY, PK only",
        "schema": "COPY into fact_order's columns and indexes",
        "project": "this project (file to commit)",
        "dlt": "dlt merge on order_id, csv loader",
        "pandas": "pandas read_json + to_sql(method='multi')",
    }
    for name, label in labels.items():
        print(
            f"{label:44} {seconds[name]:7.1f} {rate[name]:9,.0f} {rate[name] / rate['raw']:12.2f}"
            f" {rate[name] / rate['schema']:15.2f}"
        )
    print(
        f"\nthis project vs schema COPY: {rate['project'] / rate['schema']:.2f}x (target >= 0.7x);"
        f" vs dlt: {rate['project'] / rate['dlt']:.2f}x (target >= 5x)"
    )
    peak = max(run["peak_rss_mb"] for run in results["project"])
    print(f"peak RSS of this project's load: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
