"""KPI marts for BI tools: one day's rows rebuilt from the facts, in one transaction.

The tables are created with the schema (`fixed_tables.py`). Rebuilding a day brings exactly that
day's rows to the facts' aggregates and rewrites only the rows that differ, so it is idempotent
however often it runs, to the byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.contract import Contract

_ORDERS_COLUMNS = (
    "date_key", "region_id", "orders", "delivered", "revenue", "average_order_value",
    "cancellation_rate", "refund_rate", "average_delivery_minutes",
)  # fmt: skip
_ORDERS = """
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

_TICKETS_COLUMNS = (
    "date_key", "agent_id", "team_id", "priority_id", "tickets", "first_response_met",
    "first_response_judged", "resolution_met", "resolution_judged", "reopened",
    "first_response_compliance", "resolution_compliance", "reopen_rate",
)  # fmt: skip
_TICKETS = """
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

# A day's rows become the fresh aggregates, touching only the rows that differ: a rebuild with
# nothing new leaves every row as it was, `refreshed_at` included, so a replayed day changes no
# byte. Both statements of the CTE see the rows as they were before it.
_REBUILD = """
WITH fresh ({columns}) AS ({aggregates}),
gone AS (
    DELETE FROM {table} AS old WHERE old.date_key = {day}
    AND NOT EXISTS (SELECT 1 FROM fresh WHERE ({old}) IS NOT DISTINCT FROM ({new}))
)
INSERT INTO {table} ({columns})
SELECT * FROM fresh EXCEPT SELECT {columns} FROM {table} WHERE date_key = {day}
"""

# The headline KPIs over a mart's rows: numeric metadata the UI plots, and the marts' own chart
# of the latest days (assets/mart_chart.py). Rates over regions are weighted by their
# denominators.
_ORDERS_KPIS = """
       sum(orders) AS orders, sum(revenue) AS revenue,
       sum(revenue) / nullif(sum(delivered), 0) AS average_order_value,
       sum(cancellation_rate * orders) / nullif(sum(orders), 0) AS cancellation_rate,
       sum(refund_rate * orders) / nullif(sum(orders), 0) AS refund_rate,
       sum(average_delivery_minutes * delivered)
           / nullif(sum(delivered) FILTER (WHERE average_delivery_minutes IS NOT NULL), 0)
           AS average_delivery_minutes
"""
_TICKETS_KPIS = """
       sum(tickets) AS tickets,
       sum(first_response_met)::numeric / nullif(sum(first_response_judged), 0)
           AS first_response_compliance,
       sum(resolution_met)::numeric / nullif(sum(resolution_judged), 0) AS resolution_compliance,
       sum(reopened)::numeric / nullif(sum(tickets), 0) AS reopen_rate
"""
# The day's, as a row.
_ORDERS_HEADLINE = f"SELECT {_ORDERS_KPIS} FROM {{table}} WHERE date_key = {{day}}"
_TICKETS_HEADLINE = f"SELECT {_TICKETS_KPIS} FROM {{table}} WHERE date_key = {{day}}"
# Each of the latest days the mart holds, oldest first, whatever the date today.
_HISTORY = """
SELECT date_key, {kpis} FROM {table}
WHERE date_key IN (SELECT DISTINCT date_key FROM {table} ORDER BY date_key DESC LIMIT {days})
GROUP BY date_key ORDER BY date_key
"""
_KPIS = {"mart_orders_daily": _ORDERS_KPIS, "mart_tickets_daily": _TICKETS_KPIS}

# Mart → (its columns but refreshed_at, the day's aggregates, headline query).
_SCRIPTS = {
    "mart_orders_daily": (_ORDERS_COLUMNS, _ORDERS, _ORDERS_HEADLINE),
    "mart_tickets_daily": (_TICKETS_COLUMNS, _TICKETS, _TICKETS_HEADLINE),
}
MARTS = list(_SCRIPTS)


@dataclass(frozen=True)
class MartDay:
    rows: pd.DataFrame  # the day's mart rows
    headline: pd.Series  # the day's KPIs over all its rows
    had_rows: bool  # whether the day had rows before this rebuild


def rebuild_mart_day(conn: psycopg.Connection, contract: Contract, mart: str, day: int) -> MartDay:
    """Replace `mart`'s rows of `day` (a date key, YYYYMMDD) and read them back."""
    columns, aggregates, headline = _SCRIPTS[mart]
    names = {
        "schema": sql.Identifier(contract.warehouse.schema_name),
        "table": sql.Identifier(contract.warehouse.schema_name, mart),
        "day": sql.Literal(day),
    }
    script = sql.SQL(_REBUILD).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        aggregates=sql.SQL(aggregates).format(**names),  # type: ignore[arg-type]
        old=sql.SQL(", ").join(sql.Identifier("old", column) for column in columns),
        new=sql.SQL(", ").join(sql.Identifier("fresh", column) for column in columns),
        **names,
    )
    with conn.transaction():
        # Two rebuilds of the same day take turns: each deletes what it sees, so side by side
        # both would insert the day.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{mart}|{day}",))
        had_rows = _query(
            conn, sql.SQL("SELECT 1 FROM {table} WHERE date_key = {day} LIMIT 1").format(**names)
        )
        conn.execute(script)
        rows = _query(conn, sql.SQL("SELECT * FROM {table} WHERE date_key = {day}").format(**names))
        totals = _query(conn, sql.SQL(headline).format(**names))  # type: ignore[arg-type]
    return MartDay(rows, totals.iloc[0], not had_rows.empty)


def _query(conn: psycopg.Connection, query: sql.Composable) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query)
        columns = [column.name for column in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def kpi_history(conn: psycopg.Connection, contract: Contract, mart: str, days: int) -> pd.DataFrame:
    """`mart`'s headline KPIs for each of its latest `days` days (a `date_key` column first)."""
    query = sql.SQL(_HISTORY).format(
        kpis=sql.SQL(_KPIS[mart]),  # type: ignore[arg-type]
        table=sql.Identifier(contract.warehouse.schema_name, mart),
        days=sql.Literal(days),
    )
    return _query(conn, query)
