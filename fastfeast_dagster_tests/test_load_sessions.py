"""A killed load frees its locks at once: the server notices its client is gone.

A real process loads a real file and is held at a known point by a lock this test holds; it is
then killed with SIGKILL, and the load's backend (its partition's advisory lock, its SHARE locks
on the parent tables) must be gone within 5 s, not after its statement would have finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.batch import PartitionFile
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.load import load_batch
from fastfeast_dagster_tests import faults
from fastfeast_dagster_tests.test_bad_inputs import PARENTLESS_ORDER

HOUR = "2026-03-02-10:00"
# Loads one orders file as the IO manager does, in a process of its own.
LOADER = """
import sys
from pathlib import Path

import psycopg

from fastfeast_dagster.batch import PartitionFile
from fastfeast_dagster.contract import load_contract
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.load import load_batch

url, path, partition = sys.argv[1:]
contract = load_contract()
file = PartitionFile(Path(path), "stream", partition)
batch = prepare_batch("orders", [file], contract, Path(path).parent, b"key")
with psycopg.connect(url) as conn:
    load_batch(conn, contract, batch, asset_key="fact_order", run_id="killed")
"""


def _orders(count: int) -> list[dict[str, object]]:
    return [
        {"order_id": f"3f2b8c1e-1a2b-4c3d-8e9f-{index:012d}", **PARENTLESS_ORDER}
        for index in range(count)
    ]


@pytest.fixture
def schema(warehouse_url: str, contract: Contract) -> Iterator[str]:
    with psycopg.connect(warehouse_url) as conn:
        apply_schema(conn, contract)
    yield warehouse_url


def _start_load(url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(_orders(2000)))
    return subprocess.Popen([sys.executable, "-c", LOADER, url, str(path), HOUR])


@pytest.mark.parametrize("where", ["copy", "parent locks", "upsert"])
def test_a_killed_load_frees_its_locks_within_five_seconds(
    schema: str, tmp_path: Path, where: str
) -> None:
    with psycopg.connect(schema, autocommit=True) as holder:
        if where == "parent locks":
            # A writer of a parent table holds off the load's SHARE lock on it.
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE dim_customer IN ROW EXCLUSIVE MODE")
        else:
            with psycopg.connect(schema) as setup:
                faults.install_pause(setup, "fact_order", where)
            faults.hold(holder)
        loader = _start_load(schema, tmp_path)
        try:
            load = faults.blocked_load(schema, "fact_order")
            assert load.client_pid == loader.pid
            held = faults.locks_of(schema, load.backend_pid)
            assert ("advisory", True) in held  # the partition's lock, taken first
            os.kill(loader.pid, signal.SIGKILL)
            loader.wait(30)
            seconds = faults.seconds_until_gone(schema, load.backend_pid)
        finally:
            if loader.poll() is None:
                loader.kill()
        assert seconds < 5, f"the killed load's backend held its locks for {seconds:.1f} s"
        # The partition is free for the next load at once.
        assert holder.execute(
            "SELECT pg_try_advisory_lock(hashtextextended('fact_order|' || %s, 0))", (HOUR,)
        ).fetchone() == (True,)
        holder.execute("ROLLBACK" if where == "parent locks" else "SELECT pg_advisory_unlock_all()")
    with psycopg.connect(schema) as conn:
        if where != "parent locks":
            faults.remove_pause(conn, "fact_order")
        assert conn.execute("SELECT count(*) FROM fact_order").fetchone() == (0,)


def test_the_guards_hold_for_the_load_transaction_only(
    schema: str, contract: Contract, tmp_path: Path
) -> None:
    """After the load its own connection, like Dagster's storage and every other session, has
    the server's settings back."""
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(_orders(3)))
    batch = prepare_batch("orders", [PartitionFile(path, "stream", HOUR)], contract, tmp_path, b"k")
    with psycopg.connect(schema) as conn:
        load_batch(conn, contract, batch, asset_key="fact_order", run_id="guarded")
        settings = conn.execute(
            "SELECT current_setting('client_connection_check_interval'),"
            " current_setting('idle_in_transaction_session_timeout'),"
            " current_setting('application_name')"
        ).fetchone()
        assert conn.execute("SELECT count(*) FROM fact_order").fetchone() == (3,)
    assert settings == ("0", "0", "")
