"""KPI marts for BI tools: daily partitions, each built from its day's 24 hourly fact partitions.

A day's rows are replaced in one transaction, so re-materializing a day (after a late hour or an
orphan retry) is idempotent; the derived-tables sensor rebuilds a day when its facts load
(`sensors/derived.py`), so only days with data are ever built. Each materialization carries a
markdown summary and the day's headline KPIs as numbers, which the UI charts across partitions.
A day that has no rows and had none (only events of other days' tickets loaded) is not
materialized: every mart partition the UI shows holds data.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from fastfeast_dagster.assets.metadata import table_metadata
from fastfeast_dagster.assets.sla import date_key
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.marts import MARTS, rebuild_mart_day

# Mart → (the tables it reads, its description).
_MARTS = {
    "mart_orders_daily": (
        ["fact_order"],
        "Per region and day: orders, revenue, average order value, cancellation and refund "
        "rates, average delivery minutes.",
    ),
    "mart_tickets_daily": (
        ["ticket_sla"],
        "Per agent, team, priority and day: ticket volume, first-response and resolution SLA "
        "compliance (of tickets already judged), reopen rate. Built from the ticket_sla view "
        "right after its day's SLA rows, and again when a due time passes on a waiting ticket.",
    ),
}


def build_mart_asset(
    name: str, contract: Contract, daily: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    parents, description = _MARTS[name]

    @dg.asset(
        name=name,
        group_name="analytics",
        kinds={"postgres"},
        partitions_def=daily,
        deps=[
            # An hourly parent maps its day's 24 hours onto this day, ticket_sla day to day.
            dg.AssetDep(parent, partition_mapping=dg.TimeWindowPartitionMapping())
            for parent in parents
        ],
        description=description,
        metadata=table_metadata(contract, name),
        output_required=False,
    )
    def _mart(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult]:
        with warehouse.connect() as conn:
            built = rebuild_mart_day(conn, contract, name, date_key(context.partition_key))
        if built.rows.empty and not built.had_rows:
            context.log.info(f"{name}: no rows for {context.partition_key}, nothing to show")
            return
        summary = built.rows.drop(columns=["date_key", "refreshed_at"]).head(20)
        kpis = {
            f"kpi/{kpi}": dg.MetadataValue.float(float(value))
            for kpi, value in built.headline.items()
            if pd.notna(value)
        }
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(built.rows),
                **kpis,
                "summary": dg.MetadataValue.md(summary.to_markdown(index=False)),
            }
        )

    return _mart


def build_mart_assets(
    contract: Contract, daily: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    return [build_mart_asset(name, contract, daily) for name in MARTS]
