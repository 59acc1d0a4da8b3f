"""A server that is gone, told apart from a data error: in a failed run's recorded error
(`ingest.py`), and in what `fastfeast ingest` prints when Dagster's storage goes away (`cli.py`).

The runs are real Dagster runs whose step meets a real PostgreSQL error; the storage that goes
away is a real instance's database that stops accepting connections.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import psycopg
import pytest

from fastfeast_dagster.ingest import _failure
from fastfeast_dagster_tests.commands import free_port


def _failed_run(step: Callable[[], None]) -> tuple[str, bool]:
    """`ingest`'s verdict on a run whose one step runs `step` and fails."""

    @dg.asset
    def table() -> None:
        step()

    with dg.instance_for_test() as instance:
        result = dg.materialize([table], instance=instance, raise_on_error=False)
    assert not result.success
    return _failure(result)


def test_a_refused_connection_in_a_step_is_a_server_that_is_gone() -> None:
    port = free_port()
    line, unreachable = _failed_run(
        lambda: psycopg.connect(f"postgresql://fastfeast@127.0.0.1:{port}/fastfeast").close()
    )
    assert unreachable
    assert line.startswith("OperationalError: connection failed: ")


def test_a_connection_the_server_ends_mid_query_is_a_server_that_is_gone(
    warehouse_url: str,
) -> None:
    def lose_the_connection() -> None:
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    line, unreachable = _failed_run(lose_the_connection)
    assert unreachable, line


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1 / 0",  # a data error
        "SET statement_timeout = 1; SELECT pg_sleep(1)",  # an OperationalError, server alive
    ],
    ids=["division-by-zero", "query-canceled"],
)
def test_an_error_of_a_server_that_answers_is_not(warehouse_url: str, statement: str) -> None:
    def fail() -> None:
        with psycopg.connect(warehouse_url) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    line, unreachable = _failed_run(fail)
    assert not unreachable, line
