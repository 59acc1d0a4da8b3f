"""Parents before children: an hour of facts waits while its day's dimension files are unloaded.

A fact partition that runs before the dimensions delivered for its day would quarantine every
row that references a new member as an orphan, and fail its quarantine-rate check on healthy
data, until the orphan retry repairs it. So the stream sensor holds an hour back while a
dimension file of its day (the master, on the start date) changed after that dimension's last
materialization of the day: not yet taken, being settled, or being loaded. An hour waits at most
`sensors.parent_wait_minutes`, so a dimension load that keeps failing cannot stall the facts;
those rows then take the orphan path, and the retry loads them once the parents arrive.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.sources.listing import FoundFile, dimension_files
from fastfeast_dagster.sources.storage import DataRoot


def held_for_parents(
    contract: Contract,
    instance: dg.DagsterInstance,
    root: DataRoot,
    hours: Mapping[str, list[FoundFile]],
    *,
    now_ns: int,
) -> set[str]:
    """The hour partitions among `hours` that wait for their day's dimensions."""
    patience_ns = contract.sensors.parent_wait_minutes * 60 * 10**9
    tables = {name: spec.table for name, spec in contract.dimensions.items()}
    unloaded: dict[str, bool] = {}
    held = set()
    for key, files in hours.items():
        day = key[:10]
        if day not in unloaded:
            unloaded[day] = any(
                _newer_than_load(instance, tables[found.source], day, found)
                for found in dimension_files(contract, root, day)
            )
        arrived = min(found.ctime_ns for found in files)
        if unloaded[day] and now_ns - arrived < patience_ns:
            held.add(key)
    return held


def _newer_than_load(instance: dg.DagsterInstance, table: str, day: str, found: FoundFile) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(table), asset_partitions=[day]), limit=1
    ).records
    return not records or found.ctime_ns > records[0].timestamp * 1e9
