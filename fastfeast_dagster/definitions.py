"""Everything Dagster loads for FastFeast, assembled from the factories."""

import dagster as dg

from fastfeast_dagster.assets.calendar import calendar_assets
from fastfeast_dagster.assets.maintenance import (
    build_maintenance_schedules,
    build_quarantine_spec,
    maintenance_assets,
)
from fastfeast_dagster.assets.marts import build_mart_assets
from fastfeast_dagster.assets.partitions import partitions_by_kind
from fastfeast_dagster.assets.sla import build_sla_asset
from fastfeast_dagster.assets.tables import IO_MANAGER_KEY, build_table_assets
from fastfeast_dagster.checks.asset_checks import build_freshness_checks, build_table_checks
from fastfeast_dagster.contract import cached_contract, contract_path
from fastfeast_dagster.resources.io_manager import PostgresIOManager
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.sensors.alerts import build_alert_sensors
from fastfeast_dagster.sensors.derived import build_derived_sensor
from fastfeast_dagster.sensors.folders import build_folder_sensor
from fastfeast_dagster.sensors.orphans import build_orphan_retry_sensor
from fastfeast_dagster.sensors.retries import build_run_retry_sensor

config_path = contract_path()
contract = cached_contract(config_path)
partitions = partitions_by_kind(contract)
warehouse = Warehouse(contract_path=str(config_path))
freshness_checks = build_freshness_checks(contract)

calendar = calendar_assets(contract)
# Daily assets derived from the facts, parents first: the derived-tables sensor runs them.
derived = [
    build_sla_asset(contract, partitions["dimension"], partitions["fact"]),
    *build_mart_assets(contract, partitions["dimension"]),
]
assets = [
    *calendar,
    *build_table_assets(contract, partitions),
    *maintenance_assets(contract),
    build_quarantine_spec(contract),
    *derived,
]
table_checks = [
    build_table_checks(source, contract, partitions[spec.kind])
    for source, spec in contract.sources.items()
]

defs = dg.Definitions(
    # Every asset without owners of its own (from its source in the contract) gets the default.
    assets=dg.map_asset_specs(
        lambda spec: spec if spec.owners else spec.replace_attributes(owners=contract.owners),
        assets,
    ),
    asset_checks=[*table_checks, *freshness_checks],
    sensors=[
        build_folder_sensor("batch", contract, partitions["dimension"]),
        build_folder_sensor("stream", contract, partitions["fact"]),
        build_orphan_retry_sensor(contract),
        build_run_retry_sensor(contract),
        build_derived_sensor(contract, calendar, derived, partitions["dimension"]),
        dg.build_sensor_for_freshness_checks(
            freshness_checks=freshness_checks, default_status=dg.DefaultSensorStatus.RUNNING
        ),
        *build_alert_sensors(contract),
    ],
    schedules=build_maintenance_schedules(contract),
    resources={
        "warehouse": warehouse,
        IO_MANAGER_KEY: PostgresIOManager(warehouse=warehouse),
    },
    # One process per run: the multiprocess executor re-imports everything per step and roughly
    # doubles the time of these small runs.
    executor=dg.in_process_executor,
)
