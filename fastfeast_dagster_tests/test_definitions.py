"""The Dagster definitions load, validate through the CLI, and keep their pinned shape."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from fastfeast_dagster.contract import PROJECT_ROOT
from fastfeast_dagster.definitions import defs
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres
from fastfeast_dagster_tests.commands import run_command

DIMENSIONS = {
    "dim_city": set(),
    "dim_region": {"dim_city"},
    "dim_segment": set(),
    "dim_category": set(),
    "dim_team": set(),
    "dim_reason_category": set(),
    "dim_reason": {"dim_reason_category"},
    "dim_channel": set(),
    "dim_priority": set(),
    "dim_customer": {"dim_region", "dim_segment"},
    "dim_restaurant": {"dim_region", "dim_category"},
    "dim_driver": {"dim_region"},
    "dim_agent": {"dim_team"},
}
# Every fact's derived date and time keys reference the calendar tables.
CALENDAR = {"dim_date", "dim_time"}
FACTS = {
    "fact_order": {"dim_customer", "dim_restaurant", "dim_driver", "dim_region", *CALENDAR},
    "fact_ticket": {
        "fact_order",
        "dim_customer",
        "dim_driver",
        "dim_restaurant",
        "dim_agent",
        "dim_reason",
        "dim_priority",
        "dim_channel",
        *CALENDAR,
    },
    "fact_ticket_event": {"fact_ticket", "dim_agent", *CALENDAR},
}


def test_asset_keys_groups_kinds_partitions_and_lineage_are_pinned() -> None:
    graph = defs.resolve_asset_graph()
    shape = {
        key.to_user_string(): (
            graph.get(key).group_name,
            frozenset(graph.get(key).kinds),
            type(graph.get(key).partitions_def).__name__,
            frozenset(parent.to_user_string() for parent in graph.get(key).parent_keys),
        )
        for key in graph.get_all_asset_keys()
    }
    expected = {
        "dim_date": ("calendar", frozenset({"postgres"}), "NoneType", frozenset()),
        "dim_time": ("calendar", frozenset({"postgres"}), "NoneType", frozenset()),
    }
    for table, parents in DIMENSIONS.items():
        expected[table] = (
            "dimensions",
            frozenset({"postgres", "pandas"}),
            "DailyPartitionsDefinition",
            frozenset(parents),
        )
    for table, parents in FACTS.items():
        expected[table] = (
            "facts",
            frozenset({"postgres", "pandas"}),
            "HourlyPartitionsDefinition",
            frozenset(parents),
        )
    expected["ticket_sla"] = (
        "analytics",
        frozenset({"postgres"}),
        "DailyPartitionsDefinition",
        frozenset({"fact_ticket", "fact_ticket_event", "fact_order", "dim_agent"}),
    )
    expected["true_orphan"] = (
        "audit",
        frozenset({"postgres"}),
        "NoneType",
        frozenset({"quarantine"}),
    )
    # Observed by every load rather than an edge from every table.
    expected["quarantine"] = ("audit", frozenset({"postgres"}), "NoneType", frozenset())
    expected["mart_orders_daily"] = (
        "analytics",
        frozenset({"postgres"}),
        "DailyPartitionsDefinition",
        frozenset({"fact_order"}),
    )
    expected["mart_tickets_daily"] = (
        "analytics",
        frozenset({"postgres"}),
        "DailyPartitionsDefinition",
        frozenset({"ticket_sla"}),
    )
    for table in ("dim_customer", "dim_restaurant", "dim_driver", "dim_agent"):
        expected[f"{table}_history"] = (
            "dimensions",
            frozenset({"postgres"}),
            "DailyPartitionsDefinition",
            frozenset({table}),
        )
    assert shape == expected


def test_the_derived_assets_map_hours_to_days_and_days_to_days() -> None:
    graph = defs.resolve_asset_graph()
    sla, tickets_mart = dg.AssetKey("ticket_sla"), dg.AssetKey("mart_tickets_daily")
    for parent in ("fact_ticket", "fact_ticket_event", "fact_order"):
        mapping = graph.get_partition_mapping(sla, dg.AssetKey(parent))
        assert isinstance(mapping, dg.TimeWindowPartitionMapping), parent
    hours = graph.get(dg.AssetKey("fact_ticket")).partitions_def
    day = graph.get(sla).partitions_def
    assert isinstance(hours, dg.HourlyPartitionsDefinition)
    assert isinstance(day, dg.DailyPartitionsDefinition)
    mapped = graph.get_partition_mapping(sla, dg.AssetKey("fact_ticket"))
    upstream = mapped.get_upstream_mapped_partitions_result_for_partitions(
        day.subset_with_partition_keys(["2026-03-02"]), day, hours
    ).partitions_subset.get_partition_keys()
    assert len(upstream) == 24 and upstream[0] == "2026-03-02-00:00"
    assert isinstance(graph.get_partition_mapping(tickets_mart, sla), dg.TimeWindowPartitionMapping)
    # The view joins the agents' current team: the newest snapshot, not the ticket's day.
    last = graph.get_partition_mapping(sla, dg.AssetKey("dim_agent"))
    assert isinstance(last, dg.LastPartitionMapping)


def test_facts_map_each_hour_to_its_day_and_backfill_a_range_in_one_run() -> None:
    graph = defs.resolve_asset_graph()
    order = graph.get(dg.AssetKey("fact_order"))
    mapping = graph.get_partition_mapping(order.key, dg.AssetKey("dim_customer"))
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert order.backfill_policy == dg.BackfillPolicy.single_run()
    customer = graph.get(dg.AssetKey("dim_customer"))
    assert customer.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


def test_the_orphan_retry_checks_less_often_than_the_folder_sensors(contract) -> None:
    intervals = {sensor.name: sensor.minimum_interval_seconds for sensor in defs.sensors}
    assert intervals["orphan_retry_sensor"] == contract.orphans.retry_check_seconds == 60
    assert intervals["stream_files_sensor"] == contract.sensors.minimum_interval_seconds == 3
    assert intervals["derived_tables_sensor"] == contract.sensors.minimum_interval_seconds


def test_sensors_and_schedules_run_by_default() -> None:
    sensors = {sensor.name: sensor.default_status for sensor in defs.sensors}
    assert sensors == {
        "batch_files_sensor": dg.DefaultSensorStatus.RUNNING,
        "stream_files_sensor": dg.DefaultSensorStatus.RUNNING,
        "orphan_retry_sensor": dg.DefaultSensorStatus.RUNNING,
        "run_retry_sensor": dg.DefaultSensorStatus.RUNNING,
        "derived_tables_sensor": dg.DefaultSensorStatus.RUNNING,
        # Mail needs a relay: off until the contract enables alerts.
        "alert_on_run_failure": dg.DefaultSensorStatus.STOPPED,
        "alert_on_check_failure": dg.DefaultSensorStatus.STOPPED,
    }
    schedules = {s.name: (s.cron_schedule, s.default_status) for s in defs.schedules}
    # Only promotion is timed: the SLA rows and marts follow the loads (derived_tables_sensor).
    assert schedules == {"true_orphan_promotion": ("5 * * * *", dg.DefaultScheduleStatus.RUNNING)}


def test_facts_carry_the_contracts_freshness_policy_and_nothing_else_does(contract) -> None:
    # Dagster's FreshnessPolicy, evaluated by the daemon: no freshness checks, no sensor for them.
    expected = dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(minutes=contract.sensors.freshness_fail_minutes),
        warn_window=dt.timedelta(minutes=contract.sensors.freshness_lag_minutes),
    )
    graph = defs.resolve_asset_graph()
    policies = {
        key.to_user_string(): graph.get(key).freshness_policy for key in graph.get_all_asset_keys()
    }
    facts = {spec.table for spec in contract.facts.values()}
    assert {name for name, policy in policies.items() if policy is not None} == facts
    assert all(policies[name] == expected for name in facts)
    assert not [key for key in graph.asset_check_keys if "freshness" in key.name]


def test_every_asset_is_described_and_owned(contract) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.owners == contract.owners == ["team:data-platform"], key


def test_table_assets_carry_the_contract_schema(contract) -> None:
    graph = defs.resolve_asset_graph()
    for spec in contract.dimensions.values():
        node = graph.get(dg.AssetKey(spec.table))
        schema = node.metadata["dagster/column_schema"]
        assert [column.name for column in schema.columns] == list(spec.columns)
        assert node.metadata["dagster/table_name"] == f"public.{spec.table}"
        partitions = node.partitions_def
        assert partitions.start.date() == contract.partitions.batch_start_date
        assert partitions.end_offset == 1


def test_check_keys_are_pinned_and_partitioned_like_their_assets(contract) -> None:
    graph = defs.resolve_asset_graph()
    keys = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    tables = [spec.table for spec in contract.sources.values()]
    expected = {(table, "great_expectations") for table in tables}
    expected |= {(table, "quarantine_rate") for table in tables}
    expected |= {(table, "repair_rate") for table in tables}
    expected |= {(table, "contract_drift") for table in tables}
    expected |= {
        (spec.table, "history_great_expectations")
        for spec in contract.sources.values()
        if spec.history is not None
    }
    assert keys == expected
    for key in graph.asset_check_keys:
        check = graph.get(key)
        asset = graph.get(key.asset_key)
        assert check.partitions_def == asset.partitions_def
        assert check.blocking == (
            key.name in ("great_expectations", "history_great_expectations")
            and asset.group_name == "dimensions"
        )


def test_runs_execute_in_process() -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def is dg.in_process_executor


def test_dagster_cli_validates_the_workspace(pg_server: EmbeddedPostgres, tmp_path) -> None:
    env = {
        **os.environ,
        "FASTFEAST_STATE_DIR": str(tmp_path),
        "FASTFEAST_DATABASE_URL": pg_server.url("fastfeast"),
        "FASTFEAST_DAGSTER_DATABASE_URL": pg_server.url("dagster"),
    }
    result = run_command(env, "dagster", "definitions", "validate", "-w", "workspace.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_a_fresh_clone_validates_with_nothing_set() -> None:
    # The project's files as a clone has them (no state dir, no data, nothing exported); the
    # clone's own code, as its venv would import it: `python -m` puts its folder first on the path.
    clone = Path(tempfile.mkdtemp(prefix="ffclone", dir="/tmp"))  # short: the server's socket
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if (PROJECT_ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, clone / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTFEAST_", "DAGSTER_"))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", *args],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    try:
        result = run("dagster", "definitions", "validate", "-w", "workspace.yaml")
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert "All code locations passed validation" in output
        assert "Traceback" not in output
        # It started the clone's own embedded server, under the clone: nothing else was touched.
        assert (clone / ".fastfeast" / "pg" / "PG_VERSION").exists()
    finally:
        run("fastfeast_dagster.cli", "db", "stop")
        shutil.rmtree(clone, ignore_errors=True)


def test_failed_runs_are_retried_by_the_retry_sensor_alone(
    pg_server: EmbeddedPostgres,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    # The instance `fastfeast dev` and the daemon use, loaded from the project's dagster.yaml:
    # Dagster's own re-execution is off, or a failed run would be retried twice over.
    monkeypatch.setenv("FASTFEAST_DATABASE_URL", pg_server.url("fastfeast"))
    monkeypatch.setenv("FASTFEAST_DAGSTER_DATABASE_URL", pg_server.url("dagster"))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(PROJECT_ROOT))) as instance:
        assert not instance.run_retries_enabled
        assert instance.run_monitoring_enabled
    sensor = defs.resolve_sensor_def("run_retry_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_calendar_assets_materialize_into_the_warehouse(warehouse_url: str) -> None:
    from fastfeast_dagster.assets.calendar import calendar_assets
    from fastfeast_dagster.contract import load_contract
    from fastfeast_dagster.resources.warehouse import Warehouse

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            calendar_assets(load_contract()),
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
