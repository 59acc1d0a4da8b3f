"""Fault injection: real processes interrupted at known points heal with no manual step.

One embedded server and data root for the module, as a user has them. The state before the hour
(the master snapshot and a batch day, loaded by `fastfeast ingest`) is kept as template databases;
each case starts from it, loads the hour as a user does, is interrupted at a point where a lock of
the test holds the load (`faults.py`: no sleeps, no luck), and must then reach exactly the state
of an uninterrupted run: every table's row count and content digest, the open quarantine and the
current file log included. The batch day carries a customers row that lost a field and an
agents file without its header, so the PII scan at the end has something to find if masking
ever misses.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql

from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster.warehouse.embedded import drop_database
from fastfeast_dagster_tests import faults
from fastfeast_dagster_tests.commands import BIN, free_port, fresh_environment, run_command

DAY = dt.date(2026, 3, 2)
HOUR = f"{DAY}-10:00"
FACTS = "fact_order, fact_ticket, fact_ticket_event"
DATABASES = ("fastfeast", "dagster")
# The daemon checks its sensors every 5 s and they tick at most every 10 s.
TWO_TICKS_SECONDS = 2 * (10 + 5)
DEV = ("fastfeast", "dev", "--port", str(free_port()))


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


def _damage_the_batch_day(batch: Path) -> None:
    """Keep two of the day's files: customers with one row short of a field (its e-mail address
    moves under another column's name), agents without the header row."""
    for path in batch.iterdir():
        if path.name not in ("customers.csv", "agents.csv"):
            path.unlink()
    customers = (batch / "customers.csv").read_text().splitlines()
    fields = customers[2].split(",")
    customers[2] = ",".join(fields[:1] + fields[2:])
    (batch / "customers.csv").write_text("\n".join(customers) + "\n")
    agents = (batch / "agents.csv").read_text().splitlines()
    (batch / "agents.csv").write_text("\n".join(agents[1:]) + "\n")


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    state = Path(tempfile.mkdtemp(prefix="fffault", dir="/tmp"))
    env = fresh_environment(state)
    incoming = state / "incoming"
    manifest = generate(incoming, DAY, hours=[10], scale=0.2)
    data = Path(env["FASTFEAST_DATA_DIR"])
    shutil.copytree(incoming / "master", data / "master")
    shutil.copytree(incoming / "input" / "batch", data / "input" / "batch")
    _damage_the_batch_day(data / "input" / "batch" / str(DAY))
    world = World(state, env, manifest)
    try:
        before = world.run("fastfeast", "ingest")
        assert before.returncode == 0, before.stdout + before.stderr[-3000:]
        assert "2 run(s), 0 failed" in before.stdout
        world.keep_as_template()
        # The hour arrives after the template: every case loads it as new.
        shutil.copytree(incoming / "input" / "stream", data / "input" / "stream")
        time.sleep(6)  # past the settle window, so that no case waits for it
        yield world
    finally:
        world.run("fastfeast", "db", "stop")
        shutil.rmtree(state, ignore_errors=True)


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


@pytest.fixture(scope="module")
def clean(world: World) -> dict[str, tuple[int, str]]:
    """The state an uninterrupted `fastfeast ingest` of the hour reaches."""
    world.restore()
    done = world.run("fastfeast", "ingest")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert _runs_of_the_hour(done.stdout) == [f"ok: {FACTS}"]
    state = digest(world.url())
    assert state["fact_order"][0] == world.manifest.tables["fact_order"]["expected_rows"]
    return state


def _runs_of_the_hour(stdout: str) -> list[str]:
    """`ok: <tables>` or `FAILED: <tables>` for each run of the hour that `ingest` printed."""
    found = re.findall(rf"^  (ok|FAILED) +{HOUR}  (.+?)  \(run ", stdout, flags=re.MULTILINE)
    return [f"{state}: {tables}" for state, tables in found]


@pytest.mark.parametrize("point", ["copy", "upsert", "between tables"])
def test_a_killed_ingest_heals_with_one_more_ingest(
    world: World, clean: dict[str, tuple[int, str]], point: str
) -> None:
    world.restore()
    url = world.url()
    table = "fact_ticket" if point == "between tables" else "fact_order"
    with psycopg.connect(url, autocommit=True) as holder:
        if point == "between tables":
            # The hour's orders commit; its tickets load waits for the partition's lock.
            faults.hold_partition(holder, table, HOUR)
        else:
            with psycopg.connect(url) as setup:
                faults.install_pause(setup, table, point)
            faults.hold(holder)
        ingest = world.start("fastfeast", "ingest")
        load = faults.blocked_load(url, table)
        assert load.client_pid == ingest.pid
        os.kill(ingest.pid, signal.SIGKILL)
        ingest.wait(30)
        seconds = faults.seconds_until_gone(url, load.backend_pid)
        faults.release(holder)
    assert seconds < 5, f"the killed load held its locks for {seconds:.1f} s"
    if point != "between tables":
        with psycopg.connect(url) as conn:
            faults.remove_pause(conn, table)
    healed = world.run("fastfeast", "ingest")
    assert healed.returncode == 0, healed.stdout + healed.stderr[-3000:]
    # Only what did not commit is loaded again.
    expected = "fact_ticket, fact_ticket_event" if point == "between tables" else FACTS
    assert _runs_of_the_hour(healed.stdout) == [f"ok: {expected}"]
    assert digest(url) == clean
    if point == "copy":
        assert "nothing new to ingest" in world.run("fastfeast", "ingest").stdout


def test_a_server_stopped_mid_run_ends_in_one_line_and_the_next_ingest_heals(
    world: World, clean: dict[str, tuple[int, str]]
) -> None:
    world.restore()
    url = world.url()
    holder = psycopg.connect(url, autocommit=True)
    faults.hold_partition(holder, "fact_ticket", HOUR)
    ingest = world.start("fastfeast", "ingest")
    faults.blocked_load(url, "fact_ticket")
    stopped = world.run("fastfeast", "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    ingest.wait(180)
    holder.close()
    out, err = world.output("fastfeast", "ingest")
    assert ingest.returncode == 1, out + err[-3000:]
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1, out
    assert re.search(
        rf"FAILED {HOUR}  {FACTS}  \(run \w{{8}}\): warehouse unreachable at"
        r" postgresql://postgres@/fastfeast\?host=\S+, will retry$",
        failed[0],
    ), failed[0]
    assert "Traceback" not in out + err
    healed = world.run("fastfeast", "ingest")  # starts the embedded server again
    assert healed.returncode == 0, healed.stdout + healed.stderr[-3000:]
    assert _runs_of_the_hour(healed.stdout) == ["ok: fact_ticket, fact_ticket_event"]
    assert digest(url) == clean


def _dagster_query(world: World, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(world.url("dagster")) as conn:
        return conn.execute(query).fetchall()


def test_a_killed_run_worker_under_fastfeast_dev_heals_within_two_sensor_ticks(
    world: World, clean: dict[str, tuple[int, str]]
) -> None:
    world.restore()
    url = world.url()
    with psycopg.connect(url) as setup:
        faults.install_pause(setup, "fact_order", "copy")
    holder = psycopg.connect(url, autocommit=True)
    faults.hold(holder)
    dev = world.start(*DEV)
    try:
        # The daemon's stream sensor launches the hour; its run worker waits in the COPY.
        load = faults.blocked_load(url, "fact_order", timeout=400)
        worker = psutil.Process(load.client_pid)
        assert worker.pid != dev.pid and dev.pid in [p.pid for p in worker.parents()]
        worker.kill()
        seconds = faults.seconds_until_gone(url, load.backend_pid)
        faults.release(holder)
        holder.close()
        with psycopg.connect(url) as conn:
            faults.remove_pause(conn, "fact_order")
        # The re-run, and the run it took up (failed by the code server that saw its worker die).
        runs = (
            "SELECT retry.status, failed.status, extract(epoch FROM retry.create_timestamp"
            " - failed.update_timestamp) FROM runs retry JOIN run_tags t ON t.run_id ="
            " retry.run_id AND t.key = 'fastfeast/retry_of' JOIN runs failed ON failed.run_id ="
            " t.value"
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            found = _dagster_query(world, runs)
            if found and found[0][0] in ("SUCCESS", "FAILURE"):
                break
            time.sleep(2)
        assert found and found[0][0] == "SUCCESS", (found, world.output(*DEV)[0][-3000:])
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(150)
    assert seconds < 5, f"the killed run worker's load held its locks for {seconds:.1f} s"
    ((_, failed, delay),) = found
    assert failed == "FAILURE"
    assert float(delay) < TWO_TICKS_SECONDS, f"re-run requested {float(delay):.0f} s after"
    assert digest(url) == clean


def test_no_clear_pii_value_is_stored_or_logged_anywhere(world: World) -> None:
    """Every text and jsonb column of the warehouse (file log and quarantine included) and
    Dagster's event log, after the cases above: none holds a clear value the generator wrote."""
    clear = sorted(
        {
            value
            for columns in world.manifest.pii_clear_values.values()
            for values in columns.values()
            for value in values
        },
        key=len,
        reverse=True,
    )
    assert len(clear) > 100
    pattern = re.compile("|".join(map(re.escape, clear)))
    found: list[tuple[str, str]] = []
    with psycopg.connect(world.url()) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type IN ('text', 'jsonb', 'character varying')"
        ).fetchall()
        for table, column in columns:
            values = conn.execute(
                sql.SQL("SELECT DISTINCT {}::text FROM {}").format(
                    sql.Identifier(column), sql.Identifier(table)
                )
            ).fetchall()
            found += [(f"{table}.{column}", v) for (v,) in values if v and pattern.search(v)]
    events = _dagster_query(world, "SELECT event FROM event_logs")
    assert len(events) > 100
    found += [("event_logs", e) for (e,) in events if pattern.search(str(e))]
    assert found == []
    # The damaged rows are there, masked: the scan looked where the values would be.
    with psycopg.connect(world.url()) as conn:
        rules = dict(
            conn.execute(
                "SELECT rejection_rule, count(*) FROM quarantine WHERE superseded_at IS NULL"
                " AND rejection_rule IN ('field_count', 'header_not_names') GROUP BY 1"
            ).fetchall()
        )
    assert rules["field_count"] == 1 and rules["header_not_names"] > 1
