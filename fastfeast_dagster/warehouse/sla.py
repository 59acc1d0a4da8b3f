"""Ticket SLA state, kept current incrementally, and the views its readers query.

`ticket_sla_state` holds one row per ticket with what its SLA judgement needs and nothing that
depends on the clock: due and response times as the ticket file gives them, the status as of its
latest event, whether its resolution still counts, its reopen count, and the fact hours the row
was computed from. Applying a set of fact hours recomputes only the tickets those hours touch
(their tickets, the tickets of their events, and the tickets last computed from them, which is
how a ticket or event that a re-delivery removed is noticed) and writes only the rows that
changed: a late reopen event updates its ticket, a replayed hour writes nothing, and the cost
follows the hours applied, not the history stored.

Met / breached / pending is derived when the views are read (`ticket_sla`, and the reference
system's `v_ticket_sla_performance`), from the due times and the database clock, so a pending
ticket turns breached when its due time passes with nothing rebuilt. The views are plain views
over a plain table: an update never blocks a reader, and a reader sees either the rows before an
update or after it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.stopwatch import Stopwatch

SLA_VIEW = "ticket_sla"
SLA_STATE = "ticket_sla_state"
COMPATIBILITY_VIEW = "v_ticket_sla_performance"
_NEEDED = {"orders", "tickets", "ticket_events", "agents"}
# Held while SLA rows are written: two updates touching the same ticket (a day's hours and a
# late event of the next day) then take turns instead of deadlocking on each other's rows.
_UPDATE_LOCK_ID = 0x0FA57F5A
# The ticket columns the state copies as the file gives them; their types come from the contract.
_TICKET_COLUMNS = (
    "ticket_id", "order_id", "agent_id", "priority_id", "channel_id", "reason_id", "created_at",
    "date_key", "first_response_at", "sla_first_due_at", "first_response_min", "resolved_at",
    "sla_resolve_due_at", "resolution_min",
)  # fmt: skip
_STATE_COLUMNS = (
    *_TICKET_COLUMNS, "status", "is_resolved", "reopen_count", "last_reopened_at",
    "source_partitions",
)  # fmt: skip

_STATE_TABLE = """
-- The materialized view this table replaces is derived data: nothing is lost by dropping it.
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_matviews WHERE schemaname = {schema_name}
               AND matviewname = 'ticket_sla') THEN
        DROP MATERIALIZED VIEW {schema}.ticket_sla;
    END IF;
END $$;
CREATE TABLE {schema}.ticket_sla_state (
    {ticket_columns},
    status text,
    is_resolved boolean NOT NULL,
    reopen_count integer NOT NULL,
    last_reopened_at timestamp,
    source_partitions text[] NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id)
);
CREATE INDEX ticket_sla_state_date_key ON {schema}.ticket_sla_state (date_key);
CREATE INDEX ticket_sla_state_source_partitions
    ON {schema}.ticket_sla_state USING gin (source_partitions);
-- Only tickets still waiting can turn breached by the clock; these keep finding them cheap.
CREATE INDEX ticket_sla_state_awaiting_response
    ON {schema}.ticket_sla_state (sla_first_due_at) WHERE first_response_at IS NULL;
CREATE INDEX ticket_sla_state_awaiting_resolution
    ON {schema}.ticket_sla_state (sla_resolve_due_at) WHERE NOT is_resolved;
COMMENT ON TABLE {schema}.ticket_sla_state IS
    'SLA inputs per ticket, recomputed for the tickets each loaded fact hour touches';
COMMENT ON COLUMN {schema}.ticket_sla_state.status IS
    'the ticket file''s status, unless an event later than the file''s own times changed it';
COMMENT ON COLUMN {schema}.ticket_sla_state.is_resolved IS
    'resolved or closed at resolved_at, and not reopened since';
COMMENT ON COLUMN {schema}.ticket_sla_state.source_partitions IS
    'the fact hours (ticket and events) this row was computed from'
"""

_SLA_VIEW = """
CREATE OR REPLACE VIEW {schema}.ticket_sla AS
WITH clock AS (SELECT (now() AT TIME ZONE {timezone}) AS now)
SELECT
    s.ticket_id, s.order_id, s.agent_id, a.team_id, s.priority_id, s.channel_id, s.reason_id,
    o.region_id, s.status, s.created_at, s.date_key,
    s.first_response_at, s.sla_first_due_at, s.first_response_min,
    CASE
        WHEN s.sla_first_due_at IS NULL THEN NULL
        WHEN s.first_response_at IS NOT NULL THEN
            CASE WHEN s.first_response_at <= s.sla_first_due_at THEN 'met' ELSE 'breached' END
        WHEN clock.now > s.sla_first_due_at THEN 'breached'
        ELSE 'pending'
    END AS first_response_status,
    s.resolved_at, s.sla_resolve_due_at, s.resolution_min,
    CASE
        WHEN s.sla_resolve_due_at IS NULL THEN NULL
        -- A reopened (or open) ticket is not resolved, whatever resolved_at it carries.
        WHEN s.is_resolved THEN
            CASE WHEN s.resolved_at <= s.sla_resolve_due_at THEN 'met' ELSE 'breached' END
        WHEN clock.now > s.sla_resolve_due_at THEN 'breached'
        ELSE 'pending'
    END AS resolution_status,
    s.reopen_count, clock.now AS evaluated_at
FROM {schema}.ticket_sla_state s
CROSS JOIN clock
LEFT JOIN {schema}.fact_order o ON o.order_id = s.order_id
LEFT JOIN {schema}.dim_agent a ON a.agent_id = s.agent_id;
COMMENT ON VIEW {schema}.ticket_sla IS
    'SLA state per ticket as of evaluated_at (the query time): met, breached or pending'
"""

# The reference system's view (spec/reference_system.md 6.6): its columns, one row per ticket.
_COMPATIBILITY_VIEW = """
CREATE OR REPLACE VIEW {schema}.v_ticket_sla_performance AS
SELECT ticket_id, agent_id, created_at, first_response_at, sla_first_due_at, resolved_at,
       sla_resolve_due_at,
       coalesce(first_response_status = 'met', false) AS is_first_response_met,
       coalesce(resolution_status = 'met', false) AS is_resolution_met
FROM {schema}.ticket_sla;
COMMENT ON VIEW {schema}.v_ticket_sla_performance IS
    'The reference system''s SLA view. FALSE means breached or not judged yet (pending, no due'
    ' time); a reopened ticket''s earlier resolution is not met. ticket_sla tells them apart.'
"""

# Which tickets the hours touch, the rows as they are now, then only the changes written.
_TOUCHED = """
CREATE TEMP TABLE sla_touched ON COMMIT DROP AS
SELECT ticket_id FROM {schema}.fact_ticket WHERE _partition_key = ANY(%(hours)s)
UNION
SELECT ticket_id FROM {schema}.fact_ticket_event
WHERE _partition_key = ANY(%(hours)s) AND ticket_id IS NOT NULL
UNION
SELECT ticket_id FROM {schema}.ticket_sla_state WHERE source_partitions && %(hours)s::text[]
"""
_FRESH = """
CREATE TEMP TABLE sla_fresh ON COMMIT DROP AS
SELECT f.*,
       f.resolved_at IS NOT NULL AND coalesce(f.status IN ('Resolved', 'Closed'), true)
           AND (f.last_reopened_at IS NULL OR f.last_reopened_at < f.resolved_at) AS is_resolved
FROM (
    SELECT {ticket_columns},
           CASE WHEN e.last_event_at > greatest(t.created_at, t.first_response_at, t.resolved_at)
                THEN e.last_status ELSE t.status END AS status,
           coalesce(e.reopens, 0) AS reopen_count, e.last_reopened_at,
           ARRAY(SELECT DISTINCT p FROM unnest(coalesce(e.partitions, '{{}}') || t._partition_key)
                 AS p ORDER BY p) AS source_partitions
    FROM sla_touched x
    JOIN {schema}.fact_ticket t USING (ticket_id)
    LEFT JOIN (
        SELECT ev.ticket_id,
               count(*) FILTER (WHERE ev.new_status = 'Reopened') AS reopens,
               max(ev.event_ts) FILTER (WHERE ev.new_status = 'Reopened') AS last_reopened_at,
               max(ev.event_ts) AS last_event_at,
               (array_agg(ev.new_status ORDER BY ev.event_ts DESC, ev.event_id DESC))[1]
                   AS last_status,
               array_agg(DISTINCT ev._partition_key) AS partitions
        FROM sla_touched y JOIN {schema}.fact_ticket_event ev USING (ticket_id)
        GROUP BY ev.ticket_id
    ) e USING (ticket_id)
) f
"""
_WRITE = """
WITH removed AS (
    DELETE FROM {state} s USING sla_touched x
    WHERE s.ticket_id = x.ticket_id
      AND NOT EXISTS (SELECT 1 FROM sla_fresh f WHERE f.ticket_id = s.ticket_id)
    RETURNING s.date_key
), changed AS (
    SELECT f.*, s.date_key AS previous_date_key
    FROM sla_fresh f LEFT JOIN {state} s USING (ticket_id)
    WHERE s.ticket_id IS NULL OR ({fresh_values}) IS DISTINCT FROM ({state_values})
), written AS (
    INSERT INTO {state} AS s ({columns}) SELECT {columns} FROM changed
    ON CONFLICT (ticket_id) DO UPDATE SET {updates}, computed_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM removed),
       ARRAY(SELECT date_key FROM removed UNION SELECT date_key FROM changed
             UNION SELECT previous_date_key FROM changed)
"""

# Days holding tickets that were waiting when the due time passed: their judgement moved.
_DUE_BETWEEN = """
SELECT date_key FROM {state}
WHERE first_response_at IS NULL AND sla_first_due_at > %(since)s AND sla_first_due_at <= %(until)s
UNION
SELECT date_key FROM {state}
WHERE NOT is_resolved AND sla_resolve_due_at > %(since)s AND sla_resolve_due_at <= %(until)s
"""

_DAY_COUNTS = """
SELECT 'first_response_' || coalesce(first_response_status, 'no_sla'), count(*)
FROM {view} WHERE date_key = %(day)s GROUP BY 1
UNION ALL
SELECT 'resolution_' || coalesce(resolution_status, 'no_sla'), count(*)
FROM {view} WHERE date_key = %(day)s GROUP BY 1
"""


@dataclass(frozen=True)
class SlaUpdate:
    tickets: int  # tickets the hours touched, all recomputed
    written: int  # rows inserted or changed
    removed: int  # rows whose ticket is no longer loaded
    days: list[int]  # date keys (the tickets' creation days) whose rows changed
    stage_seconds: dict[str, float] = field(default_factory=dict)


def sla_statements(contract: Contract, relations: frozenset[str]) -> list[sql.Composable]:
    """What the warehouse lacks of the SLA table and views; nothing when the contract lacks
    the tables they read."""
    if not set(contract.sources) >= _NEEDED:
        return []
    types = {column.name: column.type.sql for column in contract.table_columns("tickets")}
    names = {
        "schema": sql.Identifier(contract.warehouse.schema_name).as_string(),
        "schema_name": sql.Literal(contract.warehouse.schema_name).as_string(),
        "timezone": sql.Literal(contract.partitions.timezone).as_string(),
        "ticket_columns": ",\n    ".join(f"{name} {types[name]}" for name in _TICKET_COLUMNS),
    }
    scripts = {
        SLA_STATE: _STATE_TABLE,
        SLA_VIEW: _SLA_VIEW,
        COMPATIBILITY_VIEW: _COMPATIBILITY_VIEW,
    }
    # A missing state table means the view on it (and the one on that) must be made anew.
    missing = SLA_STATE not in relations
    return [
        sql.SQL(script.format(**names))  # type: ignore[arg-type]
        for name, script in scripts.items()
        if missing or name not in relations
    ]


def apply_fact_hours(
    conn: psycopg.Connection, contract: Contract, hours: Sequence[str]
) -> SlaUpdate:
    """Recompute the SLA rows of the tickets that these fact hours touch, in one transaction."""
    schema = contract.warehouse.schema_name
    names = {"schema": sql.Identifier(schema), "state": sql.Identifier(schema, SLA_STATE)}
    ticket_columns = sql.SQL(", ").join(
        sql.SQL("t.{}").format(sql.Identifier(name)) for name in _TICKET_COLUMNS
    )
    watch = Stopwatch()
    with conn.transaction(), conn.cursor() as cur:
        with watch.stage("wait for other SLA updates"):
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_UPDATE_LOCK_ID,))
        with watch.stage("find the tickets the hours touch"):
            cur.execute(sql.SQL(_TOUCHED).format(**names), {"hours": list(hours)})  # type: ignore[arg-type]
            touched = cur.rowcount
            # Temporary tables have no statistics: without them a full refresh is planned as
            # if it touched a handful of tickets.
            cur.execute("ANALYZE sla_touched")
        with watch.stage("recompute their rows (ticket and events)"):
            cur.execute(sql.SQL(_FRESH).format(ticket_columns=ticket_columns, **names))  # type: ignore[arg-type]
        with watch.stage("write the rows that changed"):
            cur.execute(_write_statement(names["state"]))
            written, removed, days = cur.fetchone() or (0, 0, [])
        committing = time.perf_counter()
    watch.seconds["commit"] = time.perf_counter() - committing
    changed_days = sorted(day for day in days if day is not None)
    return SlaUpdate(touched, written, removed, changed_days, watch.seconds)


def _write_statement(state: sql.Identifier) -> sql.Composable:
    content = [name for name in _STATE_COLUMNS if name != "ticket_id"]

    def listed(prefix: str, names: Sequence[str]) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL(prefix + "{}").format(sql.Identifier(name)) for name in names
        )

    return sql.SQL(_WRITE).format(  # type: ignore[arg-type]
        state=state,
        columns=listed("", _STATE_COLUMNS),
        fresh_values=listed("f.", content),
        state_values=listed("s.", content),
        updates=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in content
        ),
    )


def days_due_between(
    conn: psycopg.Connection, contract: Contract, since: dt.datetime | None
) -> tuple[list[int], dt.datetime]:
    """The days with tickets whose due time passed, unanswered or unresolved, after `since`;
    and the warehouse clock (wall clock in the contract's time zone) it checked up to."""
    (until,) = conn.execute(
        "SELECT now() AT TIME ZONE %s", (contract.partitions.timezone,)
    ).fetchone() or (None,)
    assert isinstance(until, dt.datetime)
    if since is None:
        return [], until
    query = sql.SQL(_DUE_BETWEEN).format(
        state=sql.Identifier(contract.warehouse.schema_name, SLA_STATE)
    )
    days = conn.execute(query, {"since": since, "until": until}).fetchall()  # type: ignore[arg-type]
    return sorted(day for (day,) in days if day is not None), until


def day_status_counts(conn: psycopg.Connection, contract: Contract, day: int) -> dict[str, int]:
    """Tickets created on `day` (a date key) per first-response and resolution status, now."""
    view = sql.Identifier(contract.warehouse.schema_name, SLA_VIEW)
    rows = conn.execute(sql.SQL(_DAY_COUNTS).format(view=view), {"day": day}).fetchall()  # type: ignore[arg-type]
    return {name: int(count) for name, count in rows}
