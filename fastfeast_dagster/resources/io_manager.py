"""The Postgres IO manager: a thin Dagster adapter over `warehouse.load`.

Dagster's own `DbIOManager` deletes and inserts without a transaction (dagster#14091) and cannot
express upserts or side outputs; this one hands the whole `LoadBatch` to the load algorithm, which
writes clean rows, quarantine and file log in one transaction.
"""

from dataclasses import asdict

import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.batch import LoadBatch
from fastfeast_dagster.warehouse.load import LoadReport, load_batch


class PostgresIOManager(dg.ConfigurableIOManager):
    """Writes `LoadBatch` outputs to the warehouse; loads a partition's rows back as a frame."""

    warehouse: dg.ResourceDependency[Warehouse]

    def handle_output(self, context: dg.OutputContext, obj: LoadBatch) -> None:
        asset_key = context.asset_key.to_user_string()
        with self.warehouse.connect() as conn:
            report = load_batch(
                conn, self.warehouse.contract, obj, asset_key=asset_key, run_id=context.run_id
            )
            rows_in_table, rows_in_partitions = _row_counts(
                conn, self.warehouse.contract.warehouse.schema_name, report.table, obj
            )
        context.add_output_metadata(
            {**report_metadata(report), "dagster/row_count": rows_in_table}
            | {"dagster/partition_row_count": rows_in_partitions}
        )
        context.log_event(
            dg.AssetObservation(
                asset_key="quarantine",
                metadata={
                    "source_table": report.table,
                    "partitions": dg.MetadataValue.json(obj.partition_keys),
                    "rows_quarantined": report.rows_quarantined,
                    "quarantined_by_stage": dg.MetadataValue.json(report.rejects_by_stage),
                },
            )
        )
        for path, counts in report.files.items():
            if counts.status == "failed":
                context.log.error(f"{path} rejected: {counts.error}")

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = context.asset_key.path[-1]
        schema = self.warehouse.contract.warehouse.schema_name
        keys = context.asset_partition_keys if context.has_asset_partitions else None
        query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table))
        if keys is not None:
            query += sql.SQL(" WHERE _partition_key = ANY(%s)")
        with self.warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(query, (list(keys),) if keys is not None else None)
            columns = [column.name for column in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=columns)


def report_metadata(report: LoadReport) -> dict[str, object]:
    return {
        "rows_read": report.rows_read,
        "rows_loaded": report.rows_loaded,
        "rows_quarantined": report.rows_quarantined,
        "rows_inserted": report.inserted,
        "rows_updated": report.updated,
        "rows_removed": report.removed,
        "duplicates": report.duplicates,
        "orphans": report.orphans,
        "quarantined_by_stage": dg.MetadataValue.json(report.rejects_by_stage),
        "source_files": dg.MetadataValue.json(
            {path: asdict(counts) for path, counts in report.files.items()}
        ),
    }


def _row_counts(
    conn: psycopg.Connection, schema: str, table: str, batch: LoadBatch
) -> tuple[int, int]:
    query = sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE _partition_key = ANY(%s)) FROM {}"
    ).format(sql.Identifier(schema, table))
    total, partition = conn.execute(query, (batch.partition_keys,)).fetchone()
    return int(total), int(partition)
