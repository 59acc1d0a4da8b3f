"""Reading loaded rows back: what the asset checks validate and what `load_input` returns."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.settings import Contract, SourceSpec
from fastfeast_dagster.warehouse.ddl import LINEAGE_COLUMNS, source_columns


def read_rows(
    conn: psycopg.Connection,
    contract: Contract,
    spec: SourceSpec,
    *,
    partition_keys: Sequence[str] | None = None,
    primary_keys: Sequence[object] | None = None,
) -> pd.DataFrame:
    """Rows of `spec`'s table owned by these partitions, or with these primary keys.

    Numeric columns come back as float (not Decimal objects) and the frame keeps its columns
    when it has no rows, so checks see the table's shape either way.
    """
    columns = [*source_columns(spec), *LINEAGE_COLUMNS]
    selected = [
        sql.SQL("{0}::float8 AS {0}").format(sql.Identifier(column.name))
        if column.sql_type.startswith("numeric")
        else sql.Identifier(column.name)
        for column in columns
    ]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(selected), sql.Identifier(contract.warehouse.schema_name, spec.table)
    )
    params: tuple[object, ...] = ()
    if partition_keys is not None:
        query += sql.SQL(" WHERE _partition_key = ANY(%s)")
        params = (list(partition_keys),)
    elif primary_keys is not None:
        query += sql.SQL(" WHERE {} = ANY(%s)").format(sql.Identifier(spec.primary_key))
        params = (list(primary_keys),)
    with conn.cursor() as cur:
        cur.execute(query, params or None)
        return pd.DataFrame(cur.fetchall(), columns=[column.name for column in columns])
