"""A user's world for fault injection: an embedded server, a data root, `fastfeast` commands, the
warehouse and Dagster's storage kept as template databases to start every case from, and a
content digest to compare the state a case reaches with an uninterrupted run's.

Used by `test_fault_injection.py` and by the longer drill, `tools/fault_drill.py`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster.warehouse.embedded import drop_database
from fastfeast_dagster_tests import faults
from fastfeast_dagster_tests.commands import BIN, free_port, fresh_environment, run_command

DATABASES = ("fastfeast", "dagster")


@dataclass
class World:
    state: Path
    env: dict[str, str]
    manifest: Manifest
    warehouse_url: str = ""  # the embedded server's socket stays where it is across restarts

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return run_command(self.env, *args, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """A command in the background; its output goes to files (a full pipe would stall it)."""
        name = "-".join(args[1:])
        return subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            env=self.env,
            stdout=(self.state / f"{name}.out").open("w"),
            stderr=(self.state / f"{name}.err").open("w"),
            text=True,
            start_new_session=True,
        )

    def output(self, *args: str) -> tuple[str, str]:
        name = "-".join(args[1:])
        return (self.state / f"{name}.out").read_text(), (self.state / f"{name}.err").read_text()

    def url(self, database: str = "fastfeast") -> str:
        if not self.warehouse_url:
            self.warehouse_url = self.run("fastfeast", "db", "url").stdout.strip()
        return self.warehouse_url.replace("/fastfeast?", f"/{database}?")

    def keep_as_template(self) -> None:
        admin = self.url("postgres")
        for name in DATABASES:
            drop_database(admin, f"template_{name}")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(f"template_{name}"), sql.Identifier(name)
                    )
                )

    def restore(self) -> None:
        """The warehouse and Dagster's storage as they were before the hour."""
        assert self.run("fastfeast", "db", "start").returncode == 0
        admin = self.url("postgres")
        for name in DATABASES:
            drop_database(admin, name)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(f"template_{name}")
                    )
                )


def digest(url: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of the ordered content of every table the pipeline writes (lineage of
    the run excluded), the open quarantine and the current file log."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " AND (table_name LIKE 'dim\\_%%' OR table_name LIKE 'fact\\_%%')"
            " AND column_name NOT IN ('_run_id', '_loaded_at') GROUP BY table_name"
        ).fetchall()
        selections = {
            table: sql.SQL("SELECT ROW({}) FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
            )
            for table, columns in tables
        }
        selections["quarantine"] = sql.SQL(
            "SELECT ROW(source_path, source_row, rejection_stage, rejection_rule,"
            " rejection_column, rejection_reason, reasons, raw_data, partition_key, asset_key,"
            " resolved_at IS NULL) FROM quarantine WHERE superseded_at IS NULL"
        )
        selections["pipeline_file_log"] = sql.SQL(
            "SELECT ROW(file_path, file_hash, status, rejection_stage, error_message,"
            " total_records, valid_records, quarantined, duplicate_count, orphan_count,"
            " asset_key, partition_key) FROM pipeline_file_log WHERE superseded_at IS NULL"
        )
        result = {}
        for name, selection in selections.items():
            count, md5 = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text),"
                    " '')) FROM ({}) AS s(r)"
                ).format(selection)
            ).fetchone()
            result[name] = (int(count), str(md5))
    return result


def prepare_world(state: Path, day: dt.date, *, hour: int, scale: float) -> World:
    """Generated files under `state`; the master snapshot and `day`'s batch loaded by `fastfeast
    ingest` and kept as the template; then `hour`'s stream files delivered, not yet loaded.

    The batch day keeps two files, damaged: customers with one row short of a field (its e-mail
    address moves under another column's name), agents without their header row, so that a PII
    scan of the result has something to find if masking ever misses.
    """
    env = fresh_environment(state)
    incoming = state / "incoming"
    manifest = generate(incoming, day, hours=[hour], scale=scale)
    data = Path(env["FASTFEAST_DATA_DIR"])
    shutil.copytree(incoming / "master", data / "master")
    batch = data / "input" / "batch" / str(day)
    shutil.copytree(incoming / "input" / "batch" / str(day), batch)
    for path in batch.iterdir():
        if path.name not in ("customers.csv", "agents.csv"):
            path.unlink()
    customers = (batch / "customers.csv").read_text().splitlines()
    fields = customers[2].split(",")
    customers[2] = ",".join(fields[:1] + fields[2:])
    (batch / "customers.csv").write_text("\n".join(customers) + "\n")
    agents = (batch / "agents.csv").read_text().splitlines()
    (batch / "agents.csv").write_text("\n".join(agents[1:]) + "\n")
    world = World(state, env, manifest)
    before = world.run("fastfeast", "ingest", timeout=3600)
    # The master, the batch day, the calendar tables and the due orphan promotion.
    if before.returncode != 0 or "4 run(s), 0 failed" not in before.stdout:
        raise RuntimeError(f"loading the master and batch day failed:\n{before.stdout}")
    world.keep_as_template()
    shutil.copytree(incoming / "input" / "stream", data / "input" / "stream")
    time.sleep(6)  # past the settle window, so that no case waits for it
    return world


def kill_held_ingest(
    world: World, point: str, partition: str
) -> tuple[faults.BlockedLoad, int, float]:
    """Start `fastfeast ingest`, hold its load of `partition` at `point` (`copy` or `upsert` of the
    orders, or `between tables`: the orders commit, the tickets wait), SIGKILL it there.

    Returns the load it held, the killed process's pid and how long the load's backend then kept
    its locks; the pause is gone afterwards, so the next load runs through.
    """
    url = world.url()
    table = "fact_ticket" if point == "between tables" else "fact_order"
    with psycopg.connect(url, autocommit=True) as holder:
        if point == "between tables":
            faults.hold_partition(holder, table, partition)
        else:
            with psycopg.connect(url) as setup:
                faults.install_pause(setup, table, point)
            faults.hold(holder)
        ingest = world.start("fastfeast", "ingest")
        load = faults.blocked_load(url, table, timeout=3600)
        os.kill(ingest.pid, signal.SIGKILL)
        ingest.wait(60)
        seconds = faults.seconds_until_gone(url, load.backend_pid, timeout=120)
        faults.release(holder)
    if point != "between tables":
        with psycopg.connect(url) as conn:
            faults.remove_pause(conn, table)
    return load, ingest.pid, seconds


@dataclass(frozen=True)
class WorkerKill:
    worker_pid: int
    dev_pid: int
    ancestors: tuple[int, ...]  # of the killed worker
    seconds: float  # how long its load's backend then kept its locks
    # The re-run's status, the status of the run it took up, and the seconds between that run's
    # failure and the re-run's creation (run storage's own clock); None if none finished.
    retry: tuple[str, str, float] | None


# The retry sensor's re-run and the failed run it took up.
_RETRY = (
    "SELECT retry.status, failed.status, extract(epoch FROM retry.create_timestamp"
    " - failed.update_timestamp) FROM runs retry JOIN run_tags t ON t.run_id = retry.run_id"
    " AND t.key = 'fastfeast/retry_of' JOIN runs failed ON failed.run_id = t.value"
)


def kill_run_worker_under_dev(world: World, timeout: float = 300) -> WorkerKill:
    """Start `fastfeast dev`, hold the run worker its daemon launches for the hour inside the
    orders COPY, SIGKILL that worker, let the load go and wait for the retry sensor's re-run."""
    url = world.url()
    with psycopg.connect(url) as setup:
        faults.install_pause(setup, "fact_order", "copy")
    holder = psycopg.connect(url, autocommit=True)
    faults.hold(holder)
    dev = world.start("fastfeast", "dev", "--port", str(free_port()))
    retry = None
    try:
        load = faults.blocked_load(url, "fact_order", timeout=timeout + 100)
        worker = psutil.Process(load.client_pid)
        ancestors = tuple(parent.pid for parent in worker.parents())
        worker.kill()
        seconds = faults.seconds_until_gone(url, load.backend_pid, timeout=120)
        faults.release(holder)
        holder.close()
        with psycopg.connect(url) as conn:
            faults.remove_pause(conn, "fact_order")
        deadline = time.monotonic() + timeout
        with psycopg.connect(world.url("dagster"), autocommit=True) as conn:
            while time.monotonic() < deadline and retry is None:
                found = conn.execute(_RETRY).fetchone()
                if found and found[0] in ("SUCCESS", "FAILURE"):
                    retry = (str(found[0]), str(found[1]), float(found[2]))
                time.sleep(2)
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(300)
    return WorkerKill(worker.pid, dev.pid, ancestors, seconds, retry)
