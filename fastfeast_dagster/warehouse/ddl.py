"""Warehouse DDL, derived from the contract.

Source tables get their columns, keys and foreign keys from `config/pipeline.yaml`; only the
calendar and the operational tables (quarantine, true orphans, file log) are written out here,
because no source file describes them. Applying the schema is idempotent and runs in one
transaction under an advisory lock: every statement either succeeds or the whole apply fails
loudly (the reference swallowed errors statement by statement, §12 A7).

Existing tables gain columns that the contract adds (`ADD COLUMN IF NOT EXISTS`), so adding a
column is a config change. Nothing is ever dropped automatically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from fastfeast_dagster.settings import Contract, SourceSpec
from fastfeast_dagster.warehouse.sla import SLA_VIEW, sla_view_statement

# Held while the schema is applied, so concurrent run workers do not race each other's DDL.
_SCHEMA_LOCK_ID = 0x0FA57FEA57

SQL_TYPES = {
    "int": "integer",
    "float": "numeric",
    "text": "text",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}
DERIVED_SQL_TYPES = {
    "date_key": "integer",
    "time_key": "integer",
    "minutes_between": "numeric(12,2)",
}
CALENDAR_TABLES = {"date_key": ("dim_date", "date_key"), "time_key": ("dim_time", "time_key")}


@dataclass(frozen=True)
class TableColumn:
    name: str
    sql_type: str
    not_null: bool = False
    default: str | None = None

    def definition(self) -> sql.Composable:
        return sql.SQL("{} {}{}{}").format(
            sql.Identifier(self.name),
            sql.SQL(self.sql_type),
            sql.SQL(" NOT NULL" if self.not_null else ""),
            sql.SQL(f" DEFAULT {self.default}" if self.default else ""),
        )


# Lineage carried by every loaded row: where it came from, which partition and run loaded it.
LINEAGE_COLUMNS = [
    TableColumn("_source_file", "text", not_null=True),
    TableColumn("_source_row", "integer", not_null=True),
    TableColumn("_partition_key", "text", not_null=True),
    TableColumn("_run_id", "text", not_null=True),
    TableColumn("_loaded_at", "timestamptz", not_null=True, default="now()"),
]


@dataclass(frozen=True)
class ForeignKeyConstraint:
    table: str
    column: str
    parent_table: str
    parent_column: str

    @property
    def name(self) -> str:
        return f"fk_{self.table}_{self.column}"


def source_columns(spec: SourceSpec) -> list[TableColumn]:
    """The contract columns of a source table, then its derived columns (lineage excluded)."""
    columns = [
        TableColumn(name, SQL_TYPES[column.type], not_null=not column.nullable)
        for name, column in spec.columns.items()
    ]
    columns += [
        TableColumn(name, DERIVED_SQL_TYPES[derived.kind]) for name, derived in spec.derived.items()
    ]
    return columns


def foreign_keys(contract: Contract) -> list[ForeignKeyConstraint]:
    """Every foreign key of the warehouse: the contract's, plus derived date/time keys."""
    constraints: list[ForeignKeyConstraint] = []
    for spec in contract.sources.values():
        for fk in spec.foreign_keys:
            parent = contract.sources[fk.references]
            constraints.append(
                ForeignKeyConstraint(spec.table, fk.column, parent.table, parent.primary_key)
            )
        for name, derived in spec.derived.items():
            if derived.kind in CALENDAR_TABLES:
                parent_table, parent_column = CALENDAR_TABLES[derived.kind]
                constraints.append(
                    ForeignKeyConstraint(spec.table, name, parent_table, parent_column)
                )
    return constraints


def _index_columns(spec: SourceSpec) -> list[str]:
    columns = [fk.column for fk in spec.foreign_keys]
    columns += [name for name, derived in spec.derived.items() if derived.kind in CALENDAR_TABLES]
    if spec.kind == "fact":
        # Facts replace whole partitions; dimensions are only ever upserted by key.
        columns.append("_partition_key")
    return columns


def _index_name(spec: SourceSpec, column: str) -> str:
    return f"idx_{spec.table}_{column.lstrip('_')}"


def _source_table_statements(
    schema: str, spec: SourceSpec, catalog: _Catalog
) -> list[sql.Composable]:
    """What this table lacks: the whole table, or the columns and indexes added since."""
    table = sql.Identifier(schema, spec.table)
    columns = source_columns(spec)
    statements: list[sql.Composable] = []
    if spec.table not in catalog.relations:
        definitions = [column.definition() for column in [*columns, *LINEAGE_COLUMNS]]
        definitions.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier(spec.primary_key)))
        statements.append(
            sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(definitions))
        )
    else:
        # Columns added to the contract after the table exists. NOT NULL cannot be added to a
        # table that already has rows without a default, so evolved columns start nullable.
        statements += [
            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                table, sql.Identifier(column.name), sql.SQL(column.sql_type)
            )
            for column in columns
            if (spec.table, column.name) not in catalog.columns
        ]
    statements += [
        sql.SQL("CREATE INDEX {} ON {} ({})").format(
            sql.Identifier(_index_name(spec, column)), table, sql.Identifier(column)
        )
        for column in _index_columns(spec)
        if _index_name(spec, column) not in catalog.relations
    ]
    return statements


_CALENDAR_DDL = """
CREATE TABLE {schema}.dim_date (
    date_key integer PRIMARY KEY,
    full_date date NOT NULL UNIQUE,
    year smallint NOT NULL,
    quarter smallint NOT NULL,
    month smallint NOT NULL,
    month_name text NOT NULL,
    iso_week smallint NOT NULL,
    day_of_week smallint NOT NULL,
    day_of_month smallint NOT NULL,
    day_of_year smallint NOT NULL,
    day_name text NOT NULL,
    is_weekend boolean NOT NULL
);
COMMENT ON COLUMN {schema}.dim_date.day_of_week IS 'ISO day of week: Monday = 1 … Sunday = 7';
CREATE TABLE {schema}.dim_time (
    time_key integer PRIMARY KEY,
    full_time time NOT NULL UNIQUE,
    hour smallint NOT NULL,
    minute smallint NOT NULL,
    am_pm text NOT NULL,
    shift text NOT NULL
);
"""

_OPERATIONAL_DDL = """
CREATE TABLE {schema}.quarantine (
    quarantine_id bigserial PRIMARY KEY,
    source_file text NOT NULL,
    source_path text NOT NULL,
    source_table text NOT NULL,
    source_row integer,
    rejection_stage text NOT NULL
        CHECK (rejection_stage IN ('file', 'schema', 'records', 'orphan')),
    rejection_rule text NOT NULL,
    rejection_column text,
    rejection_reason text NOT NULL,
    reasons jsonb NOT NULL DEFAULT '[]'::jsonb,
    raw_data jsonb NOT NULL,
    asset_key text NOT NULL,
    partition_key text NOT NULL,
    run_id text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    superseded_by_run text,
    resolved_at timestamptz,
    resolved_by_run text
);
COMMENT ON COLUMN {schema}.quarantine.source_row IS
    '1-based data row in the source file; NULL when the whole file was rejected';
COMMENT ON COLUMN {schema}.quarantine.reasons IS
    'every rule the row failed, as [{{stage, rule, column, reason}}], rejection_* hold the first';
COMMENT ON COLUMN {schema}.quarantine.superseded_at IS
    'set when a later run of the same asset partition replaced this row';
COMMENT ON COLUMN {schema}.quarantine.resolved_at IS
    'set when the orphan retry loaded the row after its parent arrived';
CREATE INDEX IF NOT EXISTS idx_quarantine_partition
    ON {schema}.quarantine (asset_key, partition_key) WHERE superseded_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_quarantine_open_orphans
    ON {schema}.quarantine (source_table, quarantined_at)
    WHERE rejection_stage = 'orphan' AND superseded_at IS NULL AND resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_quarantine_stage ON {schema}.quarantine (rejection_stage);
CREATE INDEX IF NOT EXISTS idx_quarantine_source_table ON {schema}.quarantine (source_table);
CREATE INDEX IF NOT EXISTS idx_quarantine_quarantined_at ON {schema}.quarantine (quarantined_at);

CREATE TABLE {schema}.true_orphan (
    orphan_id bigserial PRIMARY KEY,
    quarantine_id bigint NOT NULL UNIQUE REFERENCES {schema}.quarantine (quarantine_id),
    source_file text NOT NULL,
    source_table text NOT NULL,
    partition_key text NOT NULL,
    unresolved_fk text NOT NULL,
    raw_data jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL,
    promoted_at timestamptz NOT NULL DEFAULT now(),
    retry_count smallint NOT NULL DEFAULT 0,
    last_retry_at timestamptz
);
CREATE INDEX IF NOT EXISTS idx_true_orphan_unresolved_fk ON {schema}.true_orphan (unresolved_fk);
CREATE INDEX IF NOT EXISTS idx_true_orphan_first_seen_at ON {schema}.true_orphan (first_seen_at);

CREATE TABLE {schema}.pipeline_file_log (
    log_id bigserial PRIMARY KEY,
    file_path text NOT NULL,
    file_name text NOT NULL,
    file_hash varchar(32),
    file_size bigint,
    file_mtime timestamptz,
    file_type text NOT NULL CHECK (file_type IN ('master', 'batch', 'stream')),
    source_table text NOT NULL,
    status text NOT NULL CHECK (status IN ('success', 'failed')),
    rejection_stage text,
    error_message text,
    total_records integer NOT NULL DEFAULT 0,
    valid_records integer NOT NULL DEFAULT 0,
    quarantined integer NOT NULL DEFAULT 0,
    duplicate_count integer NOT NULL DEFAULT 0,
    orphan_count integer NOT NULL DEFAULT 0,
    asset_key text NOT NULL,
    partition_key text NOT NULL,
    run_id text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    CONSTRAINT file_log_counts_reconcile CHECK (total_records = valid_records + quarantined)
);
COMMENT ON COLUMN {schema}.pipeline_file_log.file_hash IS 'MD5 of the bytes that were loaded';
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_file_name
    ON {schema}.pipeline_file_log (file_name);
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_status ON {schema}.pipeline_file_log (status);
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_processed_at
    ON {schema}.pipeline_file_log (processed_at);
CREATE INDEX IF NOT EXISTS idx_pipeline_file_log_partition
    ON {schema}.pipeline_file_log (asset_key, partition_key) WHERE superseded_at IS NULL;

CREATE TABLE {schema}.alert_log (
    alert_key text PRIMARY KEY,
    asset_key text NOT NULL,
    partition_key text,
    reason text NOT NULL,
    first_sent_at timestamptz NOT NULL DEFAULT now(),
    last_sent_at timestamptz NOT NULL DEFAULT now(),
    sent_count integer NOT NULL DEFAULT 1,
    suppressed_count integer NOT NULL DEFAULT 0,
    last_suppressed_at timestamptz
);
COMMENT ON TABLE {schema}.alert_log IS
    'one row per asset + partition + reason alerted by mail; repeats within the window are counted';
"""

# Calendar rows come from the contract's date range; ON CONFLICT keeps re-applying a no-op and
# lets a widened range add the missing days.
_FILL_DIM_DATE = """
INSERT INTO {schema}.dim_date
SELECT to_char(d, 'YYYYMMDD')::integer, d::date,
       extract(year FROM d), extract(quarter FROM d), extract(month FROM d),
       trim(to_char(d, 'Month')), extract(week FROM d), extract(isodow FROM d),
       extract(day FROM d), extract(doy FROM d), trim(to_char(d, 'Day')),
       extract(isodow FROM d) IN (6, 7)
FROM generate_series({{first}}::date, {{last}}::date, interval '1 day') AS d
ON CONFLICT (date_key) DO NOTHING
"""
_FILL_DIM_TIME = """
INSERT INTO {schema}.dim_time
SELECT h * 100 + m, make_time(h, m, 0), h, m,
       CASE WHEN h < 12 THEN 'AM' ELSE 'PM' END,
       CASE WHEN h BETWEEN 6 AND 13 THEN 'morning' WHEN h BETWEEN 14 AND 21 THEN 'evening'
            ELSE 'night' END
FROM generate_series(0, 23) AS h, generate_series(0, 59) AS m
ON CONFLICT (time_key) DO NOTHING
"""


@dataclass(frozen=True)
class _Catalog:
    """What the warehouse schema already holds (names of relations, columns, constraints)."""

    schema_exists: bool
    relations: frozenset[str]
    columns: frozenset[tuple[str, str]]
    foreign_keys: frozenset[str]
    calendar_rows: tuple[int, int]


def _read_catalog(cur: psycopg.Cursor, schema: str) -> _Catalog:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cur.fetchone() is None:
        return _Catalog(False, frozenset(), frozenset(), frozenset(), (0, 0))
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s",
        (schema,),
    )
    relations = frozenset(row[0] for row in cur.fetchall())
    cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
        (schema,),
    )
    columns = frozenset((row[0], row[1]) for row in cur.fetchall())
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
    return _Catalog(True, relations, columns, keys, calendar)


def _scripts_by_table(script: str) -> dict[str, str]:
    """Split a script of `CREATE TABLE {schema}.name (...)` blocks into one script per table."""
    parts = script.split("CREATE TABLE {schema}.")[1:]
    return {part.split(" ", 1)[0]: "CREATE TABLE {schema}." + part for part in parts}


_FIXED_TABLES = _scripts_by_table(_CALENDAR_DDL) | _scripts_by_table(_OPERATIONAL_DDL)


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
        for table, script in _FIXED_TABLES.items()
        if table not in catalog.relations
    ]
    for name in contract.load_order():
        statements += _source_table_statements(schema, contract.sources[name], catalog)
    statements += [
        _foreign_key_statement(schema, constraint)
        for constraint in foreign_keys(contract)
        if constraint.name not in catalog.foreign_keys
    ]
    days = (contract.calendar.last_date - contract.calendar.first_date).days + 1
    if catalog.calendar_rows != (days, 24 * 60):
        calendar = {"first": contract.calendar.first_date, "last": contract.calendar.last_date}
        statements.append(
            sql.SQL(_FILL_DIM_DATE.format(schema=ident)).format(  # type: ignore[arg-type]
                **{name: sql.Literal(value) for name, value in calendar.items()}
            )
        )
        statements.append(sql.SQL(_FILL_DIM_TIME.format(schema=ident)))  # type: ignore[arg-type]
    view = sla_view_statement(contract)
    if view is not None and SLA_VIEW not in catalog.relations:
        statements.append(view)
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
        statements = pending_statements(contract, _read_catalog(cur, schema), conn)
        for statement in statements:
            cur.execute(statement)
        cur.execute("SET LOCAL lock_timeout TO DEFAULT")
    return len(statements)


def _foreign_key_statement(schema: str, constraint: ForeignKeyConstraint) -> sql.Composable:
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
        sql.Identifier(schema, constraint.table),
        sql.Identifier(constraint.name),
        sql.Identifier(constraint.column),
        sql.Identifier(schema, constraint.parent_table),
        sql.Identifier(constraint.parent_column),
    )
