"""The ticket SLA view: per ticket, first-response and resolution status against now.

Derived state lives here rather than on `fact_ticket`: a breach depends on the clock (an open
ticket is *pending* until its due time passes, not breached) and reopen counts depend on events
that may arrive hours after the ticket. A materialized view
with a unique index is refreshed CONCURRENTLY on a schedule, so readers are never blocked.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from fastfeast_dagster.contract import Contract

SLA_VIEW = "ticket_sla"
_NEEDED = {"orders", "tickets", "ticket_events", "agents"}

_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {schema}.ticket_sla AS
WITH clock AS (SELECT (now() AT TIME ZONE {timezone}) AS now),
reopens AS (
    SELECT ticket_id, count(*) AS reopen_count
    FROM {schema}.fact_ticket_event WHERE new_status = 'Reopened' GROUP BY ticket_id
)
SELECT
    t.ticket_id, t.order_id, t.agent_id, a.team_id, t.priority_id, t.channel_id, t.reason_id,
    o.region_id, t.status, t.created_at, t.date_key,
    t.first_response_at, t.sla_first_due_at, t.first_response_min,
    CASE
        WHEN t.first_response_at IS NOT NULL AND t.sla_first_due_at IS NOT NULL THEN
            CASE WHEN t.first_response_at <= t.sla_first_due_at THEN 'met' ELSE 'breached' END
        WHEN t.sla_first_due_at IS NULL THEN NULL
        WHEN clock.now > t.sla_first_due_at THEN 'breached'
        ELSE 'pending'
    END AS first_response_status,
    t.resolved_at, t.sla_resolve_due_at, t.resolution_min,
    CASE
        -- A reopened (or open) ticket is not resolved, whatever resolved_at it carries.
        WHEN t.resolved_at IS NOT NULL AND coalesce(t.status IN ('Resolved', 'Closed'), true)
             AND t.sla_resolve_due_at IS NOT NULL THEN
            CASE WHEN t.resolved_at <= t.sla_resolve_due_at THEN 'met' ELSE 'breached' END
        WHEN t.sla_resolve_due_at IS NULL THEN NULL
        WHEN clock.now > t.sla_resolve_due_at THEN 'breached'
        ELSE 'pending'
    END AS resolution_status,
    coalesce(r.reopen_count, 0) AS reopen_count,
    clock.now AS evaluated_at
FROM {schema}.fact_ticket t
CROSS JOIN clock
LEFT JOIN {schema}.fact_order o ON o.order_id = t.order_id
LEFT JOIN {schema}.dim_agent a ON a.agent_id = t.agent_id
LEFT JOIN reopens r ON r.ticket_id = t.ticket_id;
CREATE UNIQUE INDEX IF NOT EXISTS ticket_sla_ticket_id ON {schema}.ticket_sla (ticket_id);
COMMENT ON MATERIALIZED VIEW {schema}.ticket_sla IS
    'SLA state per ticket as of evaluated_at (refreshed on a schedule): met, breached or pending'
"""


def sla_view_statement(contract: Contract) -> sql.Composable | None:
    """The view's DDL, or None when the contract lacks the tables it joins."""
    if not set(contract.sources) >= _NEEDED:
        return None
    text = _VIEW.format(
        schema=sql.Identifier(contract.warehouse.schema_name).as_string(),
        timezone=sql.Literal(contract.partitions.timezone).as_string(),
    )
    return sql.SQL(text)  # type: ignore[arg-type]


def refresh_sla_view(conn: psycopg.Connection, contract: Contract) -> dict[str, int]:
    """Refresh without blocking readers; returns ticket counts per status."""
    schema = contract.warehouse.schema_name
    view = sql.Identifier(schema, SLA_VIEW)
    # CONCURRENTLY cannot run inside a transaction block.
    previous = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(view))
    finally:
        conn.autocommit = previous
    rows = conn.execute(
        sql.SQL(
            "SELECT 'first_response_' || coalesce(first_response_status, 'no_sla'), count(*)"
            " FROM {view} GROUP BY 1 UNION ALL"
            " SELECT 'resolution_' || coalesce(resolution_status, 'no_sla'), count(*)"
            " FROM {view} GROUP BY 1"
        ).format(view=view)
    ).fetchall()
    return {name: int(count) for name, count in rows}
