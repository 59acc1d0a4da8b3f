"""Calendar dimensions: unpartitioned, filled from the contract's date range, idempotent."""

import dagster as dg
from psycopg import sql

from fastfeast_dagster.resources.warehouse import Warehouse

CALENDAR_TABLES = {
    "dim_date": "One row per day of the contract's calendar range; date_key is YYYYMMDD.",
    "dim_time": "One row per minute of the day; time_key is HHMM (00:05 is 5).",
}


def build_calendar_asset(table: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=table,
        group_name="calendar",
        kinds={"postgres"},
        description=description,
        metadata={"dagster/table_name": table},
    )
    def _calendar(warehouse: Warehouse) -> dg.MaterializeResult:
        # Connecting applies the schema, which fills any calendar rows still missing.
        schema = warehouse.contract.warehouse.schema_name
        with warehouse.connect() as conn:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            (rows,) = conn.execute(query).fetchone() or (0,)
        return dg.MaterializeResult(metadata={"dagster/row_count": rows})

    return _calendar


calendar_assets = [build_calendar_asset(table, text) for table, text in CALENDAR_TABLES.items()]
