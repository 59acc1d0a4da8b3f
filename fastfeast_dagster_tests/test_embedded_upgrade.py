"""The embedded server on data directories it did not create: kept with their rows, or refused.

Real servers and real commands throughout. The previous server comes from the `pgserver` 0.1.4
wheel (PostgreSQL 16.2), which the test extra installs where that wheel exists.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database

FASTFEAST = [sys.executable, "-m", "fastfeast_dagster.cli"]
OLD_WHEEL = importlib.util.find_spec("pgserver") is not None


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # A short path under /tmp: the server's Unix socket lives in its data directory.
    state = Path(tempfile.mkdtemp(prefix="ffup", dir="/tmp"))
    yield state
    EmbeddedPostgres(state).stop()
    shutil.rmtree(state, ignore_errors=True)


# Values of the types the warehouse uses, non-ASCII text included, and an index to read through.
KEPT_TABLE = """
CREATE TABLE kept (
    id integer PRIMARY KEY,
    name text NOT NULL,
    amount numeric(12, 2),
    at timestamptz,
    day date
);
CREATE INDEX kept_name ON kept (name);
INSERT INTO kept
SELECT g, 'Zoë ' || md5(g::text), g * 1.25,
       timestamptz '2026-03-02 10:00+00' + g * interval '1 min', date '2026-03-02' + g % 30
FROM generate_series(1, 5000) AS g;
"""
KEPT_DIGEST = "SELECT count(*), md5(string_agg(kept::text, '|' ORDER BY id)) FROM kept"


def _start_previous_server(pgdata: Path) -> str:
    """Initialise and start `pgdata` with pgserver 0.1.4 in its own process, as the project did."""
    script = (
        "import sys, warnings; warnings.simplefilter('ignore'); import pgserver; "
        "print(pgserver.get_server(sys.argv[1], cleanup_mode=None).get_uri('postgres'))"
    )
    started = subprocess.run(
        [sys.executable, "-c", script, str(pgdata)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return started.stdout.strip().splitlines()[-1]


def _database(url: str, database: str) -> str:
    return url.replace("/postgres?", f"/{database}?", 1)


@pytest.mark.skipif(
    not OLD_WHEEL, reason="pgserver 0.1.4 has wheels for CPython <= 3.12 on x86_64 and macOS only"
)
def test_a_data_directory_of_the_previous_server_starts_with_its_rows(
    state_dir: Path, contract: Contract
) -> None:
    assert importlib.metadata.version("pgserver") == "0.1.4"
    server = EmbeddedPostgres(state_dir)
    old_url = _start_previous_server(server.pgdata)
    with psycopg.connect(old_url, autocommit=True) as conn:
        old_version = conn.execute("SHOW server_version_num").fetchone()
        assert old_version == ("160002",)
    create_database(old_url, "fastfeast")
    create_database(old_url, "dagster")
    with psycopg.connect(_database(old_url, "fastfeast")) as conn:
        apply_schema(conn, contract)
        conn.execute(KEPT_TABLE)
        conn.commit()
        before = conn.execute(KEPT_DIGEST).fetchone()
    assert before is not None and before[0] == 5000

    # The wheel changed under a running server: it keeps running, and says how to switch.
    running = server.status()
    assert running.running and running.other_binaries is not None
    assert "pgserver/pginstall/bin/postgres" in running.other_binaries
    assert "`fastfeast db stop` then `fastfeast db start`" in running.describe()
    assert server.start().pid == running.pid

    assert server.stop()
    upgraded = server.start()
    assert upgraded.running and upgraded.pid != running.pid
    assert upgraded.other_binaries is None
    assert upgraded.socket_dir == server.pgdata.resolve()
    with psycopg.connect(server.url("fastfeast")) as conn:
        version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        assert 160014 <= version < 170000
        assert conn.execute(KEPT_DIGEST).fetchone() == before
        # The old server's index is read by the new one.
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute("EXPLAIN SELECT id FROM kept WHERE name = 'Zoë ' || md5('42')")
        )
        assert "kept_name" in plan
        assert conn.execute("SELECT id FROM kept WHERE name = 'Zoë ' || md5('42')").fetchone() == (
            42,
        )
        assert conn.execute("SELECT count(*) FROM dim_time").fetchone() == (1440,)
        # The warehouse it left is up to date for this version's schema code.
        assert apply_schema(conn, contract) == 0
        conn.execute("INSERT INTO kept (id, name) VALUES (5001, 'after the upgrade')")
        conn.commit()

    # A restart of the new server on the same data keeps everything, the new row included.
    assert server.stop()
    server.start()
    with psycopg.connect(server.url("fastfeast")) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (5001,)
        assert conn.execute(
            "SELECT md5(string_agg(kept::text, '|' ORDER BY id)) FROM kept WHERE id <= 5000"
        ).fetchone() == (before[1],)


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
