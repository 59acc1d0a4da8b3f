"""A snapshot of what the Dagster UI shows: every asset, check, sensor and schedule.

Any change to an asset's key, group, kinds, owners, table name, lineage, partitions, backfill
policy, checks or automation, or to a sensor or schedule, changes this snapshot, so it shows in
review as a diff of `__snapshots__/`. After a deliberate change, accept it with
`.venv/bin/python -m pytest fastfeast_dagster_tests/test_definitions_snapshot.py
--snapshot-update`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from fastfeast_dagster.definitions import defs


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict[str, Any] | None:
    if partitions_def is None:
        return None
    shape: dict[str, Any] = {"type": type(partitions_def).__name__}
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        shape |= {
            "start": partitions_def.start.isoformat(),
            "timezone": partitions_def.timezone,
            "end_offset": partitions_def.end_offset,
            "format": partitions_def.fmt,
        }
    return shape


def _assets() -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    shape = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        shape[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "table_name": node.metadata.get("dagster/table_name"),
            "columns": [
                column.name
                for column in node.metadata.get("dagster/column_schema", _NO_SCHEMA).columns
            ],
            "deps": {
                parent.to_user_string(): type(graph.get_partition_mapping(key, parent)).__name__
                if node.partitions_def is not None
                else None
                for parent in sorted(node.parent_keys)
            },
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "automation": str(node.automation_condition) if node.automation_condition else None,
            "freshness": str(node.freshness_policy) if node.freshness_policy else None,
            "checks": sorted(check.name for check in node.check_keys),
        }
    return shape


_NO_SCHEMA = dg.TableSchema(columns=[])


def _checks() -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    return {
        f"{key.asset_key.to_user_string()}:{key.name}": {
            "blocking": graph.get(key).blocking,
            "partitions": _partitions(graph.get(key).partitions_def),
        }
        for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key, k.name))
    }


def _sensors() -> dict[str, Any]:
    shape = {}
    for sensor in sorted(defs.sensors or [], key=lambda s: s.name):
        selection = sensor.asset_selection
        shape[sensor.name] = {
            "type": sensor.sensor_type.value,
            "interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value,
            "targets": sorted(
                key.to_user_string()
                for key in (
                    selection.resolve(defs.resolve_asset_graph()) if selection is not None else []
                )
            ),
        }
    return shape


def _schedules() -> dict[str, Any]:
    shape = {}
    for schedule in sorted(defs.schedules or [], key=lambda s: s.name):
        job = defs.resolve_job_def(schedule.job_name)
        shape[schedule.name] = {
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.value,
            "targets": sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys),
        }
    return shape


def test_the_definitions_match_their_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert {
        "assets": _assets(),
        "checks": _checks(),
        "sensors": _sensors(),
        "schedules": _schedules(),
    } == snapshot_json
