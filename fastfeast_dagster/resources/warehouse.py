"""The `Warehouse` resource: the contract a deployment runs with, and connections to its server."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from fastfeast_dagster.contract import Contract, cached_contract, contract_path
from fastfeast_dagster.run_owners import claim_run
from fastfeast_dagster.warehouse.connection import (
    is_unreachable,
    resolve_database_urls,
    unreachable_message,
)
from fastfeast_dagster.warehouse.ddl import apply_schema

# Over TCP, a load waiting on a server that vanished (a lost host, a cut network) notices within
# a minute instead of waiting for the kernel's two hours; libpq ignores them on a Unix socket.
_CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "connect_timeout": 10,
}


class WarehouseUnreachable(dg.Failure):
    """The server is gone: one line for the run, and a retry (`sensors/retries.py`) later."""


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
        if context.instance is not None and context.run_id is not None:
            # The first code of a run worker: the run names its process from now on.
            claim_run(context.instance, context.run_id)
        # An up-to-date warehouse costs a catalog read here, and takes no lock.
        with self.connect() as conn:
            apply_schema(conn, self.contract)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection; losing the server, on connecting or in the middle of a load, raises
        `WarehouseUnreachable` instead of a driver traceback."""
        url = self.url()
        try:
            with psycopg.connect(url, **_CLIENT_KEEPALIVES) as conn:
                yield conn
        except psycopg.Error as error:
            if is_unreachable(error):
                raise WarehouseUnreachable(unreachable_message(url)) from None
            raise
