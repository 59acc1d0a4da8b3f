"""Benchmark: read + validate + mask + load a large customers file, against raw COPY.

    python benchmarks/bench_dimension_load.py [--rows 1000000] [--repeat 1]

Both measurements run in the same process against the same embedded PostgreSQL, so the ratio is
meaningful on any machine: the pipeline's rows/s divided by a plain psycopg `COPY` of the same
file's CSV bytes into a table with the same primary key. Target (issue 3): ratio >= 0.25.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from fastfeast_dagster.settings import load_contract
from fastfeast_dagster.validation.prepare import PartitionFile, prepare_batch
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database
from fastfeast_dagster.warehouse.load import load_batch

HEADER = "customer_id,full_name,email,phone,region_id,segment_id,signup_date,gender,created_at,updated_at"


def write_customers(path: Path, rows: int, seed: int = 7) -> None:
    """A customers.csv of `rows` rows, ~1 % of them defective, built column-wise with numpy."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, rows + 1)
    phones = np.char.add("010", np.char.zfill(rng.integers(0, 10**8, rows).astype(str), 8))
    emails = np.char.add(np.char.add("user", ids.astype(str)), "@example.com")
    emails[rng.random(rows) < 0.005] = "notanemail"
    regions = rng.integers(1, 19, rows).astype(str)
    regions[rng.random(rows) < 0.01] = ""
    segments = rng.integers(1, 3, rows).astype(str)
    days = rng.integers(0, 2000, rows)
    signup = np.datetime_as_string(np.datetime64("2019-01-01") + days, unit="D")
    created = np.char.add(signup, " 00:00:00")
    genders = np.array(["male", "female"])[rng.integers(0, 2, rows)]
    names = np.char.add("Customer ", ids.astype(str))
    columns = [
        ids.astype(str),
        names,
        emails,
        phones,
        regions,
        segments,
        signup,
        genders,
        created,
        created,
    ]
    lines = columns[0]
    for column in columns[1:]:
        lines = np.char.add(np.char.add(lines, ","), column)
    path.write_text(HEADER + "\n" + "\n".join(lines.tolist()) + "\n")


def raw_copy(url: str, path: Path) -> float:
    columns = HEADER.split(",")
    ddl = ", ".join(
        f"{name} {'integer PRIMARY KEY' if name == 'customer_id' else 'text'}" for name in columns
    )
    data = path.read_bytes()
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_copy")
        conn.execute(f"CREATE TABLE bench_raw_copy ({ddl})")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY bench_raw_copy FROM STDIN (FORMAT csv, HEADER)") as copy,
        ):
            for start in range(0, len(data), 1 << 20):
                copy.write(data[start : start + (1 << 20)])
        conn.commit()
        return time.perf_counter() - started


def pipeline_load(url: str, path: Path, root: Path) -> tuple[float, dict[str, float], int, int]:
    contract = load_contract()
    with psycopg.connect(url) as conn:
        apply_schema(conn, contract)
        conn.execute("TRUNCATE dim_customer, quarantine, pipeline_file_log CASCADE")
        for region in range(1, 19):
            conn.execute(
                "INSERT INTO dim_city VALUES (1, 'Cairo', 'Egypt', 'Africa/Cairo', 'b', 1, 'p', 'r')"
                " ON CONFLICT DO NOTHING"
            )
            conn.execute(
                "INSERT INTO dim_region VALUES (%s, 'r', 1, 10, 'b', 1, 'p', 'r') ON CONFLICT DO NOTHING",
                (region,),
            )
        for segment, name in [(1, "Regular"), (2, "VIP")]:
            conn.execute(
                "INSERT INTO dim_segment VALUES (%s, %s, 0, false, 'b', 1, 'p', 'r') ON CONFLICT DO NOTHING",
                (segment, name),
            )
        conn.commit()
        phases: dict[str, float] = {}
        started = time.perf_counter()
        batch = prepare_batch(
            "customers",
            [PartitionFile(path, "batch", "2026-03-02")],
            contract,
            root,
            b"benchmark-key",
        )
        phases["read+validate+mask"] = time.perf_counter() - started
        loading = time.perf_counter()
        report = load_batch(conn, contract, batch, asset_key="dim_customer", run_id="bench")
        phases["load (COPY, orphan check, upsert, quarantine, file log)"] = (
            time.perf_counter() - loading
        )
        return time.perf_counter() - started, phases, report.rows_loaded, report.rows_quarantined


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ffbench", dir="/tmp"))
    server = EmbeddedPostgres(work / "state")
    try:
        (work / "state").mkdir()
        server.start()
        create_database(server.url("postgres"), "bench")
        url = server.url("bench")
        path = work / "customers.csv"
        write_customers(path, args.rows)
        for attempt in range(1, args.repeat + 1):
            baseline = raw_copy(url, path)
            total, phases, loaded, quarantined = pipeline_load(url, path, work)
            print(
                f"\nrun {attempt}: {args.rows:,} customers ({path.stat().st_size / 1e6:.0f} MB CSV)"
            )
            print(f"{'measurement':58} {'seconds':>8} {'rows/s':>10}")
            print(
                f"{'raw psycopg COPY into a PK table (baseline)':58} {baseline:8.2f} {args.rows / baseline:10,.0f}"
            )
            for phase, seconds in phases.items():
                print(f"{'  ' + phase:58} {seconds:8.2f}")
            print(
                f"{'pipeline: read + validate + mask + load':58} {total:8.2f} {args.rows / total:10,.0f}"
            )
            print(
                f"loaded {loaded:,}, quarantined {quarantined:,} (read = loaded + quarantined: "
                f"{loaded + quarantined == args.rows})"
            )
            print(f"ratio to raw COPY: {baseline / total:.2f}x  (target >= 0.25x)")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
