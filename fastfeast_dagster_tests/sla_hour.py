"""A hand-written stream hour of four tickets whose SLA outcomes are known, for the SLA tests.

`met` was answered and resolved in time; `breached` was answered late and is still open past its
due time; `pending` waits for due times that have not come; `reopened` was answered in time and
reopened after its resolution. Events record the status changes of `met` and `reopened`.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.synthetic import generate

DAY = "2026-03-02"
HOUR = f"{DAY}-10:00"
FACTS = ["fact_order", "fact_ticket", "fact_ticket_event"]
FAR = "2030-01-01 00:00:00"  # a due time that has not passed yet
TICKETS = {
    # ticket: (status, first_response_at, first due, resolved_at, resolve due, agent)
    "met": ("Resolved", "10:03", "10:05", "10:30", "11:00", 0),
    "breached": ("Open", "10:10", "10:05", None, "11:00", 1),
    "pending": ("Open", None, FAR, None, FAR, 1),
    "reopened": ("Reopened", "10:02", "10:05", "10:20", FAR, 0),
}
TICKET_HEADER = (
    "ticket_id", "order_id", "customer_id", "driver_id", "restaurant_id", "agent_id", "reason_id",
    "priority_id", "channel_id", "status", "refund_amount", "created_at", "first_response_at",
    "resolved_at", "sla_first_due_at", "sla_resolve_due_at",
)  # fmt: skip
IDS = {name: f"00000000-0000-4000-8000-00000000000{index}" for index, name in enumerate(TICKETS, 1)}


def _at(clock: str | None) -> str:
    if clock is None:
        return ""
    return clock if clock.startswith("20") else f"{DAY} {clock}:00"


def hour_folder(root: Path, day: str, hour: int) -> Path:
    folder = root / "input" / "stream" / day / f"{hour:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def status_event(
    name: str, step: int, old: str | None, new: str, at: str, agent: int | None
) -> dict:
    return {
        "event_id": IDS[name].replace("4000", f"42{step}0"),
        "ticket_id": IDS[name],
        "agent_id": agent,
        "event_ts": at,
        "old_status": old,
        "new_status": new,
        "notes": None,
    }


def write_hour(
    root: Path,
    agents: list[int | None],
    tickets: dict | None = None,
    hour: int = 10,
    *,
    append: bool = False,
) -> None:
    """`tickets` (default: all four), created at 10:00 of DAY, with an order each, in the folder
    of `hour`; `agents[i]` is the agent id of the tickets whose last field is i. With `append`,
    the rows are added to the hour's files already there (a later, larger delivery of it)."""
    tickets = TICKETS if tickets is None else tickets
    folder = hour_folder(root, DAY, hour)
    orders = [
        {
            "order_id": IDS[name].replace("4000", "4111"),
            "customer_id": None,
            "restaurant_id": None,
            "driver_id": None,
            "region_id": 3,
            "order_amount": 100.0,
            "delivery_fee": 10.0,
            "discount_amount": 0.0,
            "total_amount": 110.0,
            "order_status": "Delivered",
            "payment_method": "card",
            "order_created_at": f"{DAY} 09:40:00",
            "delivered_at": f"{DAY} 09:59:00",
        }
        for name in TICKETS
    ]
    rows = [
        {
            "ticket_id": IDS[name],
            "order_id": IDS[name].replace("4000", "4111"),
            "agent_id": "" if agents[agent] is None else str(agents[agent]),
            "priority_id": "1",
            "channel_id": "1",
            "status": status,
            "refund_amount": "0",
            "created_at": f"{DAY} 10:00:00",
            "first_response_at": _at(first),
            "resolved_at": _at(resolved),
            "sla_first_due_at": _at(first_due),
            "sla_resolve_due_at": _at(resolve_due),
        }
        for name, (status, first, first_due, resolved, resolve_due, agent) in tickets.items()
    ]
    transitions = [("met", [None, "Open", "InProgress", "Resolved"])]
    transitions.append(("reopened", [None, "Open", "InProgress", "Resolved", "Reopened"]))
    events = [
        status_event(name, step, old, new, f"{DAY} 10:0{step + 1}:00", agents[tickets[name][5]])
        for name, chain in transitions
        if name in tickets
        for step, (old, new) in enumerate(itertools.pairwise(chain))
    ]
    _write_json(folder / "orders.json", orders, append)
    _write_csv(folder / "tickets.csv", rows, append)
    _write_json(folder / "ticket_events.json", events, append)


def _write_json(path: Path, rows: list[dict], append: bool) -> None:
    before = json.loads(path.read_text()) if append and path.exists() else []
    path.write_text(json.dumps(before + rows))


def _write_csv(path: Path, rows: list[dict], append: bool) -> None:
    if append and path.exists():
        with path.open(newline="") as existing:
            header = next(csv.reader(existing))
        with path.open("a", newline="") as out:
            csv.DictWriter(out, header, restval="", lineterminator="\n").writerows(rows)
        return
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, TICKET_HEADER, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def load_master(
    root: Path, materialize: Callable[..., dg.ExecuteInProcessResult], contract: Contract
) -> None:
    """Generated master files, loaded: the dimensions the hand-written hour references."""
    generate(root, dt.date.fromisoformat(DAY), hours=[])
    dimensions = [spec.table for spec in contract.dimensions.values()]
    assert materialize(dimensions, contract.partitions.batch_start_date.isoformat()).success
