"""Tickets of an hour and the status events they imply, with their defects."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fastfeast_dagster.synthetic.common import (
    NULL_TOKENS,
    US_PER_MINUTE,
    Planner,
    cycle,
    spread,
)
from fastfeast_dagster.synthetic.facts import (
    CLOSED,
    FIRST_DUE_MIN,
    IN_PROGRESS,
    NOTES,
    OPEN,
    REFUND_PCT,
    REOPENED,
    RESOLVE_DUE_MIN,
    RESOLVED,
    SEVERITY,
    TICKET_COLUMNS,
    TICKET_STATUSES,
    Pools,
    Rows,
    row_count,
)
from fastfeast_dagster.synthetic.manifest import FileReport
from fastfeast_dagster.synthetic.reference_data import REASONS
from fastfeast_dagster.synthetic.render import Frame, decimals, ints, pick, timestamps, uuids


def draw_tickets(rng: np.random.Generator, pools: Pools, parents: Rows) -> Rows:
    count = row_count(parents)
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


def render_tickets(rng: np.random.Generator, rows: Rows) -> Frame:
    count = row_count(rows)

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


def ticket_defects(
    rng: np.random.Generator, frame: Frame, rows: Rows, candidates: np.ndarray, report: FileReport
) -> tuple[np.ndarray, np.ndarray]:
    """Defects on resolved tickets among `candidates`: the rows they reject, and the rows that
    load with a repaired value."""
    count = len(candidates)
    plan = Planner(rng, candidates[rows["status"][candidates] >= RESOLVED], report)
    missing = plan.take("null_required", spread(rng, count, 0.015), "schema/not_null/created_at")
    frame.put("created_at", missing, cycle(("", "N/A", "null", "None"), len(missing)))
    repaired = plan.take(
        "invalid_timestamp", spread(rng, count, 0.015), "schema/type/resolved_at", repair=True
    )
    frame.put("resolved_at", repaired, cycle(("invalid",), len(repaired)))
    negative = plan.take(
        "negative_amount", spread(rng, count, 0.015), "records/range/refund_amount"
    )
    frame.put("refund_amount", negative, decimals(-rng.uniform(10, 100, len(negative))).to_pylist())
    nulls = plan.take("valid_nulls", spread(rng, count, 0.03))
    for offset, column in enumerate(
        ("refund_amount", "status", "sla_first_due_at", "sla_resolve_due_at")
    ):
        chosen = nulls[offset::4]
        frame.put(column, chosen, cycle(NULL_TOKENS, len(chosen)))
    return np.sort(np.concatenate([missing, negative])), repaired


def hour_events(
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
