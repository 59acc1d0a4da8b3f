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
    NULL_TOKENS,
    ORPHAN_ID_HIGH,
    ORPHAN_ID_LOW,
    STREAM,
    US_PER_MINUTE,
    US_PER_SECOND,
    Planner,
    cycle,
    day_number,
    day_start_us,
    rng_for,
    spread,
)
from fastfeast_dagster.synthetic.dimensions import PRIORITIES, REASONS, REGIONS, Dim, region_city
from fastfeast_dagster.synthetic.manifest import FileReport
from fastfeast_dagster.synthetic.render import (
    NAN_LITERAL,
    Frame,
    decimals,
    ints,
    pick,
    timestamps,
    uuids,
)

# Orders per hour at scale 1 = ORDERS_PER_HOUR x the reference's hourly multiplier.
ORDERS_PER_HOUR = 150
HOURLY_CURVE = (
    0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.5, 0.6, 0.5, 0.6, 0.9,
    1.5, 1.4, 1.0, 0.7, 0.6, 0.8, 1.3, 1.8, 2.0, 1.8, 1.2, 0.6,
)  # fmt: skip
EMPTY_HOUR = 3  # its tickets.csv is header-only and its ticket_events.json is `[]`
LATE_PARENT_ORDERS_PER_DAY = 3

ORDER_STATUSES = ("Pending", "Preparing", "OutForDelivery", "Delivered", "Cancelled", "Refunded")
DELIVERED = 3
PAYMENTS = ("card", "cash", "wallet")
TICKET_STATUSES = ("Open", "InProgress", "Resolved", "Closed", "Reopened")
OPEN, IN_PROGRESS, RESOLVED, CLOSED, REOPENED = range(5)
NOTES = {
    OPEN: "ticket opened",
    IN_PROGRESS: "agent assigned",
    RESOLVED: "issue resolved",
    CLOSED: "closed after no reply",
    REOPENED: "customer reopened the ticket",
}
REGION_FEES = np.array([0.0] + [r[3] for r in REGIONS])
TIER_LOW, TIER_HIGH = np.array([40.0, 80.0, 150.0]), np.array([120.0, 250.0, 500.0])
SEVERITY = np.array([0] + [r[2] for r in REASONS])
REFUND_PCT = np.array([0.0] + [r[3] for r in REASONS])
FIRST_DUE_MIN = np.array([0] + [p[2] for p in PRIORITIES])
RESOLVE_DUE_MIN = np.array([0] + [p[3] for p in PRIORITIES])

ORDER_COLUMNS = (
    "order_id", "customer_id", "restaurant_id", "driver_id", "region_id", "order_amount",
    "delivery_fee", "discount_amount", "total_amount", "order_status", "payment_method",
    "order_created_at", "delivered_at",
)  # fmt: skip
ORDER_NUMBERS = frozenset(ORDER_COLUMNS[1:9])
TICKET_COLUMNS = (
    "ticket_id", "order_id", "customer_id", "driver_id", "restaurant_id", "agent_id", "reason_id",
    "priority_id", "channel_id", "status", "refund_amount", "created_at", "first_response_at",
    "resolved_at", "sla_first_due_at", "sla_resolve_due_at",
)  # fmt: skip
EVENT_COLUMNS = (
    "event_id",
    "ticket_id",
    "agent_id",
    "event_ts",
    "old_status",
    "new_status",
    "notes",
)

Rows = dict[str, Any]  # column name -> numpy array, or a pyarrow string array for uuids


def _subset(rows: Rows, index: np.ndarray) -> Rows:
    taken = pa.array(np.asarray(index, dtype=np.int64))
    return {k: v.take(taken) if isinstance(v, pa.Array) else v[index] for k, v in rows.items()}


def _concat(parts: list[Rows]) -> Rows:
    return {
        k: pa.concat_arrays([p[k] for p in parts])
        if isinstance(parts[0][k], pa.Array)
        else np.concatenate([p[k] for p in parts])
        for k in parts[0]
    }


def _size(rows: Rows) -> int:
    return len(next(iter(rows.values())))


@dataclass
class Pools:
    """Loaded (clean) parents the facts may reference, and tomorrow's customers."""

    customer_ids: np.ndarray
    customer_region: np.ndarray
    restaurant_ids: np.ndarray
    restaurant_city: np.ndarray
    restaurant_tier: np.ndarray
    restaurant_prep: np.ndarray
    driver_ids: np.ndarray
    driver_city: np.ndarray
    driver_on_time: np.ndarray
    agent_ids: np.ndarray
    senior_agent_ids: np.ndarray
    tomorrow_ids: np.ndarray
    tomorrow_region: np.ndarray


def make_pools(master: dict[str, Dim], today: Dim, tomorrow: Dim) -> Pools:
    cust, rest, drv, agt = (master[k] for k in ("customers", "restaurants", "drivers", "agents"))
    with_region = cust.loaded & (cust.attrs["region"] > 0)
    r, d, a = rest.loaded, drv.loaded, agt.loaded
    seniors = agt.ids[a & (agt.attrs["skill"] >= 2)]
    return Pools(
        customer_ids=np.concatenate([cust.ids[with_region], today.ids]),
        customer_region=np.concatenate([cust.attrs["region"][with_region], today.attrs["region"]]),
        restaurant_ids=rest.ids[r],
        restaurant_city=region_city(rest.attrs["region"][r]),
        restaurant_tier=rest.attrs["tier"][r],
        restaurant_prep=rest.attrs["prep"][r],
        driver_ids=drv.ids[d],
        driver_city=region_city(drv.attrs["region"][d]),
        driver_on_time=drv.attrs["on_time"][d],
        agent_ids=agt.ids[a],
        senior_agent_ids=seniors if len(seniors) else agt.ids[a],
        tomorrow_ids=tomorrow.ids,
        tomorrow_region=tomorrow.attrs["region"],
    )


def _same_city(rng: np.random.Generator, item_city: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """An item index per wanted city, uniform within the city (any item if the city has none)."""
    order = np.argsort(item_city, kind="stable")
    counts = np.bincount(item_city, minlength=4)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    have = counts[wanted] > 0
    size = np.where(have, counts[wanted], len(item_city))
    base = np.where(have, starts[wanted], 0)
    position = base + np.floor(rng.random(len(wanted)) * size).astype(np.int64)
    return np.where(have, order[position], position)


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


# ---------------------------------------------------------------- orders


def _draw_orders(rng: np.random.Generator, pools: Pools, start_us: int, count: int) -> Rows:
    customer = rng.integers(0, len(pools.customer_ids), count)
    region = pools.customer_region[customer]
    city = region_city(region)
    restaurant = _same_city(rng, pools.restaurant_city, city)
    driver = _same_city(rng, pools.driver_city, city)
    tier = pools.restaurant_tier[restaurant]
    amount = np.round(rng.uniform(TIER_LOW[tier], TIER_HIGH[tier]), 2)
    fee = np.round(REGION_FEES[region] + rng.uniform(-3, 5, count), 2)
    discount = rng.choice(np.array([0.0, 0.0, 0.0, 5.0, 10.0, 15.0, 20.0]), count)
    created = start_us + rng.integers(0, 3600 * US_PER_SECOND, count)
    minutes = (pools.restaurant_prep[restaurant] + rng.uniform(15, 35, count)) / (
        pools.driver_on_time[driver]
    )
    return {
        "order_id": uuids(rng, count),
        "customer_id": pools.customer_ids[customer],
        "restaurant_id": pools.restaurant_ids[restaurant],
        "driver_id": pools.driver_ids[driver],
        "region_id": region,
        "order_amount": amount,
        "delivery_fee": fee,
        "discount_amount": discount,
        "total_amount": np.round(amount + fee - discount, 2),
        "status": rng.choice(6, count, p=[0.01, 0.01, 0.01, 0.94, 0.02, 0.01]),
        "payment": rng.integers(0, 3, count),
        "created_us": created,
        "delivered_us": created + (minutes * US_PER_MINUTE).astype(np.int64),
    }


def _order_frame(rng: np.random.Generator, rows: Rows) -> Frame:
    count = _size(rows)
    delivered = timestamps(rows["delivered_us"], rng.random(count) < 0.1)
    frame = Frame(
        {
            "order_id": rows["order_id"],
            "customer_id": ints(rows["customer_id"]),
            "restaurant_id": ints(rows["restaurant_id"]),
            "driver_id": ints(rows["driver_id"]),
            "region_id": ints(rows["region_id"]),
            "order_amount": decimals(rows["order_amount"]),
            "delivery_fee": decimals(rows["delivery_fee"]),
            "discount_amount": decimals(rows["discount_amount"]),
            "total_amount": decimals(rows["total_amount"]),
            "order_status": pick(ORDER_STATUSES, rows["status"]),
            "payment_method": pick(PAYMENTS, rows["payment"]),
            "order_created_at": timestamps(
                rows["created_us"], rng.random(count) < 0.1, rng.random(count) < 0.05
            ),
            "delivered_at": delivered,
        },
        dict.fromkeys(ORDER_NUMBERS, "number"),
    )
    undelivered = np.flatnonzero(rows["status"] != DELIVERED)
    # Pandas-written files carry NaN for a missing time; other writers leave null or text.
    frame.put("delivered_at", undelivered, cycle((NAN_LITERAL, None, "", "N/A"), len(undelivered)))
    return frame


def _orders_hour(
    rng: np.random.Generator, pools: Pools, rows: Rows, late_parents: int, report: FileReport
) -> tuple[Frame, np.ndarray, np.ndarray]:
    """This hour's new orders with defects: the frame, a clean mask, rows rejected in-file."""
    count = _size(rows)
    status = rows["status"]
    report.note("in_flight", int(np.sum(status < DELIVERED)))
    report.note("cancelled_or_refunded", int(np.sum(status > DELIVERED)))
    plan = Planner(rng, np.flatnonzero(status == DELIVERED), report)
    clean = np.ones(count, dtype=bool)

    late = plan.take("late_parent", late_parents, "orphan/foreign_key/customer_id")
    which = np.arange(len(late)) % len(pools.tomorrow_ids)
    rows["customer_id"][late] = pools.tomorrow_ids[which]
    rows["region_id"][late] = pools.tomorrow_region[which]
    negative = plan.take("negative_amount", spread(rng, count, 0.004), "records/range/order_amount")
    rows["order_amount"][negative] = -np.round(rng.uniform(0.5, 5, len(negative)), 2)
    rows["discount_amount"][negative] = 0.0
    rows["total_amount"][negative] = np.round(
        rows["order_amount"][negative] + rows["delivery_fee"][negative], 2
    )
    mismatch = plan.take(
        "total_mismatch", spread(rng, count, 0.005), "records/total_matches_parts/total_amount"
    )
    rows["total_amount"][mismatch] += np.round(rng.uniform(5, 50, len(mismatch)), 2)
    early = plan.take(
        "delivered_before_created",
        spread(rng, count, 0.005),
        "records/delivered_after_created/delivered_at",
    )
    rows["delivered_us"][early] = rows["created_us"][early] - rng.integers(
        5 * US_PER_MINUTE, 60 * US_PER_MINUTE, len(early)
    )
    for column in ("customer_id", "driver_id", "restaurant_id"):
        orphan = plan.take("orphan_id", spread(rng, count, 0.005), f"orphan/foreign_key/{column}")
        rows[column][orphan] = rng.integers(ORPHAN_ID_LOW, ORPHAN_ID_HIGH, len(orphan))
        clean[orphan] = False
    clean[late] = False

    frame = _order_frame(rng, rows)
    rejected = [negative, mismatch, early]
    for kind, share, rule, column, values in (
        ("null_required", 0.005, "schema/not_null/payment_method", "payment_method",
         (None, "", "None", "N/A")),
        ("invalid_timestamp", 0.005, "schema/type/delivered_at", "delivered_at", ("invalid",)),
        ("invalid_status", 0.005, "schema/allowed_values/order_status", "order_status",
         ("Shipped",)),
    ):  # fmt: skip
        bad = plan.take(kind, spread(rng, count, share), rule)
        frame.put(column, bad, cycle(values, len(bad)))
        rejected.append(bad)
    nulls = plan.take("valid_nulls", spread(rng, count, 0.02))
    for offset, column in enumerate(
        ("order_amount", "delivery_fee", "discount_amount", "total_amount", "order_status")
    ):
        chosen = nulls[offset::5]
        frame.put(column, chosen, cycle((None, *NULL_TOKENS), len(chosen)))
    nan = plan.take("json_nan", max(1, spread(rng, count, 0.005)))
    frame.put("discount_amount", nan, [NAN_LITERAL] * len(nan))
    rejected_rows = np.sort(np.concatenate(rejected))
    clean[rejected_rows] = False
    return frame, clean, rejected_rows


def _with_duplicates(
    rng: np.random.Generator, frame: Frame, sources: np.ndarray, pk: str, report: FileReport
) -> Frame:
    """Exact copies of clean rows, each placed after its original so the original is kept."""
    report.note("duplicate", len(sources), f"records/duplicate/{pk}")
    count = len(frame)
    keys = np.concatenate([np.arange(count) * 2, rng.integers(sources, count) * 2 + 1])
    return frame.extend(frame.take(sources)).take(np.argsort(keys, kind="stable"))


# ---------------------------------------------------------------- tickets and events


def _draw_tickets(rng: np.random.Generator, pools: Pools, parents: Rows) -> Rows:
    count = _size(parents)
    created = parents["created_us"] + rng.integers(5 * US_PER_MINUTE, 120 * US_PER_MINUTE, count)
    reason = rng.integers(1, len(REASONS) + 1, count)
    priority = np.clip(5 - SEVERITY[reason] + rng.integers(-1, 2, count), 1, 4)
    agent = np.where(
        priority == 1,
        pools.senior_agent_ids[rng.integers(0, len(pools.senior_agent_ids), count)],
        pools.agent_ids[rng.integers(0, len(pools.agent_ids), count)],
    )
    status = rng.choice(4, count, p=[0.07, 0.08, 0.6, 0.25])
    first_due = FIRST_DUE_MIN[priority] * US_PER_MINUTE
    resolve_due = RESOLVE_DUE_MIN[priority] * US_PER_MINUTE
    first = created + np.where(
        rng.random(count) < 0.25,
        first_due + rng.integers(US_PER_MINUTE, 60 * US_PER_MINUTE, count),
        (first_due * rng.uniform(0.2, 1.0, count)).astype(np.int64),
    )
    resolved = np.maximum(
        first + US_PER_MINUTE,
        created
        + np.where(
            rng.random(count) < 0.3,
            resolve_due + rng.integers(10 * US_PER_MINUTE, 600 * US_PER_MINUTE, count),
            (resolve_due * rng.uniform(0.1, 1.0, count)).astype(np.int64),
        ),
    )
    reopened = (status == RESOLVED) & (rng.random(count) < 0.08)
    reopen_at = resolved + rng.integers(30 * US_PER_MINUTE, 180 * US_PER_MINUTE, count)
    final = np.where(
        reopened, reopen_at + rng.integers(15 * US_PER_MINUTE, 120 * US_PER_MINUTE, count), resolved
    )
    refund = np.where(
        rng.random(count) < 0.4,
        np.round(parents["total_amount"] * REFUND_PCT[reason] * rng.uniform(0.8, 1, count), 2),
        0.0,
    )
    return {
        "ticket_id": uuids(rng, count),
        "order_id": parents["order_id"],
        "customer_id": parents["customer_id"],
        "driver_id": parents["driver_id"],
        "restaurant_id": parents["restaurant_id"],
        "agent_id": agent,
        "reason_id": reason,
        "priority_id": priority,
        "channel_id": rng.integers(1, 5, count),
        "status": status,
        "refund_amount": refund,
        "created_us": created,
        "first_us": first,
        "resolved1_us": resolved,
        "reopen_us": np.where(reopened, reopen_at, -1),
        "resolved_us": final,
        "first_due_us": created + first_due,
        "resolve_due_us": created + resolve_due,
        "shown_from": np.zeros(count, dtype=np.int64),  # first event step this file carries
    }


def _ticket_frame(rng: np.random.Generator, rows: Rows) -> Frame:
    count = _size(rows)

    def stamps(key: str) -> pa.Array:
        return timestamps(rows[key], rng.random(count) < 0.1, rng.random(count) < 0.05)

    frame = Frame(
        {
            "ticket_id": rows["ticket_id"],
            "order_id": rows["order_id"],
            **{k: ints(rows[k]) for k in TICKET_COLUMNS[2:9]},
            "status": pick(TICKET_STATUSES, rows["status"]),
            "refund_amount": decimals(rows["refund_amount"]),
            "created_at": stamps("created_us"),
            "first_response_at": stamps("first_us"),
            "resolved_at": stamps("resolved_us"),
            "sla_first_due_at": stamps("first_due_us"),
            "sla_resolve_due_at": stamps("resolve_due_us"),
        }
    )
    status = rows["status"]
    unanswered = np.flatnonzero(status == OPEN)
    unresolved = np.flatnonzero(status <= IN_PROGRESS)
    frame.put("first_response_at", unanswered, cycle(("", "N/A", ""), len(unanswered)))
    frame.put("resolved_at", unresolved, cycle(("", "", "N/A", "null"), len(unresolved)))
    return frame


def _ticket_defects(
    rng: np.random.Generator, frame: Frame, rows: Rows, candidates: np.ndarray, report: FileReport
) -> np.ndarray:
    """Defects on resolved tickets among `candidates`; returns the rows they reject."""
    count = len(candidates)
    plan = Planner(rng, candidates[rows["status"][candidates] >= RESOLVED], report)
    rejected = []
    for kind, share, rule, column, values in (
        ("null_required", 0.015, "schema/not_null/created_at", "created_at",
         ("", "N/A", "null", "None")),
        ("invalid_timestamp", 0.015, "schema/type/resolved_at", "resolved_at", ("invalid",)),
    ):  # fmt: skip
        bad = plan.take(kind, spread(rng, count, share), rule)
        frame.put(column, bad, cycle(values, len(bad)))
        rejected.append(bad)
    negative = plan.take(
        "negative_amount", spread(rng, count, 0.015), "records/range/refund_amount"
    )
    frame.put("refund_amount", negative, decimals(-rng.uniform(10, 100, len(negative))).to_pylist())
    rejected.append(negative)
    nulls = plan.take("valid_nulls", spread(rng, count, 0.03))
    for offset, column in enumerate(
        ("refund_amount", "status", "sla_first_due_at", "sla_resolve_due_at")
    ):
        chosen = nulls[offset::4]
        frame.put(column, chosen, cycle(NULL_TOKENS, len(chosen)))
    return np.sort(np.concatenate(rejected))


def _events(
    rng: np.random.Generator, tickets: Rows, orphans: int, report: FileReport
) -> tuple[Frame, int]:
    """Every status change the ticket rows imply, from each row's `shown_from` step on.

    The first `orphans` ticket rows are rejected tickets: their events must be orphans. Returns
    the frame and how many events should load.
    """
    status = tickets["status"]
    reopened = tickets["reopen_us"] >= 0
    final = np.where(status == CLOSED, CLOSED, RESOLVED)
    steps = [  # (applies, old, new, timestamp)
        (np.ones_like(reopened), -1, OPEN, tickets["created_us"]),
        (status >= IN_PROGRESS, OPEN, IN_PROGRESS, tickets["first_us"]),
        (status >= RESOLVED, IN_PROGRESS, final, tickets["resolved1_us"]),
        (reopened, RESOLVED, REOPENED, tickets["reopen_us"]),
        (reopened, REOPENED, RESOLVED, tickets["resolved_us"]),
    ]
    owner, olds, news, stamps, keys = [], [], [], [], []
    for step, (applies, old, new, when) in enumerate(steps):
        chosen = np.flatnonzero(applies & (tickets["shown_from"] <= step))
        owner.append(chosen)
        olds.append(np.full(len(chosen), old))
        news.append(np.broadcast_to(new, status.shape)[chosen])
        stamps.append(when[chosen])
        keys.append(chosen * len(steps) + step)
    order = np.argsort(np.concatenate(keys), kind="stable")
    owner_all = np.concatenate(owner)[order]
    old_all = np.concatenate(olds)[order]
    new_all = np.concatenate(news)[order]
    count = len(owner_all)
    frame = Frame(
        {
            "event_id": uuids(rng, count),
            "ticket_id": tickets["ticket_id"].take(pa.array(owner_all, type=pa.int64())),
            "agent_id": ints(tickets["agent_id"][owner_all]),
            "event_ts": timestamps(np.concatenate(stamps)[order], rng.random(count) < 0.1),
            "old_status": pick(TICKET_STATUSES, np.maximum(old_all, 0)),
            "new_status": pick(TICKET_STATUSES, new_all),
            "notes": pick([NOTES[s] for s in range(len(NOTES))], new_all),
        },
        {"agent_id": "number"},
    )
    first = np.flatnonzero(old_all < 0)
    frame.put("old_status", first, [None] * len(first))
    orphaned = owner_all < orphans
    report.note("derived_orphan", int(orphaned.sum()), "orphan/foreign_key/ticket_id")
    report.note("reopen", int(np.sum(new_all == REOPENED)))
    plan = Planner(rng, np.flatnonzero(~orphaned), report)
    nulls = plan.take("valid_nulls", spread(rng, count, 0.03))
    frame.put("notes", nulls, cycle((None, "", "None", "N/A"), len(nulls)))
    return frame, count - int(orphaned.sum())


# ---------------------------------------------------------------- one hour


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
    rows = _draw_orders(rng, pools, start_us, order_count(hour, scale))
    orders, clean, rejected = _orders_hour(rng, pools, rows, late_parents, orders_report)
    late = np.flatnonzero(np.isin(rows["customer_id"], pools.tomorrow_ids))
    state.late_parent_orders += rows["order_id"].take(pa.array(late, type=pa.int64())).to_pylist()

    in_flight = np.flatnonzero(rows["status"] < DELIVERED)
    final = _schedule(rng, state.hours, hour, len(in_flight), None)
    for target in sorted(set(final.tolist()) - {-1}):
        moving = _subset(rows, in_flight[final == target])
        moving["status"] = np.full(_size(moving), DELIVERED)
        state.pending_orders.setdefault(target, []).append(moving)
        state.order_updates += [
            {"order_id": oid, "first_hour": hour, "final_hour": target, "final_status": "Delivered"}
            for oid in moving["order_id"].to_pylist()
        ]
    if state.late_file_hour is None and (final >= 0).any():
        state.late_file_hour = hour

    copied = rng.choice(np.flatnonzero(clean), _copies(rng, int(clean.sum())), replace=False)
    orders = _with_duplicates(rng, orders, np.sort(copied), "order_id", orders_report)
    if hour in state.pending_orders:
        updates = _concat(state.pending_orders.pop(hour))
        orders = orders.extend(_order_frame(rng, updates))
        orders_report.note("order_update", _size(updates))
    orders_report.rows = len(orders)
    loaded = {"fact_order": int(clean.sum()), "fact_ticket": 0, "fact_ticket_event": 0}

    if hour == EMPTY_HOUR:
        reports = {"orders": orders_report, "tickets": tickets_report, "events": events_report}
        return HourFiles(orders, _empty(TICKET_COLUMNS), _empty(EVENT_COLUMNS), reports, loaded)

    parents = np.flatnonzero(clean & (rows["status"] >= DELIVERED))
    chosen = np.sort(rng.choice(parents, spread(rng, len(parents), 0.12), replace=False))
    derived = np.sort(
        rng.choice(rejected, min(len(rejected), spread(rng, len(chosen), 0.03)), replace=False)
    )
    tickets = _draw_tickets(rng, pools, _subset(rows, np.concatenate([chosen, derived])))
    ticket_frame = _ticket_frame(rng, tickets)
    own = np.arange(len(chosen))
    tickets_report.note("open_ticket", int(np.sum(tickets["status"][own] <= IN_PROGRESS)))
    bad = _ticket_defects(rng, ticket_frame, tickets, own, tickets_report)
    tickets_report.note("derived_orphan", len(derived), "orphan/foreign_key/order_id")
    good = np.setdiff1d(own, bad)
    refused = np.concatenate([bad, np.arange(len(chosen), len(chosen) + len(derived))])

    open_rows = good[tickets["status"][good] <= IN_PROGRESS]
    avoid_start = hour == state.late_file_hour
    final = _schedule(rng, state.hours, hour, len(open_rows), EMPTY_HOUR)
    for target in sorted(set(final.tolist()) - {-1}) if not avoid_start else []:
        moving = _subset(tickets, open_rows[final == target])
        moving["shown_from"] = moving["status"] + 1
        moving["status"] = np.full(_size(moving), RESOLVED)
        state.pending_tickets.setdefault(target, []).append(moving)
        state.ticket_updates += [
            {"ticket_id": tid, "first_hour": hour, "final_hour": target, "final_status": "Resolved"}
            for tid in moving["ticket_id"].to_pylist()
        ]

    copied = rng.choice(good, _copies(rng, len(good)), replace=False)
    ticket_frame = _with_duplicates(rng, ticket_frame, np.sort(copied), "ticket_id", tickets_report)
    orphan_owners = np.sort(
        rng.choice(refused, min(len(refused), max(1, len(refused) // 2)), replace=False)
    )
    sources = [_subset(tickets, orphan_owners), _subset(tickets, good)]
    if hour in state.pending_tickets:
        updates = _concat(state.pending_tickets.pop(hour))
        ticket_frame = ticket_frame.extend(_ticket_frame(rng, updates))
        tickets_report.note("ticket_update", _size(updates))
        sources.append(updates)
    tickets_report.rows = len(ticket_frame)
    events, events_loaded = _events(rng, _concat(sources), len(orphan_owners), events_report)
    events_report.rows = len(events)
    loaded["fact_ticket"] = len(good)
    loaded["fact_ticket_event"] = events_loaded
    reports = {"orders": orders_report, "tickets": tickets_report, "events": events_report}
    return HourFiles(orders, ticket_frame, events, reports, loaded)
