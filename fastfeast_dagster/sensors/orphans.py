"""Orphan retry: when parent tables materialize, re-run the partitions whose orphans now resolve.

Declarative Automation cannot do this (it only considers the latest time partition), so a sensor
watches the parents' materializations and asks the warehouse which partitions hold quarantined
orphans that would now load. The re-run is an ordinary run of the normal asset.
"""

import dagster as dg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.orphans import open_orphan_partitions, resolvable_partitions

ORPHAN_RETRY_SENSOR = "orphan_retry_sensor"


def build_orphan_retry_sensor(contract: Contract) -> dg.SensorDefinition:
    references = [ref for ref in contract.relations.references if not ref.to_calendar]
    parents = sorted({ref.parent_table for ref in references})
    children = list(dict.fromkeys(ref.child_table for ref in references))
    load_order = [contract.sources[name].table for name in contract.load_order()]

    @dg.sensor(
        name=ORPHAN_RETRY_SENSOR,
        description=(
            "When a parent table materializes, re-runs the partitions whose quarantined orphans "
            "now resolve; the load marks those quarantine rows resolved."
        ),
        minimum_interval_seconds=contract.orphans.retry_check_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[dg.AssetKey(table) for table in children],
    )
    def orphan_retry_sensor(
        context: dg.SensorEvaluationContext, warehouse: Warehouse
    ) -> dg.SensorResult:
        seen = int(context.cursor or 0)
        newest = max(
            [seen, *(_latest_materialization(context.instance, table) for table in parents)]
        )
        if newest <= seen:
            return dg.SensorResult(skip_reason="no parent materialized since the last check")
        with warehouse.connect() as conn:
            resolvable = resolvable_partitions(conn, warehouse.contract)
            waiting = open_orphan_partitions(conn, warehouse.contract)
        # One run per partition, with every table of it that waits for parents: a run loads
        # parents first, so orders resolving in it let their tickets and events resolve too.
        requests = []
        for partition in sorted({key for keys in resolvable.values() for key in keys}):
            tables = {table for table, keys in resolvable.items() if partition in keys}
            tables |= {table for table, key in waiting if key == partition}
            ordered = [table for table in load_order if table in tables]
            requests.append(
                dg.RunRequest(
                    run_key=f"orphan-retry:{partition}:{','.join(ordered)}:{newest}",
                    partition_key=partition,
                    asset_selection=[dg.AssetKey(table) for table in ordered],
                    tags={"fastfeast/reason": "orphan-retry"},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=str(newest))

    return orphan_retry_sensor


def _latest_materialization(instance: dg.DagsterInstance, table: str) -> int:
    records = instance.fetch_materializations(dg.AssetKey(table), limit=1, ascending=False).records
    return records[0].storage_id if records else 0
