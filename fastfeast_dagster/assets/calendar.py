"""Calendar dimensions: unpartitioned, filled from the contract's date range, idempotent."""

import dagster as dg
from psycopg import sql

from fastfeast_dagster.assets.metadata import table_metadata
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse

CALENDAR_DESCRIPTIONS = {
    "dim_date": "One row per day of the contract's calendar range; date_key is YYYYMMDD.",
    "dim_time": "One row per minute of the day; time_key is HHMM (00:05 is 5).",
}


def build_calendar_asset(contract: Contract, table: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=table,
        group_name="calendar",
        kinds={"postgres"},
        description=CALENDAR_DESCRIPTIONS[table],
        metadata=table_metadata(contract, table),
    )
    def _calendar(warehouse: Warehouse) -> dg.MaterializeResult:
        # The resource's setup applied the schema, which fills any calendar rows still missing.
        query = sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(contract.warehouse.schema_name, table)
        )
        with warehouse.connect() as conn:
            (rows,) = conn.execute(query).fetchone() or (0,)
        return dg.MaterializeResult(metadata={"dagster/row_count": rows})

    return _calendar


def calendar_assets(contract: Contract) -> list[dg.AssetsDefinition]:
    return [build_calendar_asset(contract, table) for table in CALENDAR_DESCRIPTIONS]
