"""KPI marts for BI tools: daily partitions, each built from its day's 24 hourly fact partitions.

A day's rows are replaced in one transaction, so re-materializing a day (after a late hour or an
orphan retry) is idempotent; a schedule rebuilds the day of the hour that just closed. Each
materialization carries a markdown summary and the day's headline KPIs as numbers, which the UI
charts across partitions.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from fastfeast_dagster.assets.mart_chart import mart_chart
from fastfeast_dagster.assets.metadata import table_metadata
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
        ["fact_ticket", "fact_ticket_event", "ticket_sla"],
        "Per agent, team, priority and day: ticket volume, first-response and resolution SLA "
        "compliance (of tickets already judged), reopen rate. Built from the ticket_sla view as "
        "of its last refresh.",
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
            # An hourly parent maps its day's 24 hours onto this day; ticket_sla is a whole view.
            dg.AssetDep(parent, partition_mapping=dg.TimeWindowPartitionMapping())
            if parent.startswith("fact_")
            else dg.AssetDep(parent)
            for parent in parents
        ],
        description=description,
        metadata=table_metadata(contract, name),
    )
    def _mart(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        day = int(context.partition_key.replace("-", ""))
        with warehouse.connect() as conn:
            built = rebuild_mart_day(conn, contract, name, day)
            chart = mart_chart(conn, contract, name)
        summary = built.rows.drop(columns=["date_key", "refreshed_at"]).head(20)
        kpis = {
            f"kpi/{kpi}": dg.MetadataValue.float(float(value))
            for kpi, value in built.headline.items()
            if pd.notna(value)
        }
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(built.rows),
                **kpis,
                "summary": dg.MetadataValue.md(summary.to_markdown(index=False)),
                "kpi_chart": chart,
            }
        )

    return _mart


def build_mart_assets(
    contract: Contract, daily: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    return [build_mart_asset(name, contract, daily) for name in MARTS]


def build_marts_schedule(
    contract: Contract, marts: list[dg.AssetsDefinition]
) -> dg.ScheduleDefinition:
    job = dg.define_asset_job("kpi_marts", selection=marts)

    @dg.schedule(
        name="kpi_marts_refresh",
        cron_schedule=contract.marts.refresh_cron,
        job=job,
        execution_timezone=contract.partitions.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rebuilds the KPI marts for the day of the hour that just closed.",
    )
    def kpi_marts_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        closed_hour = context.scheduled_execution_time - dt.timedelta(hours=1)
        day = closed_hour.date().isoformat()
        return dg.RunRequest(run_key=f"kpi-marts:{closed_hour:%Y-%m-%d-%H}", partition_key=day)

    return kpi_marts_refresh
