"""Warehouse DDL, derived from the contract.

Source tables get their columns, keys and foreign keys from `config/pipeline.yaml`; the tables
no source file describes are written out in `fixed_tables.py`. Applying the schema is idempotent
and runs in one transaction under an advisory lock: every statement either succeeds or the whole
apply fails loudly, never statement by statement with errors swallowed.

Existing tables gain columns that the contract adds (`ADD COLUMN IF NOT EXISTS`), so adding a
column is a config change; a column adopted from schema drift is filled, in the same
transaction, from the values its rows rescued (`drift.py`). Nothing is ever dropped
automatically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from fastfeast_dagster.batch import LINEAGE_COLUMNS, RESCUED, RESCUED_COLUMN
from fastfeast_dagster.contract import Contract, Reference, SourceSpec, TableColumn
from fastfeast_dagster.warehouse.drift import fill_adopted
from fastfeast_dagster.warehouse.fixed_tables import (
    FILL_DIM_DATE,
    FILL_DIM_TIME,
    FIXED_COLUMNS,
    FIXED_TABLES,
)
from fastfeast_dagster.warehouse.sla import sla_statements

# Held while the schema is applied, so concurrent run workers do not race each other's DDL.
_SCHEMA_LOCK_ID = 0x0FA57FEA57


def _definition(column: TableColumn) -> sql.Composable:
    return sql.SQL("{} {}{}{}").format(
        sql.Identifier(column.name),
        sql.SQL(column.type.sql),
        sql.SQL("" if column.nullable else " NOT NULL"),
        sql.SQL(f" DEFAULT {column.default}" if column.default else ""),
    )


def _index_name(spec: SourceSpec, column: str) -> str:
    return f"idx_{spec.table}_{column.lstrip('_')}"


def _source_table_statements(
    contract: Contract, source: str, catalog: _Catalog
) -> list[sql.Composable]:
    """What this table lacks: the whole table, or the columns and indexes added since."""
    spec = contract.sources[source]
    schema = contract.warehouse.schema_name
    table = sql.Identifier(schema, spec.table)
    columns = contract.table_columns(source)
    statements: list[sql.Composable] = []
    if spec.table not in catalog.relations:
        definitions = [_definition(column) for column in [*columns, RESCUED, *LINEAGE_COLUMNS]]
        definitions.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier(spec.primary_key)))
        statements.append(
            sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(definitions))
        )
    else:
        # Columns added to the contract after the table exists. NOT NULL cannot be added to a
        # table that already has rows without a default, so evolved columns start nullable.
        statements += [
            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                table, sql.Identifier(column.name), sql.SQL(column.type.sql)
            )
            for column in [*columns, RESCUED]
            if (spec.table, column.name) not in catalog.columns
        ]
        # A required column whose bad values now repair to NULL (the contract's policy changed)
        # may hold NULL from now on; tightening the other way is never done automatically.
        statements += [
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
                table, sql.Identifier(column.name)
            )
            for column in columns
            if column.nullable and (spec.table, column.name) in catalog.not_null
        ]
    declared = {_index_name(spec, index.column): index for index in spec.indexes}
    statements += [
        sql.SQL("CREATE INDEX {} ON {} USING {} ({})").format(
            sql.Identifier(name), table, sql.SQL(index.using), sql.Identifier(index.column)
        )
        for name, index in declared.items()
        if name not in catalog.relations
    ]
    # An index the contract no longer declares costs every load and serves nobody: ours go
    # (they hold no data); one named otherwise was made by hand and is left alone.
    statements += [
        sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name))
        for table_name, name in sorted(catalog.indexes)
        if table_name == spec.table
        and name.startswith(f"idx_{spec.table}_")
        and name not in declared
    ]
    return statements


@dataclass(frozen=True)
class _Catalog:
    """What the warehouse schema already holds (names of relations, columns, constraints)."""

    schema_exists: bool
    relations: frozenset[str]
    columns: frozenset[tuple[str, str]]
    not_null: frozenset[tuple[str, str]]
    indexes: frozenset[tuple[str, str]]  # (table, index) besides primary keys
    foreign_keys: frozenset[str]
    calendar_rows: tuple[int, int]


def _read_catalog(cur: psycopg.Cursor, schema: str) -> _Catalog:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cur.fetchone() is None:
        return _Catalog(
            False, frozenset(), frozenset(), frozenset(), frozenset(), frozenset(), (0, 0)
        )
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s",
        (schema,),
    )
    relations = frozenset(row[0] for row in cur.fetchall())
    cur.execute(
        "SELECT table_name, column_name, is_nullable = 'NO' FROM information_schema.columns"
        " WHERE table_schema = %s",
        (schema,),
    )
    found = cur.fetchall()
    columns = frozenset((row[0], row[1]) for row in found)
    not_null = frozenset((row[0], row[1]) for row in found if row[2])
    cur.execute(
        "SELECT t.relname, i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = %s AND NOT x.indisprimary",
        (schema,),
    )
    indexes = frozenset((row[0], row[1]) for row in cur.fetchall())
    cur.execute(
        "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
        " WHERE n.nspname = %s AND c.contype = 'f'",
        (schema,),
    )
    keys = frozenset(row[0] for row in cur.fetchall())
    calendar = (0, 0)
    if {"dim_date", "dim_time"} <= relations:
        cur.execute(
            sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
                sql.Identifier(schema, "dim_date"), sql.Identifier(schema, "dim_time")
            )
        )
        row = cur.fetchone()
        calendar = (int(row[0]), int(row[1])) if row else (0, 0)
    return _Catalog(True, relations, columns, not_null, indexes, keys, calendar)


def _history_table_statements(
    contract: Contract, source: str, catalog: _Catalog
) -> list[sql.Composable]:
    """The dimension's history table (SCD type 2), or the tracked columns it lacks.

    A version is a member's tracked attributes over the days [valid_from, valid_to); the open
    one (valid_to NULL) is current, and a partial unique index keeps that to one per member.
    """
    spec = contract.sources[source]
    if spec.history is None:
        return []
    table = sql.Identifier(contract.warehouse.schema_name, spec.history_table)
    stored = {column.name: column for column in contract.table_columns(source)}
    tracked = [stored[name] for name in spec.history.track]
    key = stored[spec.primary_key]
    if spec.history_table in catalog.relations:
        return [
            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                table, sql.Identifier(column.name), sql.SQL(column.type.sql)
            )
            for column in tracked
            if (spec.history_table, column.name) not in catalog.columns
        ]
    columns = [
        _definition(key),
        *(_definition(TableColumn(column.name, column.type)) for column in tracked),
        sql.SQL("valid_from date NOT NULL"),
        sql.SQL("valid_to date"),
        sql.SQL("is_current boolean GENERATED ALWAYS AS (valid_to IS NULL) STORED"),
        *(_definition(column) for column in LINEAGE_COLUMNS),
        sql.SQL("PRIMARY KEY ({}, valid_from)").format(sql.Identifier(key.name)),
        sql.SQL("CHECK (valid_to IS NULL OR valid_to > valid_from)"),
    ]
    name = spec.history_table
    return [
        sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns)),
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}) WHERE valid_to IS NULL").format(
            sql.Identifier(f"{name}_one_current"), table, sql.Identifier(key.name)
        ),
        # The check of a day reads the versions of the members that day changed.
        sql.SQL("CREATE INDEX {} ON {} (_partition_key)").format(
            sql.Identifier(f"{name}_partition_key"), table
        ),
        sql.SQL("COMMENT ON TABLE {} IS {}").format(
            table,
            sql.Literal(
                f"versions of {spec.table}'s members: {', '.join(spec.history.track)} as they"
                " were from valid_from until valid_to (exclusive; NULL = still current)"
            ),
        ),
    ]


def pending_statements(
    contract: Contract, catalog: _Catalog, connection: psycopg.Connection
) -> list[sql.Composable]:
    """The statements that bring the warehouse from `catalog` to the contract, in order."""
    schema = contract.warehouse.schema_name
    ident = sql.Identifier(schema).as_string(connection)
    statements: list[sql.Composable] = []
    if not catalog.schema_exists:
        statements.append(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    # Each fixed script runs as one multi-statement execute (no parameters, so psycopg allows it).
    statements += [
        sql.SQL(script.format(schema=ident))  # type: ignore[arg-type]
        for table, script in FIXED_TABLES.items()
        if table not in catalog.relations
    ]
    statements += [
        sql.SQL("ALTER TABLE {} ADD COLUMN {} " + definition).format(  # type: ignore[arg-type]
            sql.Identifier(schema, table), sql.Identifier(column)
        )
        for (table, column), definition in FIXED_COLUMNS.items()
        if table in catalog.relations and (table, column) not in catalog.columns
    ]
    for name in contract.load_order():
        statements += _source_table_statements(contract, name, catalog)
        statements += _history_table_statements(contract, name, catalog)
    statements += [
        _foreign_key_statement(schema, ref)
        for ref in contract.relations.references
        if ref.constraint_name not in catalog.foreign_keys
    ]
    days = (contract.calendar.last_date - contract.calendar.first_date).days + 1
    if catalog.calendar_rows != (days, 24 * 60):
        calendar = {"first": contract.calendar.first_date, "last": contract.calendar.last_date}
        statements.append(
            sql.SQL(FILL_DIM_DATE.format(schema=ident)).format(  # type: ignore[arg-type]
                **{name: sql.Literal(value) for name, value in calendar.items()}
            )
        )
        statements.append(sql.SQL(FILL_DIM_TIME.format(schema=ident)))  # type: ignore[arg-type]
    statements += sla_statements(contract, catalog.relations)
    return statements


class SchemaBusy(RuntimeError):
    """The schema change could not take its locks while loads kept the tables busy."""


# How long one attempt of a schema change may wait for a lock before it steps back and retries.
_LOCK_WAIT = "2s"


def apply_schema(
    conn: psycopg.Connection, contract: Contract, *, give_up_after: float = 600.0
) -> int:
    """Create or evolve the warehouse in one transaction; returns the statements executed.

    An up-to-date warehouse costs a catalog read and takes no lock: every run worker calls this,
    and an `ALTER TABLE` (even a no-op one) would queue behind running loads and deadlock them.
    A real change waits for running loads a couple of seconds at a time and retries, instead of
    waiting in their lock queue: a queued ACCESS EXCLUSIVE request holds up every later reader
    of the table, and a load that holds one table while it waits for the next could deadlock
    with it. Any failed statement fails the whole apply, loudly.
    """
    deadline = time.monotonic() + give_up_after
    while True:
        try:
            return _apply_once(conn, contract)
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() >= deadline:
                raise SchemaBusy(
                    f"the warehouse schema change could not take its locks within"
                    f" {give_up_after:.0f} s: loads kept the tables busy; it is retried when"
                    " the next run starts, or run `fastfeast db start` once they are done"
                ) from None
            time.sleep(1)


def _apply_once(conn: psycopg.Connection, contract: Contract) -> int:
    schema = contract.warehouse.schema_name
    with conn.transaction(), conn.cursor() as cur:
        if not pending_statements(contract, _read_catalog(cur, schema), conn):
            return 0
        cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(_LOCK_WAIT)))
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
        # Another process may have applied it while we waited for the lock.
        catalog = _read_catalog(cur, schema)
        statements = pending_statements(contract, catalog, conn)
        for statement in statements:
            cur.execute(statement)
        fill_adopted(cur, contract, adopted_columns(contract, catalog))
        cur.execute("SET LOCAL lock_timeout TO DEFAULT")
    return len(statements)


def adopted_columns(contract: Contract, catalog: _Catalog) -> list[tuple[str, str]]:
    """(source, column) of the contract columns this apply adds to a table that rescues values:
    what an operator adopted since the last apply."""
    return [
        (source, name)
        for source, spec in contract.sources.items()
        if (spec.table, RESCUED_COLUMN) in catalog.columns
        for name in spec.columns
        if (spec.table, name) not in catalog.columns
    ]


def _foreign_key_statement(schema: str, ref: Reference) -> sql.Composable:
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
        sql.Identifier(schema, ref.child_table),
        sql.Identifier(ref.constraint_name),
        sql.Identifier(ref.column),
        sql.Identifier(schema, ref.parent_table),
        sql.Identifier(ref.parent_column),
    )
