"""Schema drift in the warehouse: what the drift log adds up to, and adopting a rescued column.

The load writes the log (`audit.write_drift`, same transaction as the rows). Here:
- `drifted_columns`: per table and column, the current log rows added up (rows, files, first
  and last seen), with the type the rescued values parse as; the `contract_drift` check and
  `fastfeast contract drift` both show it, with `validation.drift.adoption_yaml`.
- `fill_adopted`: adoption. An operator adds the column to the contract; the schema apply that
  adds the column to the table (the next run's, or `fastfeast db start`) fills it, in the same
  transaction, for every row whose `_rescued` holds it, and removes the key from `_rescued`.
  That is the backfill of past partitions, done from the rescued values: no file is read again
  (files may be gone), and re-materializing a partition whose file is still there reads the same
  value from it. A value is typed and checked as a file's would be (`engine.parse_column`: type,
  allowed values, format, range); one that fails stays in `_rescued` and the column stays NULL,
  so nothing rescued is ever lost. An adopted PII column is filled only when its `pii` kind is
  the one its name made the rescue mask it as (the tokens then equal a new load's); otherwise
  its values stay rescued, since a token of another kind, or clear text, cannot be made one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.batch import RESCUED_COLUMN
from fastfeast_dagster.contract import TYPES, Contract
from fastfeast_dagster.validation.drift import (
    UNKNOWN,
    DriftedColumn,
    infer_type,
    pii_name_kind,
)
from fastfeast_dagster.validation.engine import parse_column

log = logging.getLogger(__name__)

# Rescued values looked at to suggest an unknown column's type.
_TYPE_SAMPLE = 1000


def drifted_columns(
    conn: psycopg.Connection,
    contract: Contract,
    table: str | None = None,
    partition_keys: Sequence[str] | None = None,
) -> list[DriftedColumn]:
    """The current drift log, per table and column (of `table`, of these partitions), leaving
    out what the contract has since settled (an adopted column, a dropped missing one)."""
    schema = contract.warehouse.schema_name
    rows = conn.execute(
        sql.SQL(
            "SELECT source_table, column_name, drift_kind, sum(row_count),"
            " count(DISTINCT source_path), min(first_seen_at), max(last_seen_at) FROM {}"
            " WHERE superseded_at IS NULL AND (%s::text IS NULL OR source_table = %s)"
            " AND (%s::text[] IS NULL OR partition_key = ANY(%s))"
            " GROUP BY 1, 2, 3 ORDER BY 1, 3 DESC, 2"
        ).format(sql.Identifier(schema, "schema_drift")),
        (table, table, partition_keys, partition_keys),
    ).fetchall()
    sources = contract.table_sources
    found = []
    for name, column, kind, count, files, first, last in rows:
        source = sources.get(name)
        if source is None or (column in contract.sources[source].columns) == (kind == UNKNOWN):
            continue
        pii = pii_name_kind(column, contract.drift.pii_names) if kind == UNKNOWN else None
        found.append(
            DriftedColumn(
                source=source,
                column=column,
                kind=kind,
                rows=int(count),
                files=int(files),
                first_seen=f"{first:%Y-%m-%d %H:%M:%S %Z}",
                last_seen=f"{last:%Y-%m-%d %H:%M:%S %Z}",
                type="text"
                if pii or kind != UNKNOWN
                else _rescued_type(conn, contract, source, column),
                pii=pii,
            )
        )
    return found


def _rescued_type(conn: psycopg.Connection, contract: Contract, source: str, column: str) -> str:
    values = conn.execute(
        sql.SQL("SELECT {rescued} ->> %s FROM {table} WHERE {rescued} ? %s LIMIT %s").format(
            rescued=sql.Identifier(RESCUED_COLUMN),
            table=sql.Identifier(contract.warehouse.schema_name, contract.sources[source].table),
        ),
        (column, column, _TYPE_SAMPLE),
    ).fetchall()
    return infer_type((value for (value,) in values), contract)


def fill_adopted(cur: psycopg.Cursor, contract: Contract, adopted: list[tuple[str, str]]) -> int:
    """Fill each adopted (source, column) from its rows' rescued values; the rows filled."""
    filled = 0
    for source, name in adopted:
        spec = contract.sources[source]
        column = spec.columns[name]
        if column.pii is not None and column.pii != pii_name_kind(name, contract.drift.pii_names):
            log.warning(
                "%s.%s: adopted as pii %s; its rescued values stay", spec.table, name, column.pii
            )
            continue
        table = sql.Identifier(contract.warehouse.schema_name, spec.table)
        key = sql.Identifier(spec.primary_key)
        rescued = sql.Identifier(RESCUED_COLUMN)
        rows = cur.execute(
            sql.SQL("SELECT {key}, {rescued} ->> %s FROM {table} WHERE {rescued} ? %s").format(
                key=key, rescued=rescued, table=table
            ),
            (name, name),
        ).fetchall()
        if not rows:
            continue
        keys = [row[0] for row in rows]
        text = pd.Series([row[1] for row in rows], dtype="string")
        # A PII value arrives as its token: the format it had in clear cannot be checked again.
        judged = column.model_copy(
            update={"nullable": True} | ({"format": None} if column.pii else {})
        )
        typed, bad = parse_column(text, name, judged, contract)
        values = _as_sql_text(typed, column.type)
        taken = [(k, v) for k, v, b in zip(keys, values, bad.tolist(), strict=True) if not b]
        cur.execute(sql.SQL("CREATE TEMP TABLE _adopted (key text, value text) ON COMMIT DROP"))
        with cur.copy("COPY _adopted (key, value) FROM STDIN") as copy:
            for row in taken:
                copy.write_row([str(row[0]), row[1]])
        key_type = sql.SQL(TYPES[spec.columns[spec.primary_key].type].sql)
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET {column} = a.value::{type},"
                " {rescued} = nullif(t.{rescued} - %s, '{{}}'::jsonb)"
                " FROM _adopted a WHERE t.{key} = a.key::{key_type}"
            ).format(
                table=table,
                column=sql.Identifier(name),
                type=sql.SQL(TYPES[column.type].sql),
                rescued=rescued,
                key=key,
                key_type=key_type,
            ),
            (name,),
        )
        filled += cur.rowcount
        cur.execute("DROP TABLE _adopted")
        log.info(
            "%s.%s adopted: %d row(s) filled from %s, %d kept there (not a valid %s)",
            spec.table,
            name,
            len(taken),
            RESCUED_COLUMN,
            len(rows) - len(taken),
            column.type,
        )
    return filled


def _as_sql_text(typed: pd.Series, kind: str) -> list[str | None]:
    """Typed values as text PostgreSQL casts back to the same value."""
    if kind in ("date", "timestamp"):
        pattern = "%Y-%m-%d" if kind == "date" else "%Y-%m-%d %H:%M:%S.%f"
        text = typed.dt.strftime(pattern)
    elif kind == "float":
        text = typed.map(repr, na_action="ignore")
    else:
        text = typed.astype("string")
    return [None if pd.isna(value) else str(value) for value in text.tolist()]
