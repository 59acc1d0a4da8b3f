"""The Postgres IO manager: a thin Dagster adapter over `warehouse/`.

Dagster's own `DbIOManager` deletes and inserts without a transaction (dagster#14091) and cannot
express upserts or side outputs; this one hands the whole `LoadBatch` to the load, which writes
clean rows, quarantine and file log in one transaction, and loads a partition's committed rows
back for whatever takes the asset as an input (the table's checks).
"""

from dataclasses import asdict

import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.batch import LoadBatch, LoadReport
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.load import load_batch
from fastfeast_dagster.warehouse.readback import read_rows


class PostgresIOManager(dg.ConfigurableIOManager):
    """Writes `LoadBatch` outputs to the warehouse; loads partitions' rows back as a frame."""

    warehouse: dg.ResourceDependency[Warehouse]

    def handle_output(self, context: dg.OutputContext, obj: LoadBatch) -> None:
        contract = self.warehouse.contract
        with self.warehouse.connect() as conn:
            report = load_batch(
                conn,
                contract,
                obj,
                asset_key=context.asset_key.to_user_string(),
                run_id=context.run_id,
            )
            partition_rows = _partition_rows(conn, contract, obj, report)
        context.add_output_metadata(
            {**report_metadata(report), "dagster/partition_row_count": partition_rows}
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
        """The rows the asked partitions own in the asset's table, as committed."""
        contract = self.warehouse.contract
        source = contract.table_sources[context.asset_key.path[-1]]
        with self.warehouse.connect() as conn:
            return read_rows(conn, contract, source, context.asset_partition_keys)


def report_metadata(report: LoadReport) -> dict[str, object]:
    return {
        "rows_read": report.rows_read,
        "rows_loaded": report.rows_loaded,
        "rows_quarantined": report.rows_quarantined,
        "rows_repaired": report.rows_repaired,
        "rows_inserted": report.inserted,
        "rows_updated": report.updated,
        "rows_removed": report.removed,
        "duplicates": report.duplicates,
        "orphans": report.orphans,
        "quarantined_by_stage": dg.MetadataValue.json(report.rejects_by_stage),
        "repaired_by_column": dg.MetadataValue.json(report.repairs_by_column),
        "source_files": dg.MetadataValue.json(
            {path: asdict(counts) for path, counts in report.files.items()}
        ),
    }


def _partition_rows(
    conn: psycopg.Connection, contract: Contract, batch: LoadBatch, report: LoadReport
) -> int:
    """The rows the batch's partitions hold, without a statement over the whole table.

    A fact hour owns its rows (an index lookup by `_partition_key`); a dimension day is the
    snapshot of its members, each of which the load left in the table.
    """
    if contract.sources[batch.source].kind != "fact":
        return report.rows_loaded
    query = sql.SQL("SELECT count(*) FROM {} WHERE _partition_key = ANY(%s)").format(
        sql.Identifier(contract.warehouse.schema_name, report.table)
    )
    row = conn.execute(query, (batch.partition_keys,)).fetchone()
    return int(row[0]) if row else 0
