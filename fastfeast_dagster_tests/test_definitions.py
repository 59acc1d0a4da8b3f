"""The Dagster definitions load, validate through the CLI, and keep their pinned shape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from fastfeast_dagster.definitions import defs
from fastfeast_dagster.settings import PROJECT_ROOT
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres

WORKSPACE = "workspace.yaml"


def test_asset_keys_groups_and_kinds_are_pinned() -> None:
    graph = defs.resolve_asset_graph()
    shape = {
        key.to_user_string(): (graph.get(key).group_name, frozenset(graph.get(key).kinds))
        for key in graph.get_all_asset_keys()
    }
    assert shape == {
        "dim_date": ("calendar", frozenset({"postgres"})),
        "dim_time": ("calendar", frozenset({"postgres"})),
    }


def test_runs_execute_in_process() -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def is dg.in_process_executor


def test_dagster_cli_validates_the_workspace(pg_server: EmbeddedPostgres, tmp_path) -> None:
    env = {
        **os.environ,
        "FASTFEAST_STATE_DIR": str(tmp_path),
        "FASTFEAST_DATABASE_URL": pg_server.url("fastfeast"),
        "FASTFEAST_DAGSTER_PG_URL": pg_server.url("dagster", driver="psycopg2"),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", WORKSPACE],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_calendar_assets_materialize_into_the_warehouse(warehouse_url: str) -> None:
    from fastfeast_dagster.resources.warehouse import Warehouse

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            defs.assets,  # type: ignore[arg-type]
            instance=instance,
            resources={"warehouse": Warehouse(database_url=warehouse_url)},
        )
    assert result.success
    counts = {
        event.asset_key.to_user_string(): event.step_materialization_data.materialization.metadata[
            "dagster/row_count"
        ].value
        for event in result.get_asset_materialization_events()
    }
    assert counts == {"dim_date": 4383, "dim_time": 1440}
