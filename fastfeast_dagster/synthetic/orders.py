"""Orders of an hour: drawn from the parent pools, rendered, with their defects."""

from __future__ import annotations

import numpy as np

from fastfeast_dagster.synthetic.common import (
    NULL_TOKENS,
    ORPHAN_ID_HIGH,
    ORPHAN_ID_LOW,
    US_PER_MINUTE,
    US_PER_SECOND,
    Planner,
    cycle,
    spread,
)
from fastfeast_dagster.synthetic.facts import (
    DELIVERED,
    ORDER_NUMBERS,
    ORDER_STATUSES,
    PAYMENTS,
    REGION_FEES,
    TIER_HIGH,
    TIER_LOW,
    Pools,
    Rows,
    row_count,
    same_city,
)
from fastfeast_dagster.synthetic.manifest import FileReport
from fastfeast_dagster.synthetic.reference_data import region_city
from fastfeast_dagster.synthetic.render import (
    NAN_LITERAL,
    Frame,
    decimals,
    ints,
    pick,
    timestamps,
    uuids,
)


def draw_orders(rng: np.random.Generator, pools: Pools, start_us: int, count: int) -> Rows:
    customer = rng.integers(0, len(pools.customer_ids), count)
    region = pools.customer_region[customer]
    city = region_city(region)
    restaurant = same_city(rng, pools.restaurant_city, city)
    driver = same_city(rng, pools.driver_city, city)
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


def order_frame(rng: np.random.Generator, rows: Rows) -> Frame:
    count = row_count(rows)
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


def orders_hour(
    rng: np.random.Generator, pools: Pools, rows: Rows, late_parents: int, report: FileReport
) -> tuple[Frame, np.ndarray, np.ndarray, np.ndarray]:
    """This hour's new orders with defects: the frame, a mask of rows without any defect, a
    mask of rows that load with a repaired value, and the rows rejected in-file."""
    count = row_count(rows)
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
        repair=True,
    )
    rows["delivered_us"][early] = rows["created_us"][early] - rng.integers(
        5 * US_PER_MINUTE, 60 * US_PER_MINUTE, len(early)
    )
    for column in ("customer_id", "driver_id", "restaurant_id"):
        orphan = plan.take("orphan_id", spread(rng, count, 0.005), f"orphan/foreign_key/{column}")
        rows[column][orphan] = rng.integers(ORPHAN_ID_LOW, ORPHAN_ID_HIGH, len(orphan))
        clean[orphan] = False
    clean[late] = False

    frame = order_frame(rng, rows)
    rejected = [negative, mismatch]
    repaired = [early]
    for kind, share, rule, column, values in (
        ("null_required", 0.005, "schema/not_null/payment_method", "payment_method",
         (None, "", "None", "N/A")),
        ("invalid_timestamp", 0.005, "schema/type/delivered_at", "delivered_at", ("invalid",)),
        ("invalid_status", 0.005, "schema/allowed_values/order_status", "order_status",
         ("Shipped",)),
    ):  # fmt: skip
        bad = plan.take(kind, spread(rng, count, share), rule, repair=True)
        frame.put(column, bad, cycle(values, len(bad)))
        repaired.append(bad)
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
    with_repair = np.zeros(count, dtype=bool)
    with_repair[np.concatenate(repaired)] = True
    clean[with_repair] = False
    return frame, clean, with_repair, rejected_rows


def with_duplicates(
    rng: np.random.Generator, frame: Frame, sources: np.ndarray, pk: str, report: FileReport
) -> Frame:
    """Exact copies of clean rows, each placed after its original so the original is kept."""
    report.note("duplicate", len(sources), f"records/duplicate/{pk}")
    count = len(frame)
    keys = np.concatenate([np.arange(count) * 2, rng.integers(sources, count) * 2 + 1])
    return frame.extend(frame.take(sources)).take(np.argsort(keys, kind="stable"))
