"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.settings import Contract, load_contract
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database, drop_database

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


@pytest.fixture
def warehouse_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg_server.url("postgres")
    create_database(admin, name)
    yield pg_server.url(name)
    drop_database(admin, name)


@pytest.fixture
def conn(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_url) as connection:
        yield connection


@pytest.fixture(scope="session")
def contract() -> Contract:
    return load_contract()
