"""Where the warehouse and Dagster's storage live: an explicit URL, or the embedded server."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from fastfeast_dagster.contract import Contract, state_root
from fastfeast_dagster.deployment import refuse_fallback
from fastfeast_dagster.warehouse.embedded import (
    DAGSTER_DATABASE,
    WAREHOUSE_DATABASE,
    EmbeddedPostgres,
)

WAREHOUSE_URL_ENV = "FASTFEAST_DATABASE_URL"
DAGSTER_URL_ENV = "FASTFEAST_DAGSTER_DATABASE_URL"

_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


@dataclass(frozen=True)
class DatabaseUrls:
    warehouse: str
    dagster: str  # always with the psycopg2 driver: dagster-postgres fails on psycopg 3 URLs
    embedded: bool


def resolve_database_urls(contract: Contract) -> DatabaseUrls:
    """The warehouse and Dagster's storage: an external server when `FASTFEAST_DATABASE_URL` names
    one, otherwise the embedded server (started, or reused).

    Every process resolves through here (the `fastfeast` commands, Dagster's storage in
    `dagster_storage.py`, the `Warehouse` resource), so that they agree. An exported URL of the
    embedded server itself (`eval "$(fastfeast db env)"`) still means the embedded server, whose
    Dagster storage is its own `dagster` database: otherwise a shell with the export would keep
    its runs in the warehouse database, a second instance beside the daemon's. With an external
    warehouse and no `FASTFEAST_DAGSTER_DATABASE_URL`, Dagster's storage shares that database:
    its tables (runs, event_logs, ...) do not collide with the warehouse's.
    """
    server = EmbeddedPostgres(state_root(contract))
    warehouse = os.environ.get(WAREHOUSE_URL_ENV)
    if warehouse and not is_embedded_url(server, warehouse):
        dagster = os.environ.get(DAGSTER_URL_ENV) or warehouse
        return DatabaseUrls(warehouse, with_driver(dagster, "psycopg2"), embedded=False)
    refuse_fallback(WAREHOUSE_URL_ENV, "the embedded PostgreSQL")
    if not server.status().running:
        server.start()
    return DatabaseUrls(
        server.url(WAREHOUSE_DATABASE),
        server.url(DAGSTER_DATABASE, driver="psycopg2"),
        embedded=True,
    )


def uses_embedded_server(contract: Contract) -> bool:
    """Whether the warehouse is this project's embedded server (directly or via an exported URL)."""
    warehouse = os.environ.get(WAREHOUSE_URL_ENV)
    return not warehouse or is_embedded_url(EmbeddedPostgres(state_root(contract)), warehouse)


def is_embedded_url(server: EmbeddedPostgres, url: str) -> bool:
    """Whether `url` reaches `server`: its socket lives in the server's data directory."""
    try:
        host = conninfo_to_dict(with_driver(url, None)).get("host")
    except (ValueError, psycopg.ProgrammingError):
        return False
    return host is not None and Path(str(host)).resolve() == server.pgdata.resolve()


def with_driver(url: str, driver: str | None) -> str:
    """The same URL with an explicit SQLAlchemy driver (or none, for libpq/psycopg 3)."""
    if not _SCHEME.match(url):
        raise ValueError(f"not a PostgreSQL URL: {redact(url)}")
    scheme = f"postgresql+{driver}://" if driver else "postgresql://"
    return _SCHEME.sub(scheme, url, count=1)


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and messages."""
    return _PASSWORD.sub(r"\1***@", url)


# SQLSTATE classes and codes of a server that is gone: connection exceptions (08), and the
# server shutting down or not yet accepting connections (57P01-57P03).
_GONE_STATES = ("08", "57P01", "57P02", "57P03")
# dagster-postgres's error once its connection retries are spent ("too many retries for DB …").
_RETRIES_SPENT = "DagsterPostgresException"


def is_unreachable(error: BaseException) -> bool:
    """Whether an error (or one it was raised from) says the server cannot be reached: psycopg 3
    for the warehouse, psycopg2 under SQLAlchemy for Dagster's storage."""
    import psycopg
    import psycopg2

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.OperationalError | psycopg2.OperationalError) and _gone(
            getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        ):
            return True
        if type(current).__name__ == _RETRIES_SPENT:
            return True
        current = current.__cause__ or current.__context__
    return False


def is_unreachable_class(qualified_name: str) -> bool:
    """`is_unreachable` for an error known only by its module-qualified class name, as a traceback
    names it (a failed run's recorded error, which keeps no SQLSTATE): psycopg's class of that
    name knows its SQLSTATE, and psycopg2's classes have the same names."""
    module, _, name = qualified_name.rpartition(".")
    if name == _RETRIES_SPENT:
        return True
    # SQLAlchemy's OperationalError wraps every driver OperationalError, a lost server or not:
    # the driver's error it was raised from decides.
    if module.partition(".")[0] not in ("psycopg", "psycopg2"):
        return False
    error = getattr(psycopg.errors, name, None)
    return (
        isinstance(error, type)
        and issubclass(error, psycopg.OperationalError)
        and _gone(error.sqlstate)
    )


def _gone(state: str | None) -> bool:
    """An OperationalError without a SQLSTATE is one libpq raised: the connection failed or was
    lost. With one, only the gone server's states."""
    return state is None or state.startswith(_GONE_STATES)


def unreachable_message(url: str) -> str:
    """The one line an outage ends in, for a run and for `fastfeast ingest`."""
    return f"warehouse unreachable at {redact(url)}, will retry"
