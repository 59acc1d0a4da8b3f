"""Scheduled maintenance assets: the ticket SLA view refresh and true-orphan promotion.

Both are unpartitioned and driven by schedules that run by default: Declarative Automation only
looks at the latest time partition and waits for every dependency.
"""

import dagster as dg

from fastfeast_dagster.assets.metadata import table_metadata
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.orphans import promote_true_orphans
from fastfeast_dagster.warehouse.sla import SLA_VIEW, refresh_sla_view

TRUE_ORPHAN = "true_orphan"


def maintenance_assets(contract: Contract) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=SLA_VIEW,
        group_name="analytics",
        kinds={"postgres"},
        deps=["fact_ticket", "fact_ticket_event", "fact_order"],
        description=(
            "Per ticket: first-response and resolution status (met / breached / pending against "
            "the refresh time), minutes, reopen count, agent, team, priority, channel, region. A "
            "materialized view refreshed CONCURRENTLY, so readers are never blocked."
        ),
        metadata=table_metadata(contract, SLA_VIEW),
    )
    def ticket_sla(warehouse: Warehouse) -> dg.MaterializeResult:
        with warehouse.connect() as conn:
            counts = refresh_sla_view(conn, contract)
        tickets = sum(n for name, n in counts.items() if name.startswith("first_response_"))
        return dg.MaterializeResult(metadata={"dagster/row_count": tickets, **counts})

    @dg.asset(
        name=TRUE_ORPHAN,
        group_name="audit",
        kinds={"postgres"},
        deps=["quarantine"],
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

    return [ticket_sla, true_orphan]


def build_quarantine_spec(contract: Contract) -> dg.AssetSpec:
    """The quarantine table in the lineage graph: every table asset writes its rejects there."""
    return dg.AssetSpec(
        "quarantine",
        group_name="audit",
        kinds={"postgres"},
        deps=[spec.table for spec in contract.sources.values()],
        description=(
            "Every rejected source row with its stage, rule, column, all reasons, raw values "
            "(PII masked), file, row number, partition and run. Written by the table assets' IO "
            "manager in the same transaction as their clean rows; each load is observed here."
        ),
        metadata=table_metadata(contract, "quarantine"),
    )


def build_maintenance_schedules(contract: Contract) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name="ticket_sla_refresh",
            cron_schedule=f"*/{contract.sla.refresh_minutes} * * * *",
            target=dg.AssetSelection.assets(SLA_VIEW),
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Refresh the ticket SLA view so pending tickets turn breached on time.",
            tags={"dagster/max_runtime": "300"},
        ),
        dg.ScheduleDefinition(
            name="true_orphan_promotion",
            cron_schedule=contract.orphans.promotion_cron,
            target=dg.AssetSelection.assets(TRUE_ORPHAN),
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Promote orphans unresolved after the retry window to true_orphan.",
            tags={"dagster/max_runtime": "300"},
        ),
    ]
