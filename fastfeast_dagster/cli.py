"""The `fastfeast` command: the embedded database, data generation and the Dagster entry points."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fastfeast_dagster.contract import ContractError, default_contract, state_root
from fastfeast_dagster.deployment import DeploymentError, refuse_fallback
from fastfeast_dagster.warehouse.connection import WAREHOUSE_URL_ENV, redact
from fastfeast_dagster.warehouse.embedded import EmbeddedServerError

if TYPE_CHECKING:
    import dagster as dg

    from fastfeast_dagster.ingest import IngestSummary, RunOutcome
    from fastfeast_dagster.run_report import RunReport
    from fastfeast_dagster.warehouse.connection import DatabaseUrls
    from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit status 2, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (CliError, ContractError, DeploymentError, EmbeddedServerError) as error:
        print(f"fastfeast: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastfeast", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="the embedded PostgreSQL server")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    for name, handler, text in [
        ("start", _db_start, "start the embedded server (no-op when running) and apply the schema"),
        ("stop", _db_stop, "stop the embedded server"),
        ("status", _db_status, "say whether the embedded server runs"),
        ("url", _db_url, "print the warehouse URL"),
        ("env", _db_env, "print shell exports for dagster commands run by hand"),
        ("psql", _db_psql, "open psql on the warehouse"),
    ]:
        db_commands.add_parser(name, help=text).set_defaults(handler=handler)

    generate = commands.add_parser("generate", help="write synthetic master/batch/stream files")
    generate.add_argument("--out", type=Path, required=True, help="data root to write into")
    generate.add_argument("--date", type=dt.date.fromisoformat, required=True, help="YYYY-MM-DD")
    generate.add_argument("--hours", type=int, nargs="+", default=list(range(24)))
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--scale", type=float, default=1.0, help="multiplies row counts")
    generate.set_defaults(handler=_generate)

    ingest = commands.add_parser(
        "ingest", help="run the sensors' requests until nothing new arrives (cron, CI, catch-up)"
    )
    ingest.add_argument(
        "--wait", type=float, default=120.0, help="seconds to wait for files still being written"
    )
    ingest.add_argument(
        "--verbose", action="store_true", help="print Dagster's run events too (DEBUG)"
    )
    ingest.set_defaults(handler=_ingest)

    demo = commands.add_parser(
        "demo", help="generate a day of data, load it through Dagster, print a summary"
    )
    demo.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 3, 2))
    demo.set_defaults(handler=_demo)

    expectations = commands.add_parser(
        "expectations", help="Great Expectations suites generated from the contract"
    )
    expectations.add_argument(
        "action",
        choices=["build", "check"],
        help="build: regenerate (keeping hand-written expectations); check: report drift",
    )
    expectations.set_defaults(handler=_expectations)

    contract = commands.add_parser("contract", help="the contract against what files deliver")
    contract_commands = contract.add_subparsers(required=True, metavar="ACTION")
    drift = contract_commands.add_parser(
        "drift", help="columns the files added or dropped, and the YAML that adopts them"
    )
    drift.add_argument("--table", help="one warehouse table (default: all)")
    drift.set_defaults(handler=_contract_drift)

    dev = commands.add_parser("dev", help="run the Dagster UI and daemon on the embedded default")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--verbose", action="store_true", help="print Dagster's own output too")
    dev.set_defaults(handler=_dev)
    return parser


def _embedded() -> EmbeddedPostgres | None:
    from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres

    if os.environ.get(WAREHOUSE_URL_ENV):
        return None
    refuse_fallback(WAREHOUSE_URL_ENV, "the embedded PostgreSQL")
    return EmbeddedPostgres(state_root(default_contract()))


def _db_start(_: argparse.Namespace) -> int:
    server = _embedded()
    if server is None:
        print(f"{WAREHOUSE_URL_ENV} is set: using that server, nothing to start")
    elif server.status().running:
        print(f"{server.status().describe()}; nothing to do")
    else:
        print(server.start().describe())
    print(f"warehouse schema applied: {redact(_apply_schema())}")
    return 0


def _apply_schema() -> str:
    """Bring the warehouse to the contract (starting the embedded server if needed); its URL."""
    import psycopg

    from fastfeast_dagster.warehouse.connection import resolve_database_urls
    from fastfeast_dagster.warehouse.ddl import SchemaBusy, apply_schema

    url = resolve_database_urls(default_contract()).warehouse
    with psycopg.connect(url) as conn:
        try:
            apply_schema(conn, default_contract())
        except SchemaBusy as error:
            raise CliError(str(error)) from None
    return url


def _contract_drift(args: argparse.Namespace) -> int:
    """Per table, its drifted columns as the drift log adds them up, then the YAML to adopt."""
    import psycopg

    from fastfeast_dagster.validation.drift import adoption_yaml
    from fastfeast_dagster.warehouse.drift import drifted_columns

    contract = default_contract()
    with psycopg.connect(_apply_schema()) as conn:
        drifted = drifted_columns(conn, contract, args.table)
    if not drifted:
        print("no schema drift: every file's columns are the contract's")
        return 0
    tables = dict.fromkeys(contract.sources[column.source].table for column in drifted)
    for table in tables:
        own = [column for column in drifted if contract.sources[column.source].table == table]
        print(f"{table}:")
        for column in own:
            print(
                f"  {column.column:<24} {column.kind:<8} {column.rows:>8} row(s) in"
                f" {column.files} file(s)  first seen {column.first_seen}, last seen"
                f" {column.last_seen}"
            )
        print()
        print("\n".join(f"  {line}" for line in adoption_yaml(own).splitlines()))
        print()
    return 0


def _db_stop(_: argparse.Namespace) -> int:
    server = _embedded()
    if server is None:
        print(f"{WAREHOUSE_URL_ENV} is set: that server is not ours to stop")
    elif server.stop():
        print("embedded PostgreSQL stopped")
    else:
        print("embedded PostgreSQL was not running")
    return 0


def _db_status(_: argparse.Namespace) -> int:
    server = _embedded()
    if server is None:
        print(f"using {redact(os.environ[WAREHOUSE_URL_ENV])} ({WAREHOUSE_URL_ENV})")
        return 0
    status = server.status()
    print(status.describe())
    return 0 if status.running else 3


def _running_urls() -> DatabaseUrls:
    from fastfeast_dagster.warehouse.connection import resolve_database_urls

    server = _embedded()
    if server is not None and not server.status().running:
        raise CliError("embedded PostgreSQL is not running: run `fastfeast db start`")
    return resolve_database_urls(default_contract())


def _db_url(_: argparse.Namespace) -> int:
    print(_running_urls().warehouse)
    return 0


def _db_env(_: argparse.Namespace) -> int:
    from fastfeast_dagster.runtime import dagster_environment

    _running_urls()
    for name, value in dagster_environment(default_contract()).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _db_psql(_: argparse.Namespace) -> int:
    from fastfeast_dagster.warehouse.embedded import psql_path

    url = _running_urls().warehouse
    return subprocess.call([str(psql_path()), url])


def _generate(args: argparse.Namespace) -> int:
    from fastfeast_dagster.synthetic import generate

    manifest = generate(args.out, args.date, hours=args.hours, seed=args.seed, scale=args.scale)
    manifest_path = args.out / "manifest.json"
    print(f"wrote {len(manifest.files)} files under {args.out} (manifest: {manifest_path})")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    import dagster as dg

    from fastfeast_dagster.ingest import ingest
    from fastfeast_dagster.runtime import apply_environment, dagster_environment
    from fastfeast_dagster.warehouse.connection import is_unreachable, unreachable_message

    apply_environment(dagster_environment(default_contract()))
    from fastfeast_dagster.definitions import defs

    started = time.monotonic()
    try:
        with dg.DagsterInstance.get() as instance:
            summary = ingest(
                defs,
                instance,
                max_wait_seconds=args.wait,
                on_run=lambda run: print(_run_line(instance, run), flush=True),
                # Dagster's own console output; the run line and its errors say what matters.
                log_level="DEBUG" if args.verbose else "CRITICAL",
            )
    except Exception as error:
        if is_unreachable(error):  # before any run: Dagster's storage is not there
            raise CliError(unreachable_message(os.environ[WAREHOUSE_URL_ENV])) from None
        raise
    return _ingest_summary(summary, time.monotonic() - started)


def _run_line(instance: dg.DagsterInstance, run: RunOutcome) -> str:
    """A finished run's line (and errors), from its record; from what `ingest` saw of it when the
    record cannot be read, so that no run goes unreported."""
    from fastfeast_dagster.run_report import format_report, report_run
    from fastfeast_dagster.warehouse.connection import is_unreachable

    report = None
    # A run that lost its storage may have no record: its outcome says what happened.
    if not run.unreachable:
        try:
            report = report_run(instance, run.run_id)
        except Exception as error:
            # The storage went away since the run finished; `ingest` meets it next and ends.
            if not is_unreachable(error):
                raise
    return format_report(report or _outcome_report(run))


def _outcome_report(run: RunOutcome) -> RunReport:
    from fastfeast_dagster.run_report import RunReport

    return RunReport(
        run_id=run.run_id,
        outcome="ok" if run.success else "FAILED",
        ended=dt.datetime.now().astimezone(),
        partition=run.partition_key,
        # Sorted, as a report from the run's record lists them.
        assets=tuple(sorted(run.assets)),
        rows={},
        seconds=None,
        failed_checks=(),
        errors=() if run.success else (run.error or "the run was not recorded",),
    )


def _ingest_summary(summary: IngestSummary, elapsed: float) -> int:
    """The call's last line, and its exit status: 1 if a run failed or the call was cut short."""
    from fastfeast_dagster.warehouse.connection import unreachable_message

    unreachable = unreachable_message(os.environ[WAREHOUSE_URL_ENV])
    if summary.unreachable and not summary.runs:
        raise CliError(unreachable)
    if not summary.runs:
        print(f"nothing new to ingest ({elapsed:.1f} s)")
    else:
        print(f"{len(summary.runs)} run(s), {len(summary.failed)} failed, in {elapsed:.1f} s")
    if summary.retries_due:
        wait = max(0.0, summary.retries_due[0] - time.time())
        print(
            f"{len(summary.retries_due)} failed run(s) wait for their retry backoff; the next is"
            f" due in {wait:.0f} s (the daemon runs it, or `fastfeast ingest` again then)"
        )
    if not summary.runs:
        return 0
    # Lost between runs, the storage is on no run's line: what was left is the next call's.
    if summary.unreachable and not any(run.unreachable for run in summary.runs):
        print(f"stopped: {unreachable}")
        return 1
    return 1 if summary.failed else 0


def _demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from fastfeast_dagster.contract import data_root
    from fastfeast_dagster.demo import run_demo
    from fastfeast_dagster.runtime import apply_environment, dagster_environment

    contract = default_contract()
    environment = dagster_environment(contract)
    apply_environment(environment)
    from fastfeast_dagster.definitions import defs

    with dg.DagsterInstance.get() as instance:
        failed = run_demo(
            defs,
            instance,
            contract,
            data_root=data_root(contract),
            warehouse_url=environment["FASTFEAST_DATABASE_URL"],
            day=args.date,
        )
    return 1 if failed else 0


def _expectations(args: argparse.Namespace) -> int:
    from fastfeast_dagster.checks.suites import expectations_command
    from fastfeast_dagster.contract import EXPECTATIONS_DIR

    return expectations_command(args.action, default_contract(), EXPECTATIONS_DIR)


def _dev(args: argparse.Namespace) -> int:
    import dagster as dg

    from fastfeast_dagster.contract import PROJECT_ROOT, data_root
    from fastfeast_dagster.dev_console import console, printer, without_dev_notice
    from fastfeast_dagster.logs import log_file_path
    from fastfeast_dagster.runtime import apply_environment, dagster_environment

    contract = default_contract()
    environment = dagster_environment(contract)
    # Analysts can query (empty) tables from the first minute, before any file has arrived.
    _apply_schema()
    root = data_root(contract)
    folders = [root / contract.paths.master, root / contract.paths.batch]
    say = printer()
    say(f"watching {', '.join(map(str, folders))} and {root / contract.paths.stream}")
    say(
        f"log: {log_file_path()} (everything, as JSON)"
        + ("" if args.verbose else "; one line per run here, --verbose for Dagster's own output")
    )
    # The venv's own dagster: `make dev` runs this without activating the venv. Run from
    # DAGSTER_HOME, whose dagster.yaml is the one it uses: from the project folder, dagster dev
    # would warn that the project's dagster.yaml "will not be used", which is not so (it is linked).
    apply_environment(environment)  # this process reads the same instance, for the run lines
    # Dagster's tables made here, once: the webserver, the daemon and the code server would each
    # create them at the same time on a fresh state dir, and the losers' retries print warnings.
    dg.DagsterInstance.get().dispose()
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-p", str(args.port)]
    if not args.verbose:
        command += ["--log-format", "json"]  # records the log file keeps as they are
    # Its own process group, so that whatever it starts (code servers, run workers, log tails)
    # can be ended with it: some of them would otherwise linger until a heartbeat times out.
    child = subprocess.Popen(
        command,
        env={**os.environ, **environment, "PYTHONWARNINGS": without_dev_notice()},
        cwd=environment["DAGSTER_HOME"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert child.stdout is not None
    with console(child.stdout, say, port=args.port, verbose=args.verbose):
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            try:
                return child.wait(timeout=90)
            except subprocess.TimeoutExpired:
                child.terminate()
                return child.wait()
        finally:
            _end_process_group(child.pid)


def _end_process_group(group: int, grace_seconds: float = 10.0) -> None:
    import psutil

    def members() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except (ProcessLookupError, psutil.Error):
                continue
        return found

    for stop_signal in (signal.SIGTERM, signal.SIGKILL):
        if not members():
            return
        os.killpg(group, stop_signal)
        deadline = time.monotonic() + grace_seconds
        while members() and time.monotonic() < deadline:
            time.sleep(0.2)


if __name__ == "__main__":
    raise SystemExit(main())
