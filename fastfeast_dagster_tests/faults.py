"""Holding a real load at a known point, so that a test can kill it there (no sleeps, no luck).

The test's own session holds an advisory lock; the load under test waits for it at the chosen
point: before it starts (its partition's lock), inside the staging COPY (a column default that
takes the lock), inside the upsert (a row trigger that takes it) or while it locks its parents.
`release` lets every waiting load go on.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

PAUSE_KEY = 0x0FA57_7E57
_PAUSE_FUNCTION = "fastfeast_test_pause"
_APPLICATION = re.compile(r"fastfeast-load pid=(\d+) (\S+)")


@dataclass(frozen=True)
class BlockedLoad:
    backend_pid: int
    client_pid: int  # the process running the load: `fastfeast ingest`, a run worker, …
    asset_key: str
    wait_event: str


def install_pause(conn: psycopg.Connection, table: str, where: str) -> None:
    """Make loads of `table` wait for `PAUSE_KEY` in the COPY (`copy`) or the upsert (`upsert`);
    `hold` first, or they do not wait at all."""
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS timestamptz LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_advisory_xact_lock_shared({}); RETURN now(); END $$"
        ).format(sql.Identifier(_PAUSE_FUNCTION), sql.Literal(PAUSE_KEY))
    )
    if where == "copy":
        # The staging table copies the table's defaults; the COPY evaluates this one per row.
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN _loaded_at SET DEFAULT {}()").format(
                sql.Identifier(table), sql.Identifier(_PAUSE_FUNCTION)
            )
        )
    else:
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION fastfeast_test_pause_row() RETURNS trigger"
                " LANGUAGE plpgsql AS $$ BEGIN PERFORM {}(); RETURN NEW; END $$"
            ).format(sql.Identifier(_PAUSE_FUNCTION))
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER fastfeast_test_pause BEFORE INSERT ON {}"
                " FOR EACH ROW EXECUTE FUNCTION fastfeast_test_pause_row()"
            ).format(sql.Identifier(table))
        )
    conn.commit()


def remove_pause(conn: psycopg.Connection, table: str) -> None:
    conn.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN _loaded_at SET DEFAULT now()").format(
            sql.Identifier(table)
        )
    )
    conn.execute(
        sql.SQL("DROP TRIGGER IF EXISTS fastfeast_test_pause ON {}").format(sql.Identifier(table))
    )
    conn.commit()


def hold(conn: psycopg.Connection) -> None:
    """Take the pause lock in this (autocommit) session: loads reaching a pause wait for it."""
    conn.execute("SELECT pg_advisory_lock(%s)", (PAUSE_KEY,))


def release(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock_all()")


def hold_partition(conn: psycopg.Connection, asset_key: str, partition_key: str) -> None:
    """Take the lock a load of this partition takes first (`warehouse/load.py`)."""
    conn.execute(
        "SELECT pg_advisory_lock(hashtextextended(%s || '|' || %s, 0))",
        (asset_key, partition_key),
    )


def blocked_load(url: str, asset_key: str | None = None, timeout: float = 240) -> BlockedLoad:
    """The load that waits for a lock (of `asset_key`, if given), once there is one."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT pid, application_name, wait_event FROM pg_stat_activity"
                " WHERE application_name LIKE 'fastfeast-load %%' AND wait_event_type = 'Lock'"
            ).fetchall()
            for backend, application, wait_event in rows:
                match = _APPLICATION.fullmatch(application)
                if match and asset_key in (None, match.group(2)):
                    return BlockedLoad(backend, int(match.group(1)), match.group(2), wait_event)
            time.sleep(0.1)
    raise AssertionError(f"no load of {asset_key or 'any table'} waited within {timeout:.0f} s")


def locks_of(url: str, backend_pid: int) -> list[tuple[str, bool]]:
    """(lock type, granted) of what a backend holds or waits for."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT locktype, granted FROM pg_locks WHERE pid = %s ORDER BY 1, 2", (backend_pid,)
        ).fetchall()


def seconds_until_gone(url: str, backend_pid: int, timeout: float = 60) -> float:
    """How long until the backend has ended and holds no lock."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            alive = conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid = %s)"
                " + (SELECT count(*) FROM pg_locks WHERE pid = %s)",
                (backend_pid, backend_pid),
            ).fetchone()
            if alive == (0,):
                return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError(f"backend {backend_pid} still there after {timeout:.0f} s")
