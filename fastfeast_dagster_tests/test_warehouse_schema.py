"""The warehouse DDL on a real PostgreSQL: idempotent, transactional, faithful to the contract."""

from __future__ import annotations

import copy
import threading
import time

import psycopg
import pytest

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.warehouse.ddl import SchemaBusy, apply_schema

LINEAGE = {"_source_file", "_source_row", "_partition_key", "_run_id", "_loaded_at", "_rescued"}


def _catalog(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Tables, columns, constraints, indexes and calendar counts: a fingerprint of the schema."""
    return {
        "columns": conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall(),
        "constraints": conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall(),
        "indexes": conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " ORDER BY 1, 2"
        ).fetchall(),
        "calendar": conn.execute(
            "SELECT (SELECT count(*) FROM dim_date), (SELECT count(*) FROM dim_time)"
        ).fetchall(),
    }


def test_applying_twice_changes_nothing(conn: psycopg.Connection, contract: Contract) -> None:
    apply_schema(conn, contract)
    first = _catalog(conn)
    apply_schema(conn, contract)
    assert _catalog(conn) == first
    days = (contract.calendar.last_date - contract.calendar.first_date).days + 1
    assert first["calendar"] == [(days, 1440)]


def test_every_source_table_has_the_contract_columns_and_lineage(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    for spec in contract.sources.values():
        rows = conn.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s",
            (spec.table,),
        ).fetchall()
        columns = dict(rows)
        assert set(columns) == set(spec.columns) | set(spec.derived) | LINEAGE, spec.table
        # NOT NULL where a bad value cannot end up NULL: it rejects its row or takes the
        # placeholder; a required column whose bad values repair to NULL may hold NULL.
        source = contract.table_sources[spec.table]
        stored = {column.name: column for column in contract.table_columns(source)}
        policies = contract.value_policies(source)
        for name, column in spec.columns.items():
            not_null = not column.nullable and policies[name].keeps_not_null
            assert (columns[name] == "NO") == not_null == (not stored[name].nullable), name
        (primary_key,) = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (spec.table,),
        ).fetchone()
        assert primary_key == spec.primary_key


def test_foreign_key_graph_matches_the_contract(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    actual = set(
        conn.execute(
            """
            SELECT child.relname, child_col.attname, parent.relname, parent_col.attname
            FROM pg_constraint c
            JOIN pg_class child ON child.oid = c.conrelid
            JOIN pg_class parent ON parent.oid = c.confrelid
            JOIN pg_attribute child_col
              ON child_col.attrelid = c.conrelid AND child_col.attnum = c.conkey[1]
            JOIN pg_attribute parent_col
              ON parent_col.attrelid = c.confrelid AND parent_col.attnum = c.confkey[1]
            WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
            """
        ).fetchall()
    )
    expected = {("true_orphan", "quarantine_id", "quarantine", "quarantine_id")}
    for spec in contract.sources.values():
        for fk in spec.foreign_keys:
            parent = contract.sources[fk.references]
            expected.add((spec.table, fk.column, parent.table, parent.primary_key))
        for name, derived in spec.derived.items():
            if derived.kind in ("date_key", "time_key"):
                calendar = "dim_date" if derived.kind == "date_key" else "dim_time"
                expected.add((spec.table, name, calendar, derived.kind))
    assert actual == expected


def _source_indexes(conn: psycopg.Connection, tables: list[str]) -> set[tuple[str, str, str]]:
    """(table, column, method) of every index of these tables but their primary keys."""
    return set(
        conn.execute(
            "SELECT t.relname, a.attname, m.amname FROM pg_index i"
            " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class x ON x.oid = i.indexrelid"
            " JOIN pg_am m ON m.oid = x.relam"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE t.relnamespace = 'public'::regnamespace AND NOT i.indisprimary"
            " AND t.relname = ANY(%s)",
            (tables,),
        ).fetchall()
    )


def test_the_tables_have_exactly_the_indexes_the_contract_declares(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    tables = [spec.table for spec in contract.sources.values()]
    declared = {
        (spec.table, index.column, index.using)
        for spec in contract.sources.values()
        for index in spec.indexes
    }
    assert _source_indexes(conn, tables) == declared
    # The decision: the FKs that analysts filter on or children join through are indexed,
    # the low-cardinality lookups are not (their FKs are still declared and enforced).
    assert ("fact_order", "customer_id", "btree") in declared
    assert ("fact_ticket", "order_id", "btree") in declared
    assert not {(t, c) for t, c, _ in declared} & {
        ("fact_order", "region_id"),
        ("dim_customer", "segment_id"),
        ("fact_ticket", "priority_id"),
    }


def test_an_index_the_contract_drops_goes_and_one_made_by_hand_stays(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    conn.execute("CREATE INDEX idx_fact_order_region_id ON fact_order (region_id)")
    conn.execute("CREATE INDEX analysts_orders_by_status ON fact_order (order_status)")
    conn.commit()
    apply_schema(conn, contract)
    found = {column for _, column, _ in _source_indexes(conn, ["fact_order"])}
    assert "region_id" not in found and "order_status" in found


def test_operational_tables_keep_the_reference_column_names(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)

    def columns(table: str) -> set[str]:
        return {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
            )
        }

    assert {"source_table", "rejection_stage", "rejection_reason", "raw_data", "source_file"} <= (
        columns("quarantine")
    )
    assert {"rejection_rule", "rejection_column", "source_row", "partition_key", "run_id"} <= (
        columns("quarantine")
    )
    assert {"superseded_at", "resolved_at"} <= columns("quarantine")
    assert {
        "total_records",
        "valid_records",
        "quarantined",
        "duplicate_count",
        "orphan_count",
        "status",
        "file_hash",
    } <= columns("pipeline_file_log")
    assert {"unresolved_fk", "first_seen_at", "retry_count", "quarantine_id"} <= columns(
        "true_orphan"
    )
    types = dict(
        conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE column_name IN ('quarantined_at', 'processed_at', '_loaded_at')"
        ).fetchall()
    )
    assert set(types.values()) == {"timestamp with time zone"}
    # The reference's documented audit query runs unchanged.
    conn.execute(
        "SELECT file_name, status, total_records, valid_records, quarantined FROM pipeline_file_log"
        " WHERE status = 'failed' ORDER BY processed_at DESC"
    )


def test_file_log_refuses_counts_that_do_not_reconcile(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO pipeline_file_log (file_path, file_name, file_type, source_table, status,"
            " total_records, valid_records, quarantined, asset_key, partition_key, run_id)"
            " VALUES ('a', 'a.csv', 'batch', 'dim_team', 'success', 10, 7, 2, 'dim_team', 'p', 'r')"
        )


def test_a_failing_statement_fails_loudly_and_applies_nothing(
    conn: psycopg.Connection, contract: Contract
) -> None:
    # A view squatting on a table name: CREATE TABLE IF NOT EXISTS skips it, the ALTER then fails.
    conn.execute("CREATE VIEW dim_team AS SELECT 1 AS team_id")
    conn.commit()
    with pytest.raises(psycopg.errors.WrongObjectType):
        apply_schema(conn, contract)
    conn.rollback()
    (tables,) = conn.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    ).fetchone()
    assert tables == 0


def test_a_column_added_to_the_contract_is_added_to_the_table(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    conn.execute(
        "INSERT INTO dim_team (team_id, team_name, _source_file, _source_row,"
        " _partition_key, _run_id) VALUES (1, 'Refunds', 'teams.csv', 1, 'p', 'r')"
    )
    conn.commit()
    spec = contract.sources["teams"]
    evolved_columns = {
        **spec.columns,
        "team_lead": spec.columns["team_name"].model_copy(update={"nullable": False}),
    }
    evolved = copy.deepcopy(contract).model_copy(
        update={
            "sources": {
                **contract.sources,
                "teams": spec.model_copy(update={"columns": evolved_columns}),
            }
        }
    )
    apply_schema(conn, evolved)
    row = conn.execute("SELECT team_name, team_lead FROM dim_team").fetchone()
    assert row == ("Refunds", None)


def _with_team_lead(contract: Contract) -> Contract:
    spec = contract.sources["teams"]
    columns = {**spec.columns, "team_lead": spec.columns["team_name"]}
    return copy.deepcopy(contract).model_copy(
        update={
            "sources": {**contract.sources, "teams": spec.model_copy(update={"columns": columns})}
        }
    )


def test_a_schema_change_steps_back_for_running_loads_instead_of_queueing_before_readers(
    warehouse_url: str, contract: Contract
) -> None:
    """A queued ALTER would hold up every later reader of the table until the load ends."""
    with psycopg.connect(warehouse_url) as conn:
        apply_schema(conn, contract)
    evolved = _with_team_lead(contract)
    with psycopg.connect(warehouse_url) as load, psycopg.connect(warehouse_url) as migrate:
        migrate.execute("SET statement_timeout = '10s'")  # fail, not hang, if it queues
        migrate.commit()
        load.execute("SELECT count(*) FROM dim_team")  # a running load reads the table
        with pytest.raises(SchemaBusy, match="loads kept the tables busy"):
            apply_schema(migrate, evolved, give_up_after=0.1)
        migration = threading.Thread(target=apply_schema, args=(migrate, evolved))
        migration.start()
        time.sleep(0.5)
        with psycopg.connect(warehouse_url) as reader:
            # Waits out at most one of the migration's short attempts, not the whole load.
            reader.execute("SET lock_timeout = '5s'")
            for _ in range(3):
                reader.execute("SELECT count(*) FROM dim_team")
                reader.rollback()
                time.sleep(1)
        load.rollback()
        migration.join(30)
        assert not migration.is_alive()
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT team_lead FROM dim_team").fetchall() == []


def test_a_warehouse_with_the_old_sla_materialized_view_gets_the_state_and_views(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    # The layout before the SLA state: a materialized view named ticket_sla, nothing else.
    conn.execute("DROP VIEW v_ticket_sla_performance")
    conn.execute("DROP VIEW ticket_sla")
    conn.execute("DROP TABLE ticket_sla_state")
    conn.execute("CREATE MATERIALIZED VIEW ticket_sla AS SELECT ticket_id FROM fact_ticket")
    conn.commit()
    assert apply_schema(conn, contract) > 0
    kinds = dict(
        conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relname IN ('ticket_sla', 'ticket_sla_state', 'v_ticket_sla_performance')"
        ).fetchall()
    )
    assert kinds == {"ticket_sla": "v", "ticket_sla_state": "r", "v_ticket_sla_performance": "v"}
    # And then it is up to date: nothing more to apply.
    assert apply_schema(conn, contract) == 0
