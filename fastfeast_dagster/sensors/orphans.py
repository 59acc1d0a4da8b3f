"""Orphan retry: when parent tables materialize, re-run the partitions whose orphans now resolve.

Declarative Automation cannot do this (it only considers the latest time partition), so a sensor
watches materializations and asks the warehouse which partitions hold quarantined orphans that
would now load. The re-run is an ordinary run of the normal asset.

It watches the children's materializations as well as the parents'. A child load that ran beside
its parent's can commit its orphans after the parent's materialization was seen: a tick between
the two found nothing to resolve and moved its cursor past the parent, and those orphans then
waited for the next parent load, for good on the last hour of a day. Every row is committed
before its table's materialization is recorded, so the tick after the later of the two sees the
parent's rows and the child's orphans. A child's materialization by a retry run is no reason to
look again, or an orphan the retry could not resolve would ask for a retry every tick.
"""

import dagster as dg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.orphans import open_orphan_partitions, resolvable_partitions

ORPHAN_RETRY_SENSOR = "orphan_retry_sensor"
REASON_TAG = "fastfeast/reason"
RETRY = "orphan-retry"


def build_orphan_retry_sensor(contract: Contract) -> dg.SensorDefinition:
    references = [ref for ref in contract.relations.references if not ref.to_calendar]
    parents = {ref.parent_table for ref in references}
    children = list(dict.fromkeys(ref.child_table for ref in references))
    load_order = [contract.sources[name].table for name in contract.load_order()]

    @dg.sensor(
        name=ORPHAN_RETRY_SENSOR,
        description=(
            "When a parent or child table materializes, re-runs the partitions whose quarantined "
            "orphans now resolve; the load marks those quarantine rows resolved."
        ),
        minimum_interval_seconds=contract.orphans.retry_check_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[dg.AssetKey(table) for table in children],
    )
    def orphan_retry_sensor(
        context: dg.SensorEvaluationContext, warehouse: Warehouse
    ) -> dg.SensorResult:
        seen = int(context.cursor or 0)
        newest, news = _news(context.instance, parents, children, seen)
        if not news:
            return dg.SensorResult(
                skip_reason="no table with keys materialized since the last check",
                cursor=str(newest),
            )
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
                    tags={REASON_TAG: RETRY},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=str(newest))

    return orphan_retry_sensor


# More materializations than this between two ticks only means the newest of them are read.
_TICK_RECORDS = 100


def _news(
    instance: dg.DagsterInstance, parents: set[str], children: list[str], seen: int
) -> tuple[int, bool]:
    """The newest storage id among these tables' materializations since `seen`, and whether one
    of those is worth a look: a parent's, or a child's from a run that was no retry."""
    newest, news = seen, False
    for table in sorted(parents | set(children)):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(table), after_storage_id=seen),
            limit=_TICK_RECORDS,
        ).records
        if records:
            newest = max(newest, *(record.storage_id for record in records))
            news = (
                news
                or table in parents
                or any(not _by_retry(instance, run_id) for run_id in {r.run_id for r in records})
            )
    return newest, news


def _by_retry(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and run.tags.get(REASON_TAG) == RETRY
