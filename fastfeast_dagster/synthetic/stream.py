"""Hourly facts: orders, tickets and ticket events, with their defects and cross-hour updates.

Everything is drawn as numpy arrays and rendered column-wise; an hour of a million orders never
becomes a million Python objects. Hours are generated in ascending order because an hour carries
the later states (order and ticket updates) of earlier hours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fastfeast_dagster.synthetic.common import (
    LATE_PARENTS,
    STREAM,
    US_PER_SECOND,
    day_number,
    day_start_us,
    rng_for,
    spread,
)
from fastfeast_dagster.synthetic.facts import (
    DELIVERED,
    EVENT_COLUMNS,
    IN_PROGRESS,
    RESOLVED,
    TICKET_COLUMNS,
    Pools,
    Rows,
    concat,
    row_count,
    subset,
)
from fastfeast_dagster.synthetic.manifest import FileReport
from fastfeast_dagster.synthetic.orders import (
    draw_orders,
    order_frame,
    orders_hour,
    with_duplicates,
)
from fastfeast_dagster.synthetic.render import (
    Frame,
)
from fastfeast_dagster.synthetic.tickets import (
    draw_tickets,
    hour_events,
    render_tickets,
    ticket_defects,
)

# Orders per hour at scale 1 = ORDERS_PER_HOUR x the reference's hourly multiplier.
ORDERS_PER_HOUR = 150
HOURLY_CURVE = (
    0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.5, 0.6, 0.5, 0.6, 0.9,
    1.5, 1.4, 1.0, 0.7, 0.6, 0.8, 1.3, 1.8, 2.0, 1.8, 1.2, 0.6,
)  # fmt: skip
EMPTY_HOUR = 3  # its tickets.csv is header-only and its ticket_events.json is `[]`
LATE_PARENT_ORDERS_PER_DAY = 3


@dataclass
class HourFiles:
    orders: Frame
    tickets: Frame
    events: Frame
    reports: dict[str, FileReport]
    loaded: dict[str, int]  # new distinct primary keys this hour adds to each fact table


@dataclass
class StreamState:
    """What an hour hands to later hours, and the day-level bookkeeping."""

    hours: list[int]
    pending_orders: dict[int, list[Rows]] = field(default_factory=dict)
    pending_tickets: dict[int, list[Rows]] = field(default_factory=dict)
    late_file_hour: int | None = None
    order_updates: list[dict[str, Any]] = field(default_factory=list)
    ticket_updates: list[dict[str, Any]] = field(default_factory=list)
    late_parent_orders: list[str] = field(default_factory=list)


def late_parent_hours(seed: int, day: dt.date, hours: list[int]) -> list[int]:
    if not hours:
        return []
    rng = rng_for(seed, LATE_PARENTS, day_number(day))
    return sorted(rng.choice(hours, LATE_PARENT_ORDERS_PER_DAY).tolist())


def order_count(hour: int, scale: float) -> int:
    return round(ORDERS_PER_HOUR * HOURLY_CURVE[hour] * scale)


def _empty(columns: tuple[str, ...]) -> Frame:
    return Frame({name: pa.array([], type=pa.string()) for name in columns})


def _schedule(
    rng: np.random.Generator, hours: list[int], hour: int, count: int, avoid: int | None
) -> np.ndarray:
    """A later requested hour (the next or the one after) per row; -1 when none is left."""
    later = [h for h in hours if h > hour and h != avoid][:2]
    if not later:
        return np.full(count, -1)
    return np.array(later)[rng.integers(0, len(later), count)]


def _copies(rng: np.random.Generator, clean: int) -> int:
    # At least one exact duplicate per file that has a clean row to copy.
    return min(clean, max(1, spread(rng, clean, 0.01)))


def generate_hour(
    seed: int, day: dt.date, hour: int, scale: float, pools: Pools, state: StreamState,
    late_parents: int,
) -> HourFiles:  # fmt: skip
    rng = rng_for(seed, STREAM, day_number(day), hour)
    start_us = day_start_us(day) + hour * 3600 * US_PER_SECOND
    orders_report, tickets_report, events_report = FileReport(), FileReport(), FileReport()
    rows = draw_orders(rng, pools, start_us, order_count(hour, scale))
    orders, clean, repaired, rejected = orders_hour(rng, pools, rows, late_parents, orders_report)
    late = np.flatnonzero(np.isin(rows["customer_id"], pools.tomorrow_ids))
    state.late_parent_orders += rows["order_id"].take(pa.array(late, type=pa.int64())).to_pylist()

    in_flight = np.flatnonzero(rows["status"] < DELIVERED)
    final = _schedule(rng, state.hours, hour, len(in_flight), None)
    for target in sorted(set(final.tolist()) - {-1}):
        moving = subset(rows, in_flight[final == target])
        moving["status"] = np.full(row_count(moving), DELIVERED)
        state.pending_orders.setdefault(target, []).append(moving)
        state.order_updates += [
            {"order_id": oid, "first_hour": hour, "final_hour": target, "final_status": "Delivered"}
            for oid in moving["order_id"].to_pylist()
        ]
    if state.late_file_hour is None and (final >= 0).any():
        state.late_file_hour = hour

    copied = rng.choice(np.flatnonzero(clean), _copies(rng, int(clean.sum())), replace=False)
    orders = with_duplicates(rng, orders, np.sort(copied), "order_id", orders_report)
    if hour in state.pending_orders:
        updates = concat(state.pending_orders.pop(hour))
        orders = orders.extend(order_frame(rng, updates))
        orders_report.note("order_update", row_count(updates))
    orders_report.rows = len(orders)
    loads = clean | repaired
    loaded = {"fact_order": int(loads.sum()), "fact_ticket": 0, "fact_ticket_event": 0}

    if hour == EMPTY_HOUR:
        reports = {"orders": orders_report, "tickets": tickets_report, "events": events_report}
        return HourFiles(orders, _empty(TICKET_COLUMNS), _empty(EVENT_COLUMNS), reports, loaded)

    # Orders that load with a repaired value have tickets like any other.
    parents = np.flatnonzero(loads & (rows["status"] >= DELIVERED))
    chosen = np.sort(rng.choice(parents, spread(rng, len(parents), 0.12), replace=False))
    derived = np.sort(
        rng.choice(rejected, min(len(rejected), spread(rng, len(chosen), 0.03)), replace=False)
    )
    tickets = draw_tickets(rng, pools, subset(rows, np.concatenate([chosen, derived])))
    ticket_frame = render_tickets(rng, tickets)
    own = np.arange(len(chosen))
    tickets_report.note("open_ticket", int(np.sum(tickets["status"][own] <= IN_PROGRESS)))
    bad, repaired_tickets = ticket_defects(rng, ticket_frame, tickets, own, tickets_report)
    tickets_report.note("derived_orphan", len(derived), "orphan/foreign_key/order_id")
    good = np.setdiff1d(own, bad)
    refused = np.concatenate([bad, np.arange(len(chosen), len(chosen) + len(derived))])

    open_rows = good[tickets["status"][good] <= IN_PROGRESS]
    avoid_start = hour == state.late_file_hour
    final = _schedule(rng, state.hours, hour, len(open_rows), EMPTY_HOUR)
    for target in sorted(set(final.tolist()) - {-1}) if not avoid_start else []:
        moving = subset(tickets, open_rows[final == target])
        moving["shown_from"] = moving["status"] + 1
        moving["status"] = np.full(row_count(moving), RESOLVED)
        state.pending_tickets.setdefault(target, []).append(moving)
        state.ticket_updates += [
            {"ticket_id": tid, "first_hour": hour, "final_hour": target, "final_status": "Resolved"}
            for tid in moving["ticket_id"].to_pylist()
        ]

    # Copies of rows without defects: a copy's only reason to be refused is being a copy.
    flawless = np.setdiff1d(good, repaired_tickets)
    copied = rng.choice(flawless, _copies(rng, len(flawless)), replace=False)
    ticket_frame = with_duplicates(rng, ticket_frame, np.sort(copied), "ticket_id", tickets_report)
    orphan_owners = np.sort(
        rng.choice(refused, min(len(refused), max(1, len(refused) // 2)), replace=False)
    )
    sources = [subset(tickets, orphan_owners), subset(tickets, good)]
    if hour in state.pending_tickets:
        updates = concat(state.pending_tickets.pop(hour))
        ticket_frame = ticket_frame.extend(render_tickets(rng, updates))
        tickets_report.note("ticket_update", row_count(updates))
        sources.append(updates)
    tickets_report.rows = len(ticket_frame)
    events, events_loaded = hour_events(rng, concat(sources), len(orphan_owners), events_report)
    events_report.rows = len(events)
    loaded["fact_ticket"] = len(good)
    loaded["fact_ticket_event"] = events_loaded
    reports = {"orders": orders_report, "tickets": tickets_report, "events": events_report}
    return HourFiles(orders, ticket_frame, events, reports, loaded)
