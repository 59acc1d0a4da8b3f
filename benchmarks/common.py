"""Shared benchmark plumbing: a throwaway embedded server, the raw-COPY baseline, a result table."""

from __future__ import annotations

import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql

from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database


@contextmanager
def benchmark_database(settings: dict[str, str] | None = None) -> Iterator[str]:
    """A fresh embedded PostgreSQL in a temp dir, with one database; stopped afterwards.

    `settings` override the embedded server's own (ALTER SYSTEM, then a restart).
    """
    with benchmark_server() as server:
        if settings:
            with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
                for name, value in settings.items():
                    conn.execute(
                        sql.SQL("ALTER SYSTEM SET {} = {}").format(
                            sql.Identifier(name), sql.Literal(value)
                        )
                    )
            server.stop()
            server.start()
        create_database(server.url("postgres"), "bench")
        yield server.url("bench")


@contextmanager
def benchmark_server() -> Iterator[EmbeddedPostgres]:
    """A fresh embedded PostgreSQL in a temp dir (a short path: its Unix socket lives there)."""
    work = Path(tempfile.mkdtemp(prefix="ffbench", dir="/tmp"))
    server = EmbeddedPostgres(work)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as headerless CSV, the way a producer would hand the rows to COPY."""
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False))
    return buffer.getvalue()


def raw_copy_seconds(
    url: str, columns: list[str], primary_key: str, data: bytes, repeats: int = 3
) -> float:
    """Baseline: plain psycopg COPY of the CSV bytes into a text table with the same key.

    The median of `repeats` loads into a fresh table: a single COPY on a shared machine varied
    by a third between runs, and the ratio moved with it.
    """
    definitions = sql.SQL(", ").join(
        sql.SQL("{} text{}").format(
            sql.Identifier(name), sql.SQL(" PRIMARY KEY" if name == primary_key else "")
        )
        for name in columns
    )
    times = []
    with psycopg.connect(url) as conn:
        for _ in range(repeats):
            conn.execute("DROP TABLE IF EXISTS bench_raw_copy")
            conn.execute(sql.SQL("CREATE TABLE bench_raw_copy ({})").format(definitions))
            conn.commit()
            started = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy("COPY bench_raw_copy FROM STDIN (FORMAT csv)") as copy,
            ):
                for start in range(0, len(data), 1 << 20):
                    copy.write(data[start : start + (1 << 20)])
            conn.commit()
            times.append(time.perf_counter() - started)
        conn.execute("DROP TABLE bench_raw_copy")
        conn.commit()
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, rows: list[tuple[str, float | None, float | None]]) -> None:
    print(f"\n{title}")
    print(f"{'measurement':62} {'seconds':>8} {'rows/s':>11}")
    for name, seconds, rate in rows:
        shown_seconds = f"{seconds:8.2f}" if seconds is not None else " " * 8
        shown_rate = f"{rate:11,.0f}" if rate is not None else ""
        print(f"{name:62} {shown_seconds} {shown_rate}")


def print_stages(stages: dict[str, float]) -> None:
    """Where the pipeline's time went, stage by stage (prepare stages, then load stages)."""
    print(f"\n{'stage':62} {'seconds':>8} {'share':>11}")
    total = sum(stages.values()) or 1.0
    for name, seconds in stages.items():
        print(f"  {name:60} {seconds:8.2f} {seconds / total:11.0%}")


def run_phase(script: str, *args: str) -> Any:
    """One phase of a benchmark in a process of its own (its peak RSS its own, its imports
    fresh): `script` run with `args`; the JSON its last output line holds."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
