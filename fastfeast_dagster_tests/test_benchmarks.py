"""The load benchmarks run as the README says, on sizes small enough for CI.

They are issue 15's measurements and nothing else runs them: one that no longer matches the
schema (bench_dimension_load's positional INSERTs once put text into `_rescued`) fails here
instead of on the next person who measures. The numbers are not asserted; each run's own
accounting is (every row read is loaded or quarantined), and the line with its ratio is printed.
Not here: bench_peers and bench_json_readers, which need the `bench` extra, and bench_latency,
bench_tick and bench_cluster, which run Dagster's daemon for minutes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"

CASES = {
    "bench_dimension_load": (
        ["--rows", "3000"],
        ["read = loaded + quarantined: True", "ratio to raw COPY:"],
    ),
    "bench_fact_load": (
        ["--orders", "3000"],
        ["read = loaded + quarantined: True", "ratio to raw COPY:", "peak RSS"],
    ),
    "bench_growth": (
        ["--sizes", "0", "0.02", "--hour-orders", "400", "--rounds", "1"],
        ["ratio at 0.02 M:"],
    ),
    "bench_sla_update": (
        ["--tickets", "3000", "--days", "2"],
        ["ratio of the hour's update to a full refresh:"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs(name: str) -> None:
    args, expected = CASES[name]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for line in expected:
        assert line in done.stdout, done.stdout[-3000:]
