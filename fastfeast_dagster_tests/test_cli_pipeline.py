"""The pipeline from the command line, as a user runs it, on the embedded default."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.logs import LOG_FILE
from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster_tests.commands import (
    RUN_LINE,
    dagster_exports,
    dagster_materialize,
    dagster_run_ids,
    holds_dagster_storage,
    run_command,
)
from fastfeast_dagster_tests.derived_checks import (
    analyst_mismatches,
    mart_mismatches,
    sla_mismatches,
)

DAY_1 = dt.date(2026, 3, 2)
DAY_2 = dt.date(2026, 3, 3)


def test_dagster_asset_materialize_loads_a_day(user_env: dict[str, str]) -> None:
    generate(Path(user_env["FASTFEAST_DATA_DIR"]), DAY_1, hours=[])
    assert run_command(user_env, "fastfeast", "db", "start").returncode == 0
    env = user_env | dagster_exports(user_env)
    tables = ["dim_city", "dim_region", "dim_segment", "dim_customer"]
    result = dagster_materialize(env, tables, DAY_1.isoformat())
    assert result.returncode == 0, result.stderr[-3000:]
    with psycopg.connect(env["FASTFEAST_DATABASE_URL"]) as conn:
        counts = dict(
            conn.execute(
                "SELECT source_table, sum(valid_records) FROM pipeline_file_log GROUP BY 1"
            ).fetchall()
        )
        (customers,) = conn.execute("SELECT count(*) FROM dim_customer").fetchone()
    assert set(counts) == {"dim_city", "dim_region", "dim_segment", "dim_customer"}
    assert customers == counts["dim_customer"] > 400


def test_ingest_loads_everything_and_a_second_ingest_runs_nothing(
    user_env: dict[str, str],
) -> None:
    root = Path(user_env["FASTFEAST_DATA_DIR"])
    generate(root, DAY_1, hours=[])
    manifest = generate(root, DAY_2, hours=[])
    first = run_command(user_env, "fastfeast", "ingest")
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    # One line per run (master, day 1, day 2; the calendar tables; the orphan promotion's latest
    # tick), the summary, and nothing else.
    *runs, summary = first.stdout.splitlines()
    assert [RUN_LINE.match(line)["outcome"] for line in runs] == ["ok"] * 5, runs  # type: ignore[index]
    assert summary.startswith("5 run(s), 0 failed")
    assert first.stderr == ""
    second = run_command(user_env, "fastfeast", "ingest")
    assert second.returncode == 0, second.stderr[-3000:]
    # Only a new promotion tick may run, if the hour's tick passed between the two calls.
    repeated = [m for line in second.stdout.splitlines() if (m := RUN_LINE.match(line))]
    assert all("true_orphan" in m["assets"] for m in repeated), second.stdout
    assert repeated or "nothing new to ingest" in second.stdout
    url = run_command(user_env, "fastfeast", "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        (drivers,) = conn.execute("SELECT count(*) FROM dim_driver").fetchone()
        (runs,) = conn.execute("SELECT count(DISTINCT run_id) FROM pipeline_file_log").fetchone()
    assert drivers == manifest.tables["dim_driver"]["expected_rows"]
    assert runs == 3


@pytest.mark.parametrize("exported_first", [False, True], ids=["plain-first", "exported-first"])
def test_ingest_and_the_dagster_cli_open_one_instance_whatever_the_shell_exports(
    user_env: dict[str, str], exported_first: bool
) -> None:
    # `eval "$(fastfeast db env)"` exports the embedded warehouse's URL; a shell with it and a
    # shell without it must open the same Dagster storage, or the daemon and `ingest` would not
    # see each other's runs and would load the same files twice.
    generate(Path(user_env["FASTFEAST_DATA_DIR"]), DAY_1, hours=[])
    assert run_command(user_env, "fastfeast", "db", "start").returncode == 0
    shells = [user_env, user_env | dagster_exports(user_env)]
    first, second = reversed(shells) if exported_first else shells
    loaded = run_command(first, "fastfeast", "ingest")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr[-3000:]
    # The master snapshot, the batch day, the calendar tables, the orphan promotion's tick.
    assert "4 run(s), 0 failed" in loaded.stdout
    again = run_command(second, "fastfeast", "ingest")
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    # Only a new promotion tick may run, if the hour's tick passed between the two calls.
    repeated = [m for line in again.stdout.splitlines() if (m := RUN_LINE.match(line))]
    assert all("true_orphan" in m["assets"] for m in repeated), again.stdout
    for env in (first, second):
        result = dagster_materialize(env, ["dim_city"], DAY_1.isoformat())
        assert result.returncode == 0, result.stderr[-3000:]
    url = run_command(user_env, "fastfeast", "db", "url").stdout.strip()
    runs = dagster_run_ids(url)
    assert len(runs) == 4 + len(repeated) + 2
    with psycopg.connect(url) as conn:
        loads = {run for (run,) in conn.execute("SELECT DISTINCT run_id FROM pipeline_file_log")}
    assert len(loads) == 2 and loads <= runs  # the replays of dim_city changed nothing
    assert not holds_dagster_storage(url)


def test_ingest_of_a_past_day_completes_the_warehouse_and_follows_late_data(
    user_env: dict[str, str],
) -> None:
    root = Path(user_env["FASTFEAST_DATA_DIR"])
    generate(root, DAY_1, hours=[9, 10, 11])
    late = root / "input" / "stream" / str(DAY_1) / "11"
    held_back = root.parent / "held_back"
    shutil.move(late, held_back)
    first = run_command(user_env, "fastfeast", "ingest")
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    url = run_command(user_env, "fastfeast", "db", "url").stdout.strip()
    day = int(DAY_1.strftime("%Y%m%d"))
    # One SLA row per loaded ticket, both marts of the day equal to the facts' aggregates.
    assert sla_mismatches(url) == []
    assert mart_mismatches(url, day) == []

    def day_tickets() -> int:
        with psycopg.connect(url) as conn:
            query = "SELECT sum(tickets) FROM mart_tickets_daily WHERE date_key = %s"
            return conn.execute(query, (day,)).fetchone()[0]

    before = day_tickets()
    shutil.move(held_back, late)  # the late hour of the same day
    second = run_command(user_env, "fastfeast", "ingest")
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert sla_mismatches(url) == []
    assert mart_mismatches(url, day) == []
    assert day_tickets() > before

    # Hours after its resolution, a resolved ticket is reopened: only the event arrives.
    with psycopg.connect(url) as conn:
        ticket, agent, resolved, created = conn.execute(
            "SELECT ticket_id, agent_id, resolved_at, date_key FROM fact_ticket t"
            " WHERE status = 'Resolved' AND resolved_at IS NOT NULL AND NOT EXISTS ("
            "  SELECT 1 FROM fact_ticket_event e"
            "  WHERE e.ticket_id = t.ticket_id AND e.new_status = 'Reopened')"
            " ORDER BY ticket_id LIMIT 1"
        ).fetchone()
    reopened_at = resolved + dt.timedelta(hours=3)
    folder = root / "input" / "stream" / f"{reopened_at:%Y-%m-%d}" / f"{reopened_at:%H}"
    folder.mkdir(parents=True)
    event = {
        "event_id": str(uuid.uuid4()),
        "ticket_id": ticket,
        "agent_id": agent,
        "event_ts": f"{reopened_at:%Y-%m-%d %H:%M:%S}",
        "old_status": "Resolved",
        "new_status": "Reopened",
        "notes": None,
    }
    (folder / "ticket_events.json").write_text(json.dumps([event]))
    third = run_command(user_env, "fastfeast", "ingest")
    assert third.returncode == 0, third.stdout + third.stderr[-3000:]
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT reopen_count, status, resolution_status FROM ticket_sla WHERE ticket_id = %s",
            (ticket,),
        ).fetchone()
    assert row[:2] == (1, "Reopened")
    assert sla_mismatches(url) == []
    assert mart_mismatches(url, created) == []
    # The reference analysts' queries on v_ticket_sla_performance still answer correctly.
    assert analyst_mismatches(url, DAY_1) == []


def test_demo_loads_a_day_and_prints_the_summary(user_env: dict[str, str]) -> None:
    result = run_command(user_env, "fastfeast", "demo", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # 26 loads (master, batch day, 24 hours); the calendar; the day's SLA rows and marts; the
    # ticket mart of the next day (tickets of late orders); the due orphan promotion.
    assert "30 runs, 0 failed" in out
    for heading in ("rows per table", "quarantine (open rows) by stage / rule", "true orphans:"):
        assert heading in out
    assert "SLA compliance: first response" in out
    fact_orders = next(line for line in out.splitlines() if line.strip().startswith("fact_order"))
    assert int(fact_orders.split()[-1].replace(",", "")) > 1000
    # The runs' logs went to the log file as JSON lines, not to the terminal, and no log
    # anywhere holds a clear PII value.
    state = Path(user_env["FASTFEAST_STATE_DIR"])
    records = [json.loads(line) for line in (state / LOG_FILE).read_text().splitlines()]
    assert {"fastfeast_dagster.warehouse.load", "dagster"} <= {r["logger"] for r in records}
    assert "fastfeast_dagster" not in result.stderr
    manifest = Manifest.load(Path(user_env["FASTFEAST_DATA_DIR"]) / "manifest.json")
    clear = {
        str(value)
        for columns in manifest.pii_clear_values.values()
        for values in columns.values()
        for value in values
    }
    logs = [result.stdout, result.stderr]
    logs += [
        path.read_text(errors="replace")
        for path in state.rglob("*")
        if path.suffix in (".out", ".err", ".log", ".jsonl")
    ]
    assert clear and not [value for value in clear if any(value in text for text in logs)]
    # The demo's runs are where a shell with the exports looks for them: nothing runs twice.
    again = run_command(user_env | dagster_exports(user_env), "fastfeast", "ingest")
    assert "nothing new to ingest" in again.stdout, again.stdout + again.stderr[-3000:]
    url = run_command(user_env, "fastfeast", "db", "url").stdout.strip()
    assert len(dagster_run_ids(url)) >= 26
    assert not holds_dagster_storage(url)
