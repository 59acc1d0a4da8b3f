"""Benchmark: one loaded hour's SLA rows with 1,000,000 tickets stored, against a full refresh.

    python benchmarks/bench_sla_update.py [--tickets 1000000] [--days 100]

The warehouse is filled in SQL (the load is not what is measured): `--tickets` tickets spread
evenly over `--days` days of hours, three status events each and two more for 8 % of them
(reopened, resolved again). The SLA state is then built once from every hour.

Measured, in the same run and on the same server:
- baseline: a full refresh, every hour applied again (every ticket recomputed and compared),
  the median of three; and the first build of the state for reference;
- an hour re-delivered with changes (a third of its tickets closed, one in ten answered later):
  `apply_fact_hours` for that hour, the median of three rounds of new changes;
- the same hour replayed unchanged, and a later hour that holds only reopen events of tickets
  from other days (the late-event path).

Target: the hour's update <= 1 s whatever the history; reported as a ratio to the full refresh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from fastfeast_dagster.contract import load_contract
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.sla import SlaUpdate, apply_fact_hours

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_database, print_stages, print_table

START = "2026-01-01 00:00:00"

_TICKETS = """
INSERT INTO fact_ticket (ticket_id, status, created_at, first_response_at, resolved_at,
    sla_first_due_at, sla_resolve_due_at, date_key, time_key, first_response_min,
    resolution_min, _source_file, _source_row, _partition_key, _run_id)
SELECT md5('t' || g)::uuid::text,
       CASE WHEN g %% 10 = 0 THEN 'Open' ELSE 'Resolved' END,
       created, created + interval '12 minutes' * (1 + g %% 4),
       CASE WHEN g %% 10 = 0 THEN NULL ELSE created + interval '20 minutes' * (1 + g %% 20) END,
       created + interval '30 minutes', created + interval '4 hours',
       to_char(created, 'YYYYMMDD')::int, to_char(created, 'HH24MI')::int,
       12 * (1 + g %% 4), CASE WHEN g %% 10 = 0 THEN NULL ELSE 20 * (1 + g %% 20) END,
       'bench', g, to_char(hour, 'YYYY-MM-DD-HH24:00'), 'bench'
FROM generate_series(1, %(tickets)s) AS g,
     LATERAL (SELECT %(start)s::timestamp
                  + interval '1 hour' * ((g - 1) / %(per_hour)s) AS hour) h,
     LATERAL (SELECT h.hour + interval '1 minute' * (g %% 60) AS created) c
"""
# Open → InProgress → Resolved for the answered tickets; reopened and resolved again for 8 %.
_EVENTS = """
INSERT INTO fact_ticket_event (event_id, ticket_id, event_ts, old_status, new_status,
    date_key, time_key, _source_file, _source_row, _partition_key, _run_id)
SELECT md5('e' || t._source_row || '.' || s.step)::uuid::text, t.ticket_id, s.at, s.old, s.new,
       to_char(s.at, 'YYYYMMDD')::int, to_char(s.at, 'HH24MI')::int,
       'bench', t._source_row * 5 + s.step, t._partition_key, 'bench'
FROM fact_ticket t,
     LATERAL (VALUES
        (0, t.created_at, NULL, 'Open'),
        (1, t.first_response_at, 'Open', 'InProgress'),
        (2, t.resolved_at - interval '1 hour', 'InProgress', 'Resolved'),
        (3, t.resolved_at - interval '30 minutes', 'Resolved', 'Reopened'),
        (4, t.resolved_at, 'Reopened', 'Resolved')
     ) AS s (step, at, old, new)
WHERE s.step = 0 OR (t.resolved_at IS NOT NULL
      AND (s.step < 3 OR t._source_row % 25 < 2))
"""


def fill(url: str, tickets: int, days: int) -> list[str]:
    """The fact tables, in SQL; returns every hour that holds tickets."""
    contract = load_contract()
    hours = days * 24
    with psycopg.connect(url) as conn:
        apply_schema(conn, contract)
        # Setup only: the parents are in this very statement's table; skip the FK triggers.
        conn.execute("SET session_replication_role = replica")
        params = {"tickets": tickets, "start": START, "per_hour": -(-tickets // hours)}
        conn.execute(_TICKETS, params)  # type: ignore[arg-type]
        conn.execute(_EVENTS)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE fact_ticket")
        conn.execute("VACUUM ANALYZE fact_ticket_event")
        rows = conn.execute("SELECT DISTINCT _partition_key FROM fact_ticket ORDER BY 1")
        return [hour for (hour,) in rows]


def timed(url: str, hours: list[str]) -> tuple[float, SlaUpdate]:
    contract = load_contract()
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        update = apply_fact_hours(conn, contract, hours)
        return time.perf_counter() - started, update


def median_of(runs: int, prepare: Callable[[int], None], run: Callable[[], float]) -> float:
    times = []
    for round_ in range(runs):
        prepare(round_)
        times.append(run())
    return statistics.median(times)


def change_hour(url: str, hour: str, round_: int) -> None:
    """A re-delivery of the hour that changed some of its tickets (a new change each round)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE fact_ticket SET status = CASE WHEN status = 'Closed' THEN 'Resolved'"
            " ELSE 'Closed' END WHERE _partition_key = %s AND _source_row %% 3 = %s",
            (hour, round_ % 3),
        )
        conn.execute(
            "UPDATE fact_ticket SET first_response_at = first_response_at + interval '1 minute'"
            " WHERE _partition_key = %s AND _source_row %% 10 = %s",
            (hour, round_),
        )


def add_reopens(url: str, hour: str, count: int) -> None:
    """An hour holding only reopen events, for tickets of other days (one per `count` step)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO fact_ticket_event (event_id, ticket_id, event_ts, old_status, new_status,"
            " date_key, time_key, _source_file, _source_row, _partition_key, _run_id)"
            " SELECT md5('late' || ticket_id)::uuid::text, ticket_id, %(at)s::timestamp,"
            " 'Resolved', 'Reopened', to_char(%(at)s::timestamp, 'YYYYMMDD')::int,"
            " to_char(%(at)s::timestamp, 'HH24MI')::int, 'bench', _source_row, %(hour)s, 'bench'"
            " FROM fact_ticket WHERE resolved_at IS NOT NULL AND _source_row %% %(step)s = 7"
            " LIMIT %(count)s",
            {"at": hour[:10] + " " + hour[11:], "hour": hour, "step": 997, "count": count},
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=100)
    args = parser.parse_args()
    with benchmark_database() as url:
        started = time.perf_counter()
        every_hour = fill(url, args.tickets, args.days)
        print(f"filled {args.tickets:,} tickets over {len(every_hour):,} hours", end="")
        print(f" in {time.perf_counter() - started:.0f} s")
        build, built = timed(url, every_hour)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE ticket_sla_state")
        full = median_of(3, lambda _: None, lambda: timed(url, every_hour)[0])
        hour = every_hour[len(every_hour) // 2]
        updates: list[SlaUpdate] = []

        def hour_update() -> float:
            seconds, update = timed(url, [hour])
            updates.append(update)
            return seconds

        changed = median_of(3, lambda round_: change_hour(url, hour, round_), hour_update)
        replay, replayed = timed(url, [hour])
        last = dt.datetime.strptime(every_hour[-1], "%Y-%m-%d-%H:%M")
        late_hour = f"{last + dt.timedelta(hours=1):%Y-%m-%d-%H:%M}"
        add_reopens(url, late_hour, 200)
        late, reopened = timed(url, [late_hour])
    update = updates[len(updates) // 2]
    print_table(
        f"SLA rows with {args.tickets:,} tickets stored ({built.written:,} rows)",
        [
            ("first build of the state, every hour (reference)", build, args.tickets / build),
            ("full refresh: every hour again (baseline, median of 3)", full, args.tickets / full),
            (
                f"one hour re-delivered: {update.tickets} tickets, {update.written} changed"
                " (median of 3)",
                changed,
                None,
            ),
            (f"the same hour replayed unchanged ({replayed.written} written)", replay, None),
            (
                f"a late hour of {reopened.tickets} reopen events of other days' tickets",
                late,
                None,
            ),
        ],
    )
    print_stages(update.stage_seconds)
    print(f"\nratio of the hour's update to a full refresh: {changed / full:.4f}x")
    print(f"the hour's update: {changed:.3f} s (target <= 1 s whatever the history)")


if __name__ == "__main__":
    main()
