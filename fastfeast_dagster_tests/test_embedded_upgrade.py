"""The embedded server on data directories it cannot use: refused in one line, left untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres

FASTFEAST = [sys.executable, "-m", "fastfeast_dagster.cli"]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # A short path under /tmp: the server's Unix socket lives in its data directory.
    state = Path(tempfile.mkdtemp(prefix="ffup", dir="/tmp"))
    yield state
    EmbeddedPostgres(state).stop()
    shutil.rmtree(state, ignore_errors=True)


def _run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FASTFEAST_STATE_DIR": str(state)}
    return subprocess.run(
        [*FASTFEAST, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_data_directory_of_another_major_version_is_refused_untouched(state_dir: Path) -> None:
    pgdata = state_dir / "pg"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("18\n")
    (pgdata / "base").mkdir()
    (pgdata / "base" / "1").write_bytes(b"rows of a PostgreSQL 18 server")
    before = sorted(p.relative_to(pgdata).as_posix() for p in pgdata.rglob("*"))

    started = _run(state_dir, "db", "start")
    assert started.returncode == 2
    assert started.stdout == ""
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert "PostgreSQL 18 data directory" in lines[0]
    assert f"mv {pgdata} {pgdata}-18" in lines[0]
    assert "pg_dumpall" in lines[0]
    # Nothing was initialised over it or added to it.
    assert sorted(p.relative_to(pgdata).as_posix() for p in pgdata.rglob("*")) == before
    assert (pgdata / "PG_VERSION").read_text() == "18\n"
    assert _run(state_dir, "db", "status").returncode == 3


def test_a_state_dir_too_long_for_the_unix_socket_is_refused_in_one_line(state_dir: Path) -> None:
    deep = state_dir / ("d" * 100)
    started = _run(deep, "db", "start")
    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert "too long for PostgreSQL's Unix socket" in lines[0]
    assert "FASTFEAST_STATE_DIR" in lines[0]
    assert not (deep / "pg").exists()
