"""Rows read back for the checks are the rows stored: nulls, empty strings, odd text, types."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import psycopg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.readback import read_rows

LINEAGE = "'f', 1, 'p1', 'r'"


def test_values_survive_the_round_trip(conn: psycopg.Connection, contract: Contract) -> None:
    apply_schema(conn, contract)
    # Text that CSV readers like to take for null, an empty string next to a real NULL, a
    # quote and a line break, booleans and a missing integer.
    conn.execute(
        "INSERT INTO dim_segment (segment_id, segment_name, discount_pct, priority_support,"
        f" _source_file, _source_row, _partition_key, _run_id) VALUES"
        f" (1, '#N/A', NULL, true, {LINEAGE}), (2, '', 5, NULL, {LINEAGE}),"
        f" (3, 'say \"hi\",' || chr(10) || 'NaN', 0, false, {LINEAGE})"
    )
    frame = read_rows(conn, contract, "segments", ["p1"])
    frame = frame.sort_values("segment_id").reset_index(drop=True)

    assert frame["segment_id"].tolist() == [1, 2, 3]
    assert frame["segment_name"].tolist() == ["#N/A", "", 'say "hi",\nNaN']
    assert frame["discount_pct"].isna().tolist() == [True, False, False]
    assert frame["discount_pct"].iloc[1:].tolist() == [5, 0]
    assert frame["priority_support"].tolist() == [True, None, False]
    assert frame["_loaded_at"].dt.tz is not None


def test_timestamps_numbers_and_an_empty_partition(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    conn.execute("SET TIME ZONE 'Asia/Tokyo'")  # the session's zone must not shift anything
    conn.execute(
        "INSERT INTO fact_order (order_id, payment_method, order_created_at, delivered_at,"
        " order_amount, date_key, time_key, _source_file, _source_row, _partition_key, _run_id)"
        " VALUES ('a', 'card', '2026-03-02 19:05:00.25', NULL, 12.5, 20260302, 1905,"
        f" {LINEAGE}), ('b', 'cash', '2026-03-02 19:59:59', '2026-03-02 20:30:00', NULL,"
        f" 20260302, 1959, {LINEAGE})"
    )
    _, loaded_at = conn.execute("SELECT now(), now() AT TIME ZONE 'UTC'").fetchone()

    frame = read_rows(conn, contract, "orders", ["p1"]).sort_values("order_id")

    assert frame["order_created_at"].tolist() == [
        pd.Timestamp("2026-03-02 19:05:00.25"),
        pd.Timestamp("2026-03-02 19:59:59"),
    ]
    assert frame["delivered_at"].isna().tolist() == [True, False]
    assert frame["order_amount"].iloc[0] == 12.5 and pd.isna(frame["order_amount"].iloc[1])
    assert frame["_loaded_at"].iloc[0] == pd.Timestamp(loaded_at, tz=dt.UTC)
    empty = read_rows(conn, contract, "orders", ["none"])
    assert empty.empty and list(empty.columns) == list(frame.columns)


def test_line_breaks_in_text_beyond_one_parser_block(
    conn: psycopg.Connection, contract: Contract
) -> None:
    """Arrow parses CSV in 1 MB blocks; a quoted line break must not split a row."""
    apply_schema(conn, contract)
    conn.execute(
        "INSERT INTO dim_segment (segment_id, segment_name, _source_file, _source_row,"
        " _partition_key, _run_id) SELECT n, repeat('line' || chr(10), 20) || n, 'f', n, 'p1', 'r'"
        " FROM generate_series(1, 30000) AS n"
    )

    frame = read_rows(conn, contract, "segments", ["p1"])

    assert len(frame) == 30000
    assert (frame["segment_name"] == "line\n" * 20 + frame["segment_id"].astype(str)).all()
