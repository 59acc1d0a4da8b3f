"""`fastfeast demo`: a generated day through the real Dagster path, then a summary of the result."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import psycopg
from psycopg import sql

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.ingest import RunOutcome, ingest
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.warehouse.sla import SLA_VIEW


def run_demo(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    contract: Contract,
    *,
    data_root: Path,
    warehouse_url: str,
    day: dt.date,
    say: Callable[[str], None] = print,
) -> int:
    """Generate, then ingest (which also brings the SLA rows and marts up to date and runs the due
    orphan promotion); returns the failed run count."""
    started = time.monotonic()
    say(f"generating {day} (master, batch, 24 stream hours) under {data_root} …")
    generate(data_root, day)
    say("ingesting through the sensors' run requests (waits for files to settle) …")

    def progress(run: RunOutcome) -> None:
        state = "ok" if run.success else "FAILED"
        say(f"  {state:6} {run.partition_key or '':17} {', '.join(run.assets)}")

    summary = ingest(defs, instance, on_run=progress, log_level="WARNING")
    failed = len(summary.failed)
    say("")
    say(report(warehouse_url, contract))
    say(f"\n{len(summary.runs)} runs, {failed} failed, in {time.monotonic() - started:.1f} s")
    return failed


def report(url: str, contract: Contract) -> str:
    """Rows per table, quarantine by stage and rule, true orphans and SLA compliance."""
    schema = contract.warehouse.schema_name
    lines = ["rows per table"]
    with psycopg.connect(url) as conn:
        for spec in contract.sources.values():
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, spec.table))
            (count,) = conn.execute(query).fetchone() or (0,)
            lines.append(f"  {spec.table:22} {count:>8,}")
        lines.append("quarantine (open rows) by stage / rule")
        rejects = conn.execute(
            sql.SQL(
                "SELECT rejection_stage, rejection_rule, count(*) FROM {} WHERE superseded_at IS"
                " NULL AND resolved_at IS NULL GROUP BY 1, 2 ORDER BY 1, 3 DESC"
            ).format(sql.Identifier(schema, "quarantine"))
        ).fetchall()
        lines += [f"  {stage:8} {rule:26} {count:>6,}" for stage, rule, count in rejects]
        (orphans,) = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "true_orphan"))
        ).fetchone() or (0,)
        lines.append(f"true orphans: {orphans:,}")
        sla = conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE first_response_status = 'met'),"
                " count(*) FILTER (WHERE first_response_status IS NOT NULL"
                "   AND first_response_status <> 'pending'),"
                " count(*) FILTER (WHERE resolution_status = 'met'),"
                " count(*) FILTER (WHERE resolution_status IS NOT NULL"
                "   AND resolution_status <> 'pending'),"
                " count(*) FILTER (WHERE resolution_status = 'pending') FROM {}"
            ).format(sql.Identifier(schema, SLA_VIEW))
        ).fetchone()
    met_first, judged_first, met_resolution, judged_resolution, pending = sla or (0, 0, 0, 0, 0)
    lines.append(
        f"SLA compliance: first response {_share(met_first, judged_first)},"
        f" resolution {_share(met_resolution, judged_resolution)} ({pending} tickets pending)"
    )
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% of {whole}" if whole else "n/a"
