"""Bad inputs, materialized for real: each ends as a file rejection, quarantined rows, or rows
that load with their bad descriptive values repaired and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

DAY = "2026-03-02"


def _write(data_dir: Path, name: str, content: bytes) -> None:
    folder = data_dir / "input" / "batch" / DAY
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


CASES = [
    # (case, file, content, status, stage, rule, total, loaded, quarantine rows)
    (
        "missing column",
        "teams.csv",
        b"team_id\n1\n2\n",
        "failed",
        "file",
        "missing_columns",
        2,
        0,
        2,
    ),
    (
        "extra column",
        "teams.csv",
        b"team_id,team_name,lead\n1,A,x\n",
        "failed",
        "file",
        "extra_columns",
        1,
        0,
        1,
    ),
    ("empty file", "teams.csv", b"", "failed", "file", "empty_file", 0, 0, 1),
    ("header-only CSV", "teams.csv", b"team_id,team_name\n", "success", None, None, 0, 0, 0),
    ("empty JSON array", "cities.json", b"[]", "success", None, None, 0, 0, 0),
    (
        "truncated JSON",
        "cities.json",
        b'[{"city_id": 1, "city_name": "Cairo", "coun',
        "failed",
        "file",
        "malformed_json",
        0,
        0,
        1,
    ),
    (
        "non-UTF-8 bytes",
        "teams.csv",
        b"team_id,team_name\n1,Caf\xe9\n",
        "failed",
        "file",
        "not_utf8",
        0,
        0,
        1,
    ),
    (
        "a key that is not a number",
        "segments.csv",
        b"segment_id,segment_name,discount_pct,priority_support\n1,Regular,0,false\nx,VIP,5,true\n",
        "success",
        "schema",
        "type",
        2,
        1,
        1,
    ),
    (
        "duplicate key, different content",
        "teams.csv",
        b"team_id,team_name\n1,A\n1,B\n",
        "success",
        "records",
        "duplicate",
        2,
        1,
        1,
    ),
]
TABLES = {"teams.csv": "dim_team", "cities.json": "dim_city", "segments.csv": "dim_segment"}


@pytest.mark.parametrize(
    ("case", "file", "content", "status", "stage", "rule", "total", "loaded", "quarantined"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_rejected_or_quarantined(
    data_dir: Path,
    materialize,  # type: ignore[no-untyped-def]
    warehouse_url: str,
    case: str,
    file: str,
    content: bytes,
    status: str,
    stage: str | None,
    rule: str | None,
    total: int,
    loaded: int,
    quarantined: int,
) -> None:
    _write(data_dir, file, content)
    table = TABLES[file]
    result = materialize([table], DAY)
    assert result.success, case
    with psycopg.connect(warehouse_url) as conn:
        log = conn.execute(
            "SELECT status, total_records, valid_records, quarantined, error_message"
            " FROM pipeline_file_log WHERE file_name = %s",
            (file,),
        ).fetchall()
        assert len(log) == 1
        assert log[0][:4] == (status, total, loaded, total - loaded)
        if status == "failed":
            assert log[0][4], "a failed file says why"
        rows = conn.execute(
            "SELECT rejection_stage, rejection_rule, rejection_reason, source_table, raw_data"
            " FROM quarantine WHERE superseded_at IS NULL"
        ).fetchall()
        assert len(rows) == quarantined
        assert all((row[0], row[1]) == (stage, rule) for row in rows)
        assert all(row[3] == table and row[2] for row in rows)
        (in_table,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert in_table == loaded


def test_a_missing_file_fails_the_step_with_a_clear_error(data_dir: Path, materialize) -> None:  # type: ignore[no-untyped-def]
    result = materialize(["dim_team"], DAY, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("dim_team")
    assert failure is not None
    assert "no source file for the partition" in failure.error.message


def _orders(data_dir: Path, content: bytes) -> None:
    folder = data_dir / "input" / "stream" / DAY / "10"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.json").write_bytes(content)


def test_a_rejected_redelivery_keeps_the_partition_it_would_replace(
    data_dir: Path,
    materialize,
    warehouse_url: str,  # type: ignore[no-untyped-def]
) -> None:
    order = {
        "customer_id": None,
        "restaurant_id": None,
        "driver_id": None,
        "region_id": None,
        "order_amount": 10.0,
        "delivery_fee": 2.0,
        "discount_amount": 0.0,
        "total_amount": 12.0,
        "order_status": "Pending",
        "payment_method": "cash",
        "order_created_at": f"{DAY} 10:05:00",
        "delivered_at": None,
    }
    ids = ["3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e50"]
    _orders(data_dir, json.dumps([{"order_id": i, **order} for i in ids]).encode())
    assert materialize(["fact_order"], f"{DAY}-10:00").success
    # The same hour re-delivered, cut off while being written.
    _orders(data_dir, b'[{"order_id": "3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "customer_id": nu')
    assert materialize(["fact_order"], f"{DAY}-10:00").success
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM fact_order").fetchone() == (2,)
        status = conn.execute(
            "SELECT status FROM pipeline_file_log WHERE superseded_at IS NULL"
        ).fetchall()
        assert status == [("failed",)]


def test_a_missing_pii_value_stays_null(data_dir: Path, materialize, warehouse_url: str) -> None:  # type: ignore[no-untyped-def]
    _write(
        data_dir,
        "customers.csv",
        b"customer_id,full_name,email,phone,region_id,segment_id,signup_date,gender,created_at,"
        b"updated_at\n1,Ola,,N/A,,,2024-01-02,female,,\n2,Omar,o@x.io,01012345678,,,,,,\n",
    )
    assert materialize(["dim_customer"], DAY).success
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute("SELECT email, phone FROM dim_customer ORDER BY customer_id").fetchall()
    assert rows[0] == (None, None)
    assert all(len(value) == 64 for value in rows[1])


def test_a_bad_descriptive_value_is_repaired_recorded_and_masked(
    data_dir: Path,
    materialize,
    warehouse_url: str,  # type: ignore[no-untyped-def]
) -> None:
    _write(
        data_dir,
        "customers.csv",
        b"customer_id,full_name,email,phone,region_id,segment_id,signup_date,gender,created_at,"
        b"updated_at\n"
        b"1,,notanemail,01012345678,,,2024-01-02,female,,\n"
        # An email shifted into `gender`: repaired, and never kept in clear anywhere.
        b"2,Omar,,,,,2024-01-02,omar.ali@gmail.com,,\n",
    )
    assert materialize(["dim_customer"], DAY).success
    with psycopg.connect(warehouse_url) as conn:
        members = conn.execute(
            "SELECT customer_id, full_name, email, gender FROM dim_customer ORDER BY 1"
        ).fetchall()
        log = conn.execute(
            "SELECT total_records, valid_records, quarantined, repaired FROM pipeline_file_log"
        ).fetchall()
        repairs = conn.execute(
            "SELECT source_row, repair_stage, repair_rule, repair_column, raw_value, repaired_to"
            " FROM value_repair WHERE superseded_at IS NULL ORDER BY source_row, repair_column"
        ).fetchall()
        dumped = conn.execute("SELECT string_agg(v::text, ' ') FROM value_repair v").fetchone()
    assert members == [(1, "Unknown", None, "female"), (2, "Omar", None, None)]
    assert log == [(2, 2, 0, 2)]
    assert [row[:4] for row in repairs] == [
        (1, "records", "format", "email"),
        (1, "schema", "not_null", "full_name"),
        (2, "schema", "allowed_values", "gender"),
    ]
    assert [row[5] for row in repairs] == [None, "Unknown", None]
    email, missing_name, gender = (row[4] for row in repairs)
    assert len(email) == 64 and len(gender) == 64  # masked tokens
    assert missing_name == ""  # the empty cell the file carried
    assert "notanemail" not in dumped[0] and "omar.ali" not in dumped[0]
