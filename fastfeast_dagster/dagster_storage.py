"""Dagster's instance storage, resolved in each process by the project rather than configured.

`dagster.yaml` names this class instead of a `postgres_url`: every process that opens the
instance (the webserver, the daemon, code servers, run workers, `fastfeast ingest`, any `dagster`
command in the project folder) resolves the URL with the function the warehouse uses
(`warehouse/connection.py::resolve_database_urls`): the embedded server's `dagster` database,
started if needed, unless `FASTFEAST_DATABASE_URL` names an external server. Nothing has to be
exported first, and a shell that exported `fastfeast db env` opens the same instance as one that
did not.
"""

from __future__ import annotations

from typing import Any

from dagster_postgres import DagsterPostgresStorage

from fastfeast_dagster.contract import ContractError, default_contract
from fastfeast_dagster.warehouse.connection import resolve_database_urls
from fastfeast_dagster.warehouse.embedded import EmbeddedServerError


class ResolvedPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` on the URL `resolve_database_urls` gives; no configuration."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: dict[str, Any]
    ) -> ResolvedPostgresStorage:
        try:
            url = resolve_database_urls(default_contract()).dagster
        except (ContractError, EmbeddedServerError) as error:
            # This runs inside whichever Dagster command opened the instance: one line saying
            # what to do, not that command's traceback around it.
            raise SystemExit(f"fastfeast: {error}") from None
        # Under the instance's own serialized config (this class, no settings), so that each
        # process it is handed to resolves the URL itself.
        return cls(postgres_url=url, inst_data=inst_data)
