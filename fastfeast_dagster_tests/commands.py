"""Running the project's commands as a user does: the venv's programs, from the project root."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import psycopg

from fastfeast_dagster.contract import PROJECT_ROOT

BIN = Path(sys.executable).parent
# A finished run as the terminal shows it (run_report.py::format_report).
RUN_LINE = re.compile(
    r"^\d\d:\d\d:\d\d  (?P<outcome>ok|FAILED|CANCELED) +(?P<partition>\S+) +(?P<assets>.+?)"
    r"(?:  loaded (?P<loaded>[\d,]+) · quarantined [\d,]+ · repaired [\d,]+)?"
    r"(?:  [\d.]+ s)?(?:  checks failed: .+)?  \[(?P<run>[0-9a-f]{8})\]$"
)


def run_command(
    env: dict[str, str], program: str, *args: str, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """`program` from the venv (fastfeast, dagster, …) with `env`, output captured as text."""
    return subprocess.run(
        [str(BIN / program), *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def fresh_environment(state: Path) -> dict[str, str]:
    """The environment of a user with nothing set but a state dir and a data root inside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTFEAST_", "DAGSTER_"))}
    return env | {"FASTFEAST_STATE_DIR": str(state), "FASTFEAST_DATA_DIR": str(state / "data")}


def dagster_exports(env: dict[str, str]) -> dict[str, str]:
    """What `eval "$(fastfeast db env)"` would export."""
    output = run_command(env, "fastfeast", "db", "env").stdout
    pairs = [line.removeprefix("export ").split("=", 1) for line in output.splitlines()]
    return {name: value.strip("'") for name, value in pairs}


def dagster_materialize(
    env: dict[str, str], tables: list[str], partition_key: str
) -> subprocess.CompletedProcess[str]:
    """`dagster asset materialize` of some tables' partition, as an operator types it."""
    return run_command(
        env,
        "dagster",
        "asset",
        "materialize",
        "-m",
        "fastfeast_dagster.definitions",
        "--select",
        ",".join(tables),
        "--partition",
        partition_key,
    )


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dagster_run_ids(warehouse_url: str) -> set[str]:
    """The runs in the embedded server's Dagster storage (its `dagster` database)."""
    with psycopg.connect(warehouse_url, dbname="dagster") as conn:
        return {run_id for (run_id,) in conn.execute("SELECT run_id FROM runs")}


def holds_dagster_storage(warehouse_url: str) -> bool:
    """Whether Dagster's run storage has tables in the warehouse database."""
    with psycopg.connect(warehouse_url) as conn:
        (found,) = conn.execute("SELECT to_regclass('public.runs') IS NOT NULL").fetchone() or (0,)
    return bool(found)
