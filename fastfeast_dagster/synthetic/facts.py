"""What the fact generators share: vocabularies, rows as column arrays, the parent pools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from fastfeast_dagster.synthetic.dimensions import Dim
from fastfeast_dagster.synthetic.reference_data import PRIORITIES, REASONS, REGIONS, region_city

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


def subset(rows: Rows, index: np.ndarray) -> Rows:
    taken = pa.array(np.asarray(index, dtype=np.int64))
    return {k: v.take(taken) if isinstance(v, pa.Array) else v[index] for k, v in rows.items()}


def concat(parts: list[Rows]) -> Rows:
    return {
        k: pa.concat_arrays([p[k] for p in parts])
        if isinstance(parts[0][k], pa.Array)
        else np.concatenate([p[k] for p in parts])
        for k in parts[0]
    }


def row_count(rows: Rows) -> int:
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


def same_city(rng: np.random.Generator, item_city: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """An item index per wanted city, uniform within the city (any item if the city has none)."""
    order = np.argsort(item_city, kind="stable")
    counts = np.bincount(item_city, minlength=4)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    have = counts[wanted] > 0
    size = np.where(have, counts[wanted], len(item_city))
    base = np.where(have, starts[wanted], 0)
    position = base + np.floor(rng.random(len(wanted)) * size).astype(np.int64)
    return np.where(have, order[position], position)
