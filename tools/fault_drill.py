"""A longer fault drill than the test suite: a bigger hour, kills at random moments, repeated.

    .venv/bin/python tools/fault_drill.py [--scale 20] [--rounds 3] [--daemon] [--seed 1]

Each round runs every way to fail once, from the same template (master and batch day loaded):
SIGKILL of `fastfeast ingest` held inside the COPY, inside the upsert and between two tables of
the hour; SIGKILL at a random moment of the hour's run, unheld, whatever it was doing;
`fastfeast db stop` at a random moment; with --daemon, SIGKILL of the run worker under `fastfeast
dev` inside the COPY. After each, one more `fastfeast ingest` (or the daemon's retry sensor)
must bring the warehouse to exactly the state of an uninterrupted run. One line per case: how
long the killed load's backend kept its locks, how long healing took, whether the state matches.
Exits 1 if any case did not heal, or if a stopped server's run did not end as it must (exit
status 1, the run FAILED with one `warehouse unreachable` line). The suite's version of this is
`fastfeast_dagster_tests/test_fault_injection.py`; this one is for bigger hours and many rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastfeast_dagster_tests import faults
from fastfeast_dagster_tests.commands import RUN_LINE
from fastfeast_dagster_tests.world import (
    World,
    digest,
    kill_held_ingest,
    kill_run_worker_under_dev,
    prepare_world,
)

DAY = dt.date(2026, 3, 2)
HOUR = f"{DAY}-10:00"


class Observed(NamedTuple):
    text: str  # what the interruption did: how long locks were held, or how the run ended
    as_expected: bool = True


def _any_load(url: str, timeout: float = 600) -> int | None:
    """The backend pid of the first load that shows, whatever it is doing."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'fastfeast-load %'"
            ).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.05)
    return None


def _release_time(url: str, backend: int | None) -> str:
    if backend is None:
        return "-"
    try:
        return f"{faults.seconds_until_gone(url, backend, timeout=120):.2f} s"
    except AssertionError:
        return "> 120 s"


def held_kill(world: World, point: str) -> Observed:
    return Observed(f"{kill_held_ingest(world, point, HOUR)[2]:.2f} s")


def random_kill(world: World, rng: random.Random) -> Observed:
    url = world.url()
    ingest = world.start("fastfeast", "ingest")
    backend = _any_load(url)
    time.sleep(rng.uniform(0, 3))
    os.kill(ingest.pid, signal.SIGKILL)
    ingest.wait(60)
    return Observed(_release_time(url, backend))


def random_stop(world: World, rng: random.Random) -> Observed:
    url = world.url()
    ingest = world.start("fastfeast", "ingest")
    _any_load(url)
    time.sleep(rng.uniform(0, 3))
    world.run("fastfeast", "db", "stop")
    ingest.wait(600)
    out, err = world.output("fastfeast", "ingest")
    lines = out.splitlines()
    # Each failed run's line is followed by what failed it.
    failed = [
        lines[at + 1] if at + 1 < len(lines) else ""
        for at, line in enumerate(lines)
        if (run := RUN_LINE.match(line)) and run["outcome"] == "FAILED"
    ]
    # A stop after the call had finished, or between its runs, stopped no run: that tests
    # nothing, and must not pass as a clear outcome.
    clear = (
        ingest.returncode == 1
        and bool(failed)
        and "Traceback" not in out + err
        and all("warehouse unreachable" in line for line in failed)
    )
    if clear:
        return Observed("one line, no traceback")
    return Observed(f"unclear (exit {ingest.returncode}): {failed[-3:]}", as_expected=False)


def daemon_kill(world: World) -> Observed:
    killed = kill_run_worker_under_dev(world, timeout=3600)
    retry = killed.retry[0] if killed.retry else "none"
    return Observed(f"{killed.seconds:.2f} s, re-run: {retry}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=20.0, help="generator scale")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--daemon", action="store_true", help="also kill a run worker under dev")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    state = Path(tempfile.mkdtemp(prefix="ffdrill", dir="/tmp"))
    started = time.monotonic()
    world = prepare_world(state, DAY, hour=10, scale=args.scale)
    print(f"template ready in {time.monotonic() - started:.0f} s ({state})", flush=True)
    world.restore()
    assert world.run("fastfeast", "ingest", timeout=3600).returncode == 0
    clean = digest(world.url())
    print(f"clean run: {clean['fact_order'][0]:,} orders", flush=True)
    cases: list[tuple[str, Callable[[], Observed], bool]] = [
        ("kill -9 in the COPY", lambda: held_kill(world, "copy"), False),
        ("kill -9 in the upsert", lambda: held_kill(world, "upsert"), False),
        ("kill -9 between tables", lambda: held_kill(world, "between tables"), False),
        ("kill -9 at a random moment", lambda: random_kill(world, rng), False),
        ("db stop at a random moment", lambda: random_stop(world, rng), False),
    ]
    if args.daemon:
        cases.append(("kill -9 of the run worker (dev)", lambda: daemon_kill(world), True))
    failures = 0
    try:
        for round_number in range(1, args.rounds + 1):
            for name, interrupt, by_daemon in cases:
                world.restore()
                observed = interrupt()
                begun = time.monotonic()
                if not by_daemon:
                    world.run("fastfeast", "ingest", timeout=3600)
                healed = digest(world.url()) == clean
                failures += not (healed and observed.as_expected)
                print(
                    f"round {round_number}  {name:34} locks/outcome: {observed.text:24}"
                    f" healed: {'yes' if healed else 'NO'} ({time.monotonic() - begun:.0f} s)",
                    flush=True,
                )
    finally:
        world.run("fastfeast", "db", "stop")
        shutil.rmtree(state, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
