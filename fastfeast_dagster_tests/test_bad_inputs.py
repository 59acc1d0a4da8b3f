"""Bad inputs, materialized for real: each ends as a file rejection, quarantined rows, or rows
that load with their bad descriptive values repaired and recorded."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest

DAY = "2026-03-02"


def _write(data_dir: Path, name: str, content: bytes) -> None:
    folder = data_dir / "input" / "batch" / DAY
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


CASES = [
    # (case, file, content, status, stage, rule, total, loaded, quarantine rows)
    # Schema drift under the default policy (validation/drift.py): a missing nullable column
    # loads as NULL, an unknown one is rescued; a missing key rejects the file.
    ("missing nullable column", "teams.csv", b"team_id\n1\n2\n", "success", None, None, 2, 2, 0),
    (
        "missing key column",
        "teams.csv",
        b"team_name\nA\nB\n",
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
        "success",
        None,
        None,
        1,
        1,
        0,
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


def _cities(*fields: str) -> bytes:
    """A cities.json of one good record (Giza) and one whose fields are given as JSON text."""
    good = '{"city_id": 1, "city_name": "Giza", "country": "Egypt", "timezone": "Africa/Cairo"}'
    other = ", ".join(
        [*fields, '"country": "Egypt"', '"timezone": "Africa/Cairo"']
        if not any(field.startswith('"country"') for field in fields)
        else fields
    )
    return f"[{good}, {{{other}}}]".encode()


# Issue 13, points 3-5: each input and the verdict it must end with.
CASES += [
    (
        "short CSV row",
        "teams.csv",
        b"team_id,team_name\n1,A\n2\n3,C\n",
        "success",
        "file",
        "field_count",
        3,
        2,
        1,
    ),
    (
        "a ,,, line",
        "teams.csv",
        b"team_id,team_name\n1,A\n,,,\n3,C\n",
        "success",
        "file",
        "field_count",
        3,
        2,
        1,
    ),
    (
        "truncated last row",
        "teams.csv",
        b"team_id,team_name\n1,A\n2,B\n3",
        "success",
        "file",
        "field_count",
        3,
        2,
        1,
    ),
    (
        "NUL in a JSON string",
        "cities.json",
        _cities('"city_id": 2', '"city_name": "Cai\\u0000ro"'),
        "success",
        "file",
        "nul_character",
        2,
        1,
        1,
    ),
    (
        "lone surrogate",
        "cities.json",
        _cities('"city_id": 2', '"city_name": "\\ud83d"'),
        "success",
        "file",
        "invalid_unicode",
        2,
        1,
        1,
    ),
    (
        "4,301-digit integer",
        "cities.json",
        _cities(f'"city_id": {"7" * 4301}', '"city_name": "Cairo"'),
        "success",
        "schema",
        "type",
        2,
        1,
        1,
    ),
    (
        "100k-deep nesting",
        "cities.json",
        _cities('"city_id": 2', f'"city_name": {"[" * 100_000}{"]" * 100_000}'),
        "success",
        "file",
        "too_deeply_nested",
        2,
        1,
        1,
    ),
    (
        "JSON record with an extra key",
        "cities.json",
        _cities('"city_id": 2', '"city_name": "Cairo"', '"lead": "x"'),
        "success",
        None,
        None,
        2,
        2,
        0,
    ),
    (
        "duplicate JSON key",
        "cities.json",
        _cities('"city_id": 2', '"city_name": "Cairo"', '"city_name": "Suez"'),
        "success",
        "file",
        "duplicate_key",
        2,
        1,
        1,
    ),
    (
        "JSON with a UTF-8 BOM",
        "cities.json",
        b"\xef\xbb\xbf" + _cities('"city_id": 2', '"city_name": "Cairo"'),
        "success",
        None,
        None,
        2,
        2,
        0,
    ),
    (
        "header names with spaces and in other case",
        "teams.csv",
        b" Team_ID , TEAM_NAME \n1,A\n",
        "success",
        None,
        None,
        1,
        1,
        0,
    ),
    (
        "duplicate columns",
        "teams.csv",
        b"team_id,Team_Id\n1,2\n3,4\n",
        "failed",
        "file",
        "duplicate_columns",
        2,
        0,
        2,
    ),
    (
        "JSON cut off after a complete record",
        "cities.json",
        _cities('"city_id": 2', '"city_name": "Cairo"')[:-30],
        "failed",
        "file",
        "malformed_json",
        1,
        0,
        1,
    ),
    (
        "CSV without its header row",
        "teams.csv",
        b"1,Refunds\n2,Escalations\n",
        "failed",
        "file",
        "header_not_names",
        2,
        0,
        2,
    ),
]


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


# An order of the hour DAY 10:00 that references no parent: it loads on an empty warehouse.
PARENTLESS_ORDER = {
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


def test_a_rejected_redelivery_keeps_the_partition_it_would_replace(
    data_dir: Path,
    materialize,
    warehouse_url: str,  # type: ignore[no-untyped-def]
) -> None:
    order = PARENTLESS_ORDER
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


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("directory", "not_a_regular_file"),
        ("FIFO", "not_a_regular_file"),
        ("symlink to /etc/passwd", "symlink_outside_data"),
    ],
)
def test_a_file_that_is_not_a_regular_file_in_the_data_root_is_rejected_in_bounded_time(
    data_dir: Path,
    materialize,  # type: ignore[no-untyped-def]
    warehouse_url: str,
    kind: str,
    rule: str,
) -> None:
    folder = data_dir / "input" / "batch" / DAY
    folder.mkdir(parents=True)
    path = folder / "teams.csv"
    {
        "directory": path.mkdir,
        "FIFO": lambda: os.mkfifo(path),
        "symlink to /etc/passwd": lambda: path.symlink_to("/etc/passwd"),
    }[kind]()
    started = time.monotonic()
    assert materialize(["dim_team"], DAY).success
    assert time.monotonic() - started < 120
    with psycopg.connect(warehouse_url) as conn:
        log = conn.execute(
            "SELECT status, total_records, valid_records, quarantined FROM pipeline_file_log"
        ).fetchall()
        rows = conn.execute("SELECT rejection_stage, rejection_rule FROM quarantine").fetchall()
    assert log == [("failed", 0, 0, 0)]
    assert rows == [("file", rule)]


def test_a_failing_table_does_not_stop_the_hours_other_tables(
    data_dir: Path,
    materialize,  # type: ignore[no-untyped-def]
    warehouse_url: str,
) -> None:
    """orders.json is a directory: its verdict is a rejection, the tickets and events load on
    their own (as orphans here: no dimension is loaded)."""
    import datetime as dt

    from fastfeast_dagster.synthetic import generate

    generate(data_dir, dt.date.fromisoformat(DAY), hours=[10], scale=0.2)
    hour = data_dir / "input" / "stream" / DAY / "10"
    (hour / "orders.json").unlink()
    (hour / "orders.json").mkdir()
    facts = ["fact_order", "fact_ticket", "fact_ticket_event"]
    result = materialize(facts, f"{DAY}-10:00")
    assert result.success
    with psycopg.connect(warehouse_url) as conn:
        log = dict(
            conn.execute(
                "SELECT source_table, status || ':' || total_records FROM pipeline_file_log"
            ).fetchall()
        )
    tickets = len((hour / "tickets.csv").read_text().splitlines()) - 1
    events = len(json.loads((hour / "ticket_events.json").read_text()))
    assert log == {
        "fact_order": "failed:0",
        "fact_ticket": f"success:{tickets}",
        "fact_ticket_event": f"success:{events}",
    }


def test_a_headerless_customers_file_quotes_none_of_its_values(
    data_dir: Path, pipeline_env: str
) -> None:
    """Its first data row would be the "header": no message, quarantine row or event quotes it."""
    from fastfeast_dagster.definitions import defs

    rows = [
        "7,Ann Smith,ann.smith@example.com,01012345678,3,1,2025-01-01,female,,",
        "8,Omar Ali,omar.ali@example.org,01112345679,3,1,2025-01-02,male,,",
    ]
    _write(data_dir, "customers.csv", ("\n".join(rows) + "\n").encode())
    keys = [dg.AssetKey("dim_customer")]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    assert job is not None
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, partition_key=DAY, asset_selection=keys)
        # Dagster's event log as stored: events, and the log lines of the run's code.
        events = [dg.serialize_value(entry) for entry in instance.all_logs(result.run_id)]
    assert result.success
    clear = ["ann.smith@example.com", "01012345678", "omar.ali@example.org", "01112345679"]
    clear += ["Ann Smith", "Omar Ali"]
    with psycopg.connect(pipeline_env) as conn:
        ((status, total, error),) = conn.execute(
            "SELECT status, total_records, error_message FROM pipeline_file_log"
        ).fetchall()
        quarantine = conn.execute(
            "SELECT rejection_rule, rejection_reason, reasons::text, raw_data::text FROM quarantine"
        ).fetchall()
    assert (status, total) == ("failed", 2)
    assert [row[0] for row in quarantine] == ["header_not_names"] * 2
    assert any("rejected: the first line does not name the columns" in e for e in events)
    texts = [error, *(value for row in quarantine for value in row), *events]
    assert [value for value in clear if any(value in text for text in texts)] == []
