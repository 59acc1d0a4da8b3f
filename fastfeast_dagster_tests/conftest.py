"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from fastfeast_dagster.contract import EXPECTATIONS_DIR, Contract, load_contract
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database, drop_database
from fastfeast_dagster_tests.commands import fresh_environment, run_command

# Tests must never reach a server the project did not start: drop any inherited URLs.
for _variable in ("FASTFEAST_DATABASE_URL", "FASTFEAST_DAGSTER_DATABASE_URL", "DAGSTER_HOME"):
    os.environ.pop(_variable, None)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    # A short path under /tmp: the server's Unix socket lives in its data directory.
    state = Path(tempfile.mkdtemp(prefix="ffpg", dir="/tmp"))
    server = EmbeddedPostgres(state)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(state, ignore_errors=True)


def new_database(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database on the session's server, dropped after (fixtures yield from it)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg_server.url("postgres")
    create_database(admin, name)
    yield pg_server.url(name)
    drop_database(admin, name)


@pytest.fixture
def warehouse_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    yield from new_database(pg_server)


@pytest.fixture
def conn(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_url) as connection:
        yield connection


@pytest.fixture(scope="session")
def contract() -> Contract:
    return load_contract()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root the pipeline reads from (FASTFEAST_DATA_DIR)."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("FASTFEAST_DATA_DIR", str(root))
    monkeypatch.setenv("FASTFEAST_PII_KEY", "test-pii-key")
    return root


@pytest.fixture
def pipeline_env(warehouse_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The project's own resources, pointed at the test's database and data root; its URL.

    They find them through FASTFEAST_DATABASE_URL and FASTFEAST_DATA_DIR, as any deployment
    pointed at an existing server does.
    """
    monkeypatch.setenv("FASTFEAST_DATABASE_URL", warehouse_url)
    return warehouse_url


@pytest.fixture
def materialize(pipeline_env: str) -> Iterator[Callable[..., dg.ExecuteInProcessResult]]:
    """Materialize table assets of one partition for real, through the project's own job."""
    from fastfeast_dagster.definitions import defs

    with dg.instance_for_test() as instance:

        def run(
            tables: list[str], partition_key: str, **kwargs: object
        ) -> dg.ExecuteInProcessResult:
            keys = [dg.AssetKey(table) for table in tables]
            job = defs.resolve_implicit_job_def_def_for_assets(keys)
            assert job is not None
            return job.execute_in_process(
                instance=instance,
                partition_key=partition_key,
                asset_selection=keys,
                **kwargs,  # type: ignore[arg-type]
            )

        yield run


@pytest.fixture
def failing_team_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's suites, with dim_team expecting a team name no source has: its blocking
    check fails on any real data. Returns the suites folder the checks now read."""
    from fastfeast_dagster.checks import asset_checks

    suites = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS_DIR, suites)
    suite = json.loads((suites / "dim_team.json").read_text())
    suite["expectations"].append(
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "team_name", "value_set": ["Escalations"]},
            "meta": {"source": "hand-written"},
        }
    )
    (suites / "dim_team.json").write_text(json.dumps(suite))
    monkeypatch.setattr(asset_checks, "EXPECTATIONS_DIR", suites)
    return suites


@pytest.fixture
def user_env() -> Iterator[dict[str, str]]:
    """A fresh state dir (its own embedded server) and data root, nothing else set: the
    pipeline as a user runs it from the command line."""
    state = Path(tempfile.mkdtemp(prefix="ffpipe", dir="/tmp"))
    env = fresh_environment(state)
    yield env
    run_command(env, "fastfeast", "db", "stop")
    shutil.rmtree(state, ignore_errors=True)
