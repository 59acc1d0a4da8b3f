"""The ticket SLA view against hand-computed expectations, refreshed while it is being read."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import dagster as dg
import psycopg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.warehouse.sla import refresh_sla_view

HOUR = "2026-03-02-10:00"
FAR = "2030-01-01 00:00:00"  # a due time that has not passed yet
TICKETS = {
    # ticket: (status, first_response_at, first due, resolved_at, resolve due)
    "met": ("Resolved", "10:03", "10:05", "10:30", "11:00"),
    "breached": ("Open", "10:10", "10:05", None, "11:00"),
    "pending": ("Open", None, FAR, None, FAR),
    "reopened": ("Reopened", "10:02", "10:05", "10:20", FAR),
}
IDS = {name: f"00000000-0000-4000-8000-00000000000{index}" for index, name in enumerate(TICKETS, 1)}


def _at(clock: str | None) -> str:
    if clock is None:
        return ""
    return clock if clock.startswith("20") else f"2026-03-02 {clock}:00"


def _write_hour(root: Path, agent_id: int) -> None:
    folder = root / "input" / "stream" / "2026-03-02" / "10"
    folder.mkdir(parents=True)
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
            "order_created_at": "2026-03-02 09:40:00",
            "delivered_at": "2026-03-02 09:59:00",
        }
        for name in TICKETS
    ]
    (folder / "orders.json").write_text(json.dumps(orders))
    header = (
        "ticket_id,order_id,customer_id,driver_id,restaurant_id,agent_id,reason_id,priority_id,"
        "channel_id,status,refund_amount,created_at,first_response_at,resolved_at,"
        "sla_first_due_at,sla_resolve_due_at"
    )
    lines = [header]
    for name, (status, first, first_due, resolved, resolve_due) in TICKETS.items():
        order = IDS[name].replace("4000", "4111")
        lines.append(
            f"{IDS[name]},{order},,,,{agent_id},,1,1,{status},0,2026-03-02 10:00:00,"
            f"{_at(first)},{_at(resolved)},{_at(first_due)},{_at(resolve_due)}"
        )
    (folder / "tickets.csv").write_text("\n".join(lines) + "\n")
    transitions = [("met", [None, "Open", "InProgress", "Resolved"])]
    transitions.append(("reopened", [None, "Open", "InProgress", "Resolved", "Reopened"]))
    events = []
    for name, chain in transitions:
        for step, (old, new) in enumerate(itertools.pairwise(chain)):
            events.append(
                {
                    "event_id": IDS[name].replace("4000", f"42{step}0"),
                    "ticket_id": IDS[name],
                    "agent_id": agent_id,
                    "event_ts": f"2026-03-02 10:0{step + 1}:00",
                    "old_status": old,
                    "new_status": new,
                    "notes": None,
                }
            )
    (folder / "ticket_events.json").write_text(json.dumps(events))


def test_sla_statuses_minutes_and_reopens(
    data_dir: Path,
    materialize,
    warehouse_url: str,
    contract: Contract,  # type: ignore[no-untyped-def]
) -> None:
    generate(data_dir, dt.date(2026, 3, 2), hours=[0])
    dimensions = [spec.table for spec in contract.dimensions.values()]
    assert materialize(dimensions, contract.partitions.batch_start_date.isoformat()).success
    with psycopg.connect(warehouse_url) as conn:
        agent_id, team_id = conn.execute(
            "SELECT agent_id, team_id FROM dim_agent WHERE team_id IS NOT NULL LIMIT 1"
        ).fetchone()
    _write_hour(data_dir, agent_id)
    assert materialize(["fact_order", "fact_ticket", "fact_ticket_event"], HOUR).success
    assert materialize(["ticket_sla"], None).success

    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "SELECT ticket_id, first_response_status, resolution_status, reopen_count,"
            " first_response_min, resolution_min, team_id, region_id FROM ticket_sla"
        ).fetchall()
    by_id = {row[0]: row[1:] for row in rows}
    assert len(by_id) == 4
    assert by_id[IDS["met"]][:3] == ("met", "met", 0)
    assert float(by_id[IDS["met"]][3]) == 3.0
    assert float(by_id[IDS["met"]][4]) == 30.0
    assert by_id[IDS["met"]][5:] == (team_id, 3)
    assert by_id[IDS["breached"]][:3] == ("breached", "breached", 0)
    assert by_id[IDS["pending"]][:3] == ("pending", "pending", 0)
    # Reopened: answered in time, and its earlier resolution no longer counts.
    assert by_id[IDS["reopened"]][:3] == ("met", "pending", 1)


def test_refresh_does_not_wait_for_readers(
    data_dir: Path,
    materialize,
    warehouse_url: str,
    contract: Contract,  # type: ignore[no-untyped-def]
) -> None:
    assert materialize(["ticket_sla"], None).success  # creates the schema and a first refresh
    with psycopg.connect(warehouse_url) as reader, psycopg.connect(warehouse_url) as writer:
        reader.execute("SELECT count(*) FROM ticket_sla").fetchone()  # holds its lock until commit
        writer.execute("SET lock_timeout = '3s'")
        writer.commit()
        counts = refresh_sla_view(writer, contract)
        assert isinstance(counts, dict)
        reader.execute("SELECT count(*) FROM ticket_sla").fetchone()
        reader.commit()


def test_the_refresh_asset_reports_counts(materialize) -> None:  # type: ignore[no-untyped-def]
    result: dg.ExecuteInProcessResult = materialize(["ticket_sla"], None)
    (event,) = result.get_asset_materialization_events()
    assert event.step_materialization_data.materialization.metadata["dagster/row_count"].value == 0
