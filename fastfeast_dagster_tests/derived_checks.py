"""What the SLA rows, the KPI marts and the reference analysts' queries must say, worked out in
Python from the fact tables alone, and where the warehouse disagrees.

The rules are written out again on purpose (`warehouse/sla.py`, `warehouse/marts.py` hold the
SQL): a mistake in the SQL must show here as a difference, not be repeated. Each function returns
the differences found, so a test can wait for the daemon until there are none.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

RESOLVED = ("Resolved", "Closed")


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    agent_id: int | None
    priority_id: int | None
    status: str | None
    created_at: dt.datetime
    first_response_at: dt.datetime | None
    resolved_at: dt.datetime | None
    first_due: dt.datetime | None
    resolve_due: dt.datetime | None
    date_key: int


@dataclass(frozen=True)
class Expected:
    """A ticket's SLA row as the facts imply it."""

    status: str | None
    reopen_count: int
    first_response: str | None
    resolution: str | None


def _rows(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params or None).fetchall()  # type: ignore[arg-type]


def _judge(done: dt.datetime | None, due: dt.datetime | None, now: dt.datetime) -> str | None:
    if due is None:
        return None
    if done is not None:
        return "met" if done <= due else "breached"
    return "breached" if now > due else "pending"


def expected_sla(url: str) -> dict[str, Expected]:
    """Every loaded ticket's SLA row, from fact_ticket and fact_ticket_event."""
    tickets = [
        Ticket(*row)
        for row in _rows(
            url,
            "SELECT ticket_id, agent_id, priority_id, status, created_at, first_response_at,"
            " resolved_at, sla_first_due_at, sla_resolve_due_at, date_key FROM fact_ticket",
        )
    ]
    events: dict[str, list[tuple[dt.datetime, str, str]]] = defaultdict(list)
    for ticket_id, at, event_id, status in _rows(
        url, "SELECT ticket_id, event_ts, event_id, new_status FROM fact_ticket_event"
    ):
        events[ticket_id].append((at, event_id, status))
    ((now,),) = _rows(url, "SELECT now() AT TIME ZONE 'UTC'")
    expected = {}
    for ticket in tickets:
        history = sorted(events[ticket.ticket_id])
        own = [ticket.created_at, ticket.first_response_at, ticket.resolved_at]
        status = ticket.status
        # An event after everything the ticket file knows changed the status.
        if history and history[-1][0] > max(at for at in own if at is not None):
            status = history[-1][2]
        reopens = [at for at, _, new in history if new == "Reopened"]
        resolved = (
            ticket.resolved_at is not None
            and (status is None or status in RESOLVED)
            and not any(at >= ticket.resolved_at for at in reopens)
        )
        expected[ticket.ticket_id] = Expected(
            status,
            len(reopens),
            _judge(ticket.first_response_at, ticket.first_due, now),
            _judge(ticket.resolved_at if resolved else None, ticket.resolve_due, now),
        )
    return expected


def sla_mismatches(url: str) -> list[str]:
    """Differences between the ticket_sla view and `expected_sla`: one row per loaded ticket."""
    shown = {
        ticket_id: Expected(status, reopens, first, resolution)
        for ticket_id, status, reopens, first, resolution in _rows(
            url,
            "SELECT ticket_id, status, reopen_count, first_response_status, resolution_status"
            " FROM ticket_sla",
        )
    }
    expected = expected_sla(url)
    problems = [f"{len(shown)} SLA rows for {len(expected)} tickets"] * (
        len(shown) != len(expected)
    )
    problems += [
        f"{ticket}: {shown.get(ticket)} != {want}"
        for ticket, want in expected.items()
        if shown.get(ticket) != want
    ]
    return problems


def _tickets_mart(url: str, day: int) -> dict[tuple, tuple]:
    teams = dict(_rows(url, "SELECT agent_id, team_id FROM dim_agent"))
    expected = expected_sla(url)
    groups: dict[tuple, list[int]] = defaultdict(lambda: [0] * 6)
    for ticket_id, agent, priority, key in _rows(
        url, "SELECT ticket_id, agent_id, priority_id, date_key FROM fact_ticket"
    ):
        if key != day:
            continue
        sla = expected[ticket_id]
        counts = groups[(agent, teams.get(agent), priority)]
        for index, flag in enumerate(
            (
                True,
                sla.first_response == "met",
                sla.first_response in ("met", "breached"),
                sla.resolution == "met",
                sla.resolution in ("met", "breached"),
                sla.reopen_count > 0,
            )
        ):
            counts[index] += flag
    return {group: tuple(counts) for group, counts in groups.items()}


def _orders_mart(url: str, day: int) -> dict[int | None, tuple]:
    by_region: dict[int | None, list[tuple]] = defaultdict(list)
    for region, status, total, created, delivered in _rows(
        url,
        "SELECT region_id, order_status, total_amount, order_created_at, delivered_at"
        " FROM fact_order WHERE date_key = %s",
        day,
    ):
        by_region[region].append((status, total, created, delivered))
    expected = {}
    for region, orders in by_region.items():
        done = [order for order in orders if order[0] == "Delivered"]
        minutes = [
            (order[3] - order[2]).total_seconds() / 60 for order in done if order[3] is not None
        ]
        expected[region] = (
            len(orders),
            len(done),
            float(sum((order[1] or Decimal(0) for order in done), Decimal(0))),
            sum(order[0] == "Cancelled" for order in orders) / len(orders),
            sum(order[0] == "Refunded" for order in orders) / len(orders),
            sum(minutes) / len(minutes) if minutes else None,
        )
    return expected


def _close(a: object, b: object, tolerance: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) <= tolerance  # type: ignore[arg-type]


def mart_mismatches(url: str, day: int) -> list[str]:
    """Differences between both marts' rows of `day` (a date key) and the facts' aggregates."""
    problems = []
    tickets = {
        (agent, team, priority): tuple(counts)
        for agent, team, priority, *counts in _rows(
            url,
            "SELECT agent_id, team_id, priority_id, tickets, first_response_met,"
            " first_response_judged, resolution_met, resolution_judged, reopened"
            " FROM mart_tickets_daily WHERE date_key = %s",
            day,
        )
    }
    want_tickets = _tickets_mart(url, day)
    if tickets != want_tickets:
        problems.append(f"mart_tickets_daily {day}: {tickets} != {want_tickets}")
    orders = {
        region: row
        for region, *row in _rows(
            url,
            "SELECT region_id, orders, delivered, revenue, cancellation_rate, refund_rate,"
            " average_delivery_minutes FROM mart_orders_daily WHERE date_key = %s",
            day,
        )
    }
    want_orders = _orders_mart(url, day)
    if set(orders) != set(want_orders):
        problems.append(f"mart_orders_daily {day}: regions {set(orders)} != {set(want_orders)}")
    for region in set(orders) & set(want_orders):
        got, want = orders[region], want_orders[region]
        # The mart rounds rates to 4 places and minutes to 2.
        tolerances = (0, 0, 0.005, 5e-5, 5e-5, 0.005)
        if not all(_close(g, w, t) for g, w, t in zip(got, want, tolerances, strict=True)):
            problems.append(f"mart_orders_daily {day} region {region}: {got} != {want}")
    return problems


def analyst_mismatches(url: str, day: dt.date) -> list[str]:
    """The reference analysts' queries on v_ticket_sla_performance (spec/reference_system.md
    6.6 columns only) against the reference's own formulas applied to the facts."""
    tickets = _rows(
        url,
        "SELECT ticket_id, agent_id, first_response_at, sla_first_due_at FROM fact_ticket"
        " WHERE created_at::date = %s",
        day,
    )
    met: dict[int | None, list[bool]] = defaultdict(list)
    over = []
    for ticket_id, agent, first, due in tickets:
        met[agent].append(first is not None and due is not None and first <= due)
        if first is not None and due is not None and first > due:
            over.append((ticket_id, (first - due).total_seconds() / 60))
    compliance = _rows(
        url,
        "SELECT agent_id, avg(is_first_response_met::int)::float8 FROM v_ticket_sla_performance"
        " WHERE created_at::date = %s GROUP BY agent_id",
        day,
    )
    breached = _rows(
        url,
        "SELECT ticket_id, extract(epoch FROM first_response_at - sla_first_due_at)::float8 / 60"
        " FROM v_ticket_sla_performance"
        " WHERE created_at::date = %s AND NOT is_first_response_met"
        " AND first_response_at > sla_first_due_at ORDER BY 1",
        day,
    )
    problems = []
    want = {agent: sum(flags) / len(flags) for agent, flags in met.items()}
    got = dict(compliance)
    if set(got) != set(want) or any(abs(got[a] - want[a]) > 1e-9 for a in want):
        problems.append(f"first-response compliance per agent: {got} != {want}")
    over.sort()
    if [t for t, _ in breached] != [t for t, _ in over] or not all(
        abs(a[1] - b[1]) < 1e-6 for a, b in zip(breached, over, strict=True)
    ):
        problems.append(f"breached first responses: {breached[:5]}… != {over[:5]}…")
    return problems
