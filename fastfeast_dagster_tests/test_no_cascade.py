"""A full generated day through `fastfeast ingest`, as a user runs it: every delivered fact lands.

A member with one bad descriptive value loads repaired, so nothing that references it becomes an
orphan; the only orphans are references to keys that no delivered file holds. Counts per file
are exactly the manifest's, and replaying the day changes no byte of any table.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster_tests.commands import fresh_environment, run_command
from fastfeast_dagster_tests.outcomes import (
    assert_files_load_as_expected,
    assert_orphans_reference_no_delivered_key,
)

DAY = dt.date(2026, 3, 2)


@pytest.fixture(scope="module")
def day() -> Iterator[tuple[dict[str, str], Manifest, str]]:
    """A fresh embedded server and data root holding master, one batch day and its 24 hours,
    ingested once; (environment, manifest, warehouse URL)."""
    state = Path(tempfile.mkdtemp(prefix="ffcascade", dir="/tmp"))
    env = fresh_environment(state)
    manifest = generate(Path(env["FASTFEAST_DATA_DIR"]), DAY)
    try:
        result = run_command(env, "fastfeast", "ingest", timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        url = run_command(env, "fastfeast", "db", "url").stdout.strip()
        yield env, manifest, url
    finally:
        run_command(env, "fastfeast", "db", "stop")
        shutil.rmtree(state, ignore_errors=True)


def _query(url: str, text: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(text).fetchall()


def test_every_file_loads_exactly_what_the_manifest_expects(
    day: tuple[dict[str, str], Manifest, str],
) -> None:
    env, manifest, url = day
    assert_files_load_as_expected(url, Path(env["FASTFEAST_DATA_DIR"]), manifest)


def test_the_only_orphans_reference_keys_in_no_file(
    day: tuple[dict[str, str], Manifest, str], contract: Contract
) -> None:
    env, manifest, url = day
    assert_orphans_reference_no_delivered_key(url, Path(env["FASTFEAST_DATA_DIR"]), contract)
    waiting = _query(
        url,
        "SELECT raw_data ->> 'order_id' FROM quarantine WHERE source_table = 'fact_order'"
        " AND rejection_rule = 'foreign_key' AND rejection_column = 'customer_id'"
        " AND superseded_at IS NULL AND resolved_at IS NULL",
    )
    # Tomorrow's customers are in no file of this day: their orders wait for them.
    assert set(manifest.late_parent_orders) <= {order for (order,) in waiting}


def test_orders_of_repaired_members_load_and_repairs_are_masked(
    day: tuple[dict[str, str], Manifest, str], contract: Contract
) -> None:
    _, manifest, url = day
    customers = manifest.repaired_members["customers"]
    restaurants = manifest.repaired_members["restaurants"]
    ((orders,),) = _query(
        url,
        f"SELECT count(*) FROM fact_order WHERE customer_id = ANY(ARRAY{customers})"
        f" OR restaurant_id = ANY(ARRAY{restaurants})",
    )
    assert orders > 0, "facts reference members that loaded repaired"
    placeholder = contract.repair.placeholder
    for table, column, raw, repaired_to, value in _query(
        url,
        "SELECT r.source_table, r.repair_column, r.raw_value, r.repaired_to,"
        " CASE r.repair_column WHEN 'full_name' THEN c.full_name WHEN 'email' THEN c.email"
        " WHEN 'phone' THEN c.phone WHEN 'gender' THEN c.gender END"
        " FROM value_repair r JOIN dim_customer c ON c._source_file = r.source_path"
        " AND c._source_row = r.source_row WHERE r.superseded_at IS NULL",
    ):
        assert value == repaired_to and repaired_to in (None, placeholder), (table, column)
        if contract.sources["customers"].columns[column].pii:
            assert raw is None or (len(raw) == 64 and raw.isalnum()), column


def _dump(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            table: [row for (row,) in conn.execute(f"SELECT t::text FROM {table} t ORDER BY 1")]
            for table in tables
        }


def test_replaying_the_day_changes_no_byte(day: tuple[dict[str, str], Manifest, str]) -> None:
    env, _, url = day
    before = _dump(url)
    # Every file re-delivered with the same bytes: the sensors see new file times and re-run
    # every partition.
    for path in Path(env["FASTFEAST_DATA_DIR"]).rglob("*.*"):
        os.utime(path)
    result = run_command(env, "fastfeast", "ingest", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "nothing new" not in result.stdout
    assert _dump(url) == before
