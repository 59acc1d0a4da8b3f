"""Scheduled maintenance: true-orphan promotion, and the quarantine audit trail it reads.

Promotion is unpartitioned and driven by a schedule that runs by default: its trigger really is
time (an orphan becomes true once its retry window has passed), not a load.
"""

import dagster as dg

from fastfeast_dagster.assets.metadata import table_metadata
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.orphans import promote_true_orphans

TRUE_ORPHAN = "true_orphan"
QUARANTINE = "quarantine"


def maintenance_assets(contract: Contract) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=TRUE_ORPHAN,
        group_name="audit",
        kinds={"postgres"},
        deps=[QUARANTINE],
        description=(
            "Quarantined orphans whose parents did not arrive within the retry window, recorded "
            "once with their first quarantine time and the foreign keys that never resolved."
        ),
        metadata=table_metadata(contract, TRUE_ORPHAN),
    )
    def true_orphan(warehouse: Warehouse) -> dg.MaterializeResult:
        with warehouse.connect() as conn:
            promoted, waiting = promote_true_orphans(
                conn, contract, contract.orphans.retry_window_hours
            )
        return dg.MaterializeResult(
            metadata={"promoted": promoted, "orphans_still_in_window": waiting}
        )

    return [true_orphan]


def build_quarantine_spec(contract: Contract) -> dg.AssetSpec:
    """The quarantine table in the lineage graph, observed by every load instead of joined to
    every table by an edge: sixteen edges into one node made the global graph unreadable, and
    they said nothing a table's own materialization does not (its rows quarantined by stage).
    Each load's observation carries its source table, partitions and counts, so the asset's
    event history is the audit trail in time order."""
    return dg.AssetSpec(
        QUARANTINE,
        group_name="audit",
        kinds={"postgres"},
        description=(
            "Every rejected source row with its stage, rule, column, all reasons, raw values "
            "(PII masked), file, row number, partition and run. Written by the table assets' IO "
            "manager in the same transaction as their clean rows; each load records an "
            "observation here (source table, partitions, rows quarantined by stage)."
        ),
        metadata=table_metadata(contract, QUARANTINE),
    )


def build_maintenance_schedules(contract: Contract) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name="true_orphan_promotion",
            cron_schedule=contract.orphans.promotion_cron,
            target=dg.AssetSelection.assets(TRUE_ORPHAN),
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Promote orphans unresolved after the retry window to true_orphan.",
            tags={"dagster/max_runtime": "300"},
        ),
    ]
