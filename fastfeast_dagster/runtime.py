"""The process environment that Dagster commands need: storage URLs and the instance home."""

from __future__ import annotations

import os
from pathlib import Path

from fastfeast_dagster.contract import PROJECT_ROOT, STATE_DIR_ENV, Contract, state_root
from fastfeast_dagster.warehouse.connection import WAREHOUSE_URL_ENV, resolve_database_urls

INSTANCE_CONFIG = PROJECT_ROOT / "dagster.yaml"


def dagster_environment(contract: Contract) -> dict[str, str]:
    """Variables for `dagster dev`, the daemon and run workers (starting the embedded server).

    DAGSTER_HOME is a directory under the state dir whose `dagster.yaml` links to the project's,
    so compute logs and local artefacts stay out of the source tree while the config stays single.
    Dagster's storage needs no variable of its own: every process resolves it
    (`dagster_storage.py`) from the state dir, which is exported with the rest: a shell that
    evaluates `fastfeast db env` of a non-default state dir would otherwise take its embedded
    warehouse URL for an external server's and keep Dagster's runs in the warehouse database.
    """
    urls = resolve_database_urls(contract)
    home = dagster_home(contract)
    return {
        WAREHOUSE_URL_ENV: urls.warehouse,
        STATE_DIR_ENV: str(state_root(contract)),
        "DAGSTER_HOME": str(home),
        # Great Expectations: no usage analytics from a pipeline process.
        "GX_ANALYTICS_ENABLED": "false",
    }


def dagster_home(contract: Contract) -> Path:
    home = state_root(contract) / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if not (link.is_symlink() and link.resolve() == INSTANCE_CONFIG.resolve()):
        link.unlink(missing_ok=True)
        link.symlink_to(INSTANCE_CONFIG)
    return home


def apply_environment(variables: dict[str, str]) -> None:
    os.environ.update(variables)
