"""KPI marts for BI tools: daily partitions, each built from its day's 24 hourly fact partitions.

A day's rows are replaced in one transaction, so re-materializing a day (after a late hour or an
orphan retry) is idempotent; a schedule rebuilds the day of the hour that just closed. Each
materialization carries a markdown summary and the day's headline KPIs as numbers, which the UI
charts across partitions.
"""

import datetime as dt

import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.settings import Contract

_ORDERS = """
CREATE TABLE IF NOT EXISTS {schema}.mart_orders_daily (
    date_key integer NOT NULL, region_id integer, orders integer NOT NULL,
    delivered integer NOT NULL, revenue numeric NOT NULL, average_order_value numeric,
    cancellation_rate numeric, refund_rate numeric, average_delivery_minutes numeric,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
DELETE FROM {schema}.mart_orders_daily WHERE date_key = {day};
INSERT INTO {schema}.mart_orders_daily (date_key, region_id, orders, delivered, revenue,
    average_order_value, cancellation_rate, refund_rate, average_delivery_minutes)
SELECT date_key, region_id, count(*),
       count(*) FILTER (WHERE order_status = 'Delivered'),
       coalesce(sum(total_amount) FILTER (WHERE order_status = 'Delivered'), 0),
       round(avg(total_amount) FILTER (WHERE order_status = 'Delivered'), 2),
       -- Of all orders: one with an unknown status still counts in the denominator.
       round(count(*) FILTER (WHERE order_status = 'Cancelled')::numeric / count(*), 4),
       round(count(*) FILTER (WHERE order_status = 'Refunded')::numeric / count(*), 4),
       round(avg(extract(epoch FROM delivered_at - order_created_at) / 60)
             FILTER (WHERE order_status = 'Delivered'), 2)
FROM {schema}.fact_order WHERE date_key = {day}
GROUP BY date_key, region_id
"""

_TICKETS = """
CREATE TABLE IF NOT EXISTS {schema}.mart_tickets_daily (
    date_key integer NOT NULL, agent_id integer, team_id integer, priority_id integer,
    tickets integer NOT NULL, first_response_met integer NOT NULL,
    first_response_judged integer NOT NULL, resolution_met integer NOT NULL,
    resolution_judged integer NOT NULL, reopened integer NOT NULL,
    first_response_compliance numeric, resolution_compliance numeric, reopen_rate numeric,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
DELETE FROM {schema}.mart_tickets_daily WHERE date_key = {day};
INSERT INTO {schema}.mart_tickets_daily (date_key, agent_id, team_id, priority_id, tickets,
    first_response_met, first_response_judged, resolution_met, resolution_judged, reopened,
    first_response_compliance, resolution_compliance, reopen_rate)
SELECT date_key, agent_id, team_id, priority_id, count(*),
       count(*) FILTER (WHERE first_response_status = 'met'),
       count(*) FILTER (WHERE first_response_status IN ('met', 'breached')),
       count(*) FILTER (WHERE resolution_status = 'met'),
       count(*) FILTER (WHERE resolution_status IN ('met', 'breached')),
       count(*) FILTER (WHERE reopen_count > 0),
       round(count(*) FILTER (WHERE first_response_status = 'met')::numeric
             / nullif(count(*) FILTER (WHERE first_response_status IN ('met', 'breached')), 0), 4),
       round(count(*) FILTER (WHERE resolution_status = 'met')::numeric
             / nullif(count(*) FILTER (WHERE resolution_status IN ('met', 'breached')), 0), 4),
       round(avg((reopen_count > 0)::int), 4)
FROM {schema}.ticket_sla WHERE date_key = {day}
GROUP BY date_key, agent_id, team_id, priority_id
"""

# The day's headline KPIs, from the mart's rows: numeric metadata that the UI plots across
# partitions (the asset's Plots tab). Rates over regions are weighted by their denominators.
_ORDERS_HEADLINE = """
SELECT sum(orders) AS orders, sum(revenue) AS revenue,
       sum(revenue) / nullif(sum(delivered), 0) AS average_order_value,
       sum(cancellation_rate * orders) / nullif(sum(orders), 0) AS cancellation_rate,
       sum(refund_rate * orders) / nullif(sum(orders), 0) AS refund_rate,
       sum(average_delivery_minutes * delivered)
           / nullif(sum(delivered) FILTER (WHERE average_delivery_minutes IS NOT NULL), 0)
           AS average_delivery_minutes
FROM {table} WHERE date_key = {day}
"""
_TICKETS_HEADLINE = """
SELECT sum(tickets) AS tickets,
       sum(first_response_met)::numeric / nullif(sum(first_response_judged), 0)
           AS first_response_compliance,
       sum(resolution_met)::numeric / nullif(sum(resolution_judged), 0) AS resolution_compliance,
       sum(reopened)::numeric / nullif(sum(tickets), 0) AS reopen_rate
FROM {table} WHERE date_key = {day}
"""

MARTS = {
    "mart_orders_daily": (
        _ORDERS,
        _ORDERS_HEADLINE,
        ["fact_order"],
        "Per region and day: orders, revenue, average order value, cancellation and refund "
        "rates, average delivery minutes.",
    ),
    "mart_tickets_daily": (
        _TICKETS,
        _TICKETS_HEADLINE,
        ["fact_ticket", "fact_ticket_event", "ticket_sla"],
        "Per agent, team, priority and day: ticket volume, first-response and resolution SLA "
        "compliance (of tickets already judged), reopen rate. Built from the ticket_sla view as "
        "of its last refresh.",
    ),
}


def build_mart_asset(
    name: str, contract: Contract, daily: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    script, headline_script, parents, description = MARTS[name]

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
        metadata={"dagster/table_name": f"{contract.warehouse.schema_name}.{name}"},
    )
    def _mart(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        day = int(context.partition_key.replace("-", ""))
        schema = sql.Identifier(contract.warehouse.schema_name)
        table = sql.Identifier(contract.warehouse.schema_name, name)
        with warehouse.connect() as conn, conn.transaction():
            conn.execute(
                sql.SQL(script).format(schema=schema, day=sql.Literal(day))  # type: ignore[arg-type]
            )
            frame = _query(conn, sql.SQL("SELECT * FROM {} WHERE date_key = %s").format(table), day)
            headline = _query(
                conn,
                sql.SQL(headline_script).format(table=table, day=sql.Literal(day)),  # type: ignore[arg-type]
            ).iloc[0]
        summary = frame.drop(columns=["date_key", "refreshed_at"]).head(20)
        kpis = {
            f"kpi/{kpi}": dg.MetadataValue.float(float(value))
            for kpi, value in headline.items()
            if pd.notna(value)
        }
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                **kpis,
                "summary": dg.MetadataValue.md(summary.to_markdown(index=False)),
            }
        )

    return _mart


def _query(conn: psycopg.Connection, query: sql.Composable, *params: object) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params or None)
        columns = [column.name for column in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def build_mart_assets(
    contract: Contract, daily: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    return [build_mart_asset(name, contract, daily) for name in MARTS]


def build_marts_schedule(
    contract: Contract, marts: list[dg.AssetsDefinition]
) -> dg.ScheduleDefinition:
    job = dg.define_asset_job("kpi_marts", selection=marts, partitions_def=marts[0].partitions_def)

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
