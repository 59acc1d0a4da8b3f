"""The `Warehouse` resource: connections to the warehouse, with its schema in place."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from fastfeast_dagster.settings import Contract, default_contract
from fastfeast_dagster.warehouse.connection import resolve_database_urls
from fastfeast_dagster.warehouse.ddl import apply_schema

# Schemas already applied by this process, by URL: each run worker applies it once, not per step.
_APPLIED: set[str] = set()


class Warehouse(dg.ConfigurableResource):
    """The PostgreSQL warehouse.

    With no `database_url`, `FASTFEAST_DATABASE_URL` is used, or else the embedded server under
    the state directory (started on first use).
    """

    database_url: str | None = Field(
        default=None, description="psycopg URL; unset means FASTFEAST_DATABASE_URL or embedded"
    )

    @property
    def contract(self) -> Contract:
        return default_contract()

    def url(self) -> str:
        return self.database_url or resolve_database_urls(self.contract).warehouse

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection to a warehouse whose schema matches the contract."""
        url = self.url()
        with psycopg.connect(url) as conn:
            if url not in _APPLIED:
                apply_schema(conn, self.contract)
                _APPLIED.add(url)
            yield conn
