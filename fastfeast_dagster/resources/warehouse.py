"""The `Warehouse` resource: the contract a deployment runs with, and connections to its server."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from fastfeast_dagster.contract import Contract, cached_contract, contract_path
from fastfeast_dagster.warehouse.connection import resolve_database_urls
from fastfeast_dagster.warehouse.ddl import apply_schema


class Warehouse(dg.ConfigurableResource):
    """The PostgreSQL warehouse, and the contract that shapes it.

    With no `database_url`, `FASTFEAST_DATABASE_URL` is used, or else the embedded server under
    the state directory (started on first use). Each run (and sensor tick) that uses it brings
    the schema to the contract once, when the resource is set up.
    """

    database_url: str | None = Field(
        default=None, description="psycopg URL; unset means FASTFEAST_DATABASE_URL or embedded"
    )
    contract_path: str | None = Field(
        default=None,
        description="the contract file; unset means FASTFEAST_CONFIG or config/pipeline.yaml",
    )

    @property
    def contract(self) -> Contract:
        return cached_contract(contract_path(self.contract_path))

    def url(self) -> str:
        return self.database_url or resolve_database_urls(self.contract).warehouse

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # An up-to-date warehouse costs a catalog read here, and takes no lock.
        with psycopg.connect(self.url()) as conn:
            apply_schema(conn, self.contract)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.url()) as conn:
            yield conn
