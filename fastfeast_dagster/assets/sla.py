"""The ticket SLA asset: daily partitions, each applying its day's fact hours to the SLA state.

A partition is the fact day whose loads it applies, so the day's KPI marts can run in the same
run right after it. The derived-tables sensor names the hours that loaded (run config); a run
without them (from the UI, a backfill) applies every hour of the day. Either way only the
tickets those hours touch are recomputed (`warehouse/sla.py`), and the materialization lists the
ticket days whose rows changed, so a late event of a ticket from another day reaches that day's
mart too.
"""

import dagster as dg
from pydantic import Field

from fastfeast_dagster.assets.metadata import table_metadata
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.sla import SLA_VIEW, apply_fact_hours, day_status_counts

# The metadata entry listing the days (YYYY-MM-DD) whose SLA rows a materialization changed.
CHANGED_DAYS = "changed_days"
# What the view reads: the facts of the day's hours, and the agents' current team.
_FACT_PARENTS = ("fact_ticket", "fact_ticket_event", "fact_order")


class SlaHours(dg.Config):
    hours: list[str] = Field(
        default_factory=list,
        description="fact hours (YYYY-MM-DD-HH:00) whose loads to apply; empty: every hour of "
        "the day",
    )


def date_key(day: str) -> int:
    """`YYYY-MM-DD` → the date key YYYYMMDD."""
    return int(day.replace("-", ""))


def day_of_key(key: int) -> str:
    """The date key YYYYMMDD → `YYYY-MM-DD`, the daily partition key."""
    text = str(key)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def build_sla_asset(
    contract: Contract,
    daily: dg.TimeWindowPartitionsDefinition,
    hourly: dg.TimeWindowPartitionsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=SLA_VIEW,
        group_name="analytics",
        kinds={"postgres"},
        partitions_def=daily,
        deps=[
            *(
                dg.AssetDep(fact, partition_mapping=dg.TimeWindowPartitionMapping())
                for fact in _FACT_PARENTS
            ),
            # Joined when the view is read: whatever the newest snapshot holds.
            dg.AssetDep("dim_agent", partition_mapping=dg.LastPartitionMapping()),
        ],
        description=(
            "Per ticket: first-response and resolution status (met / breached / pending as of "
            "the query), minutes, reopen count, agent, team, priority, channel, region. A view "
            "over ticket_sla_state, whose rows each partition recomputes for the tickets its "
            "day's loaded fact hours touched."
        ),
        metadata=table_metadata(contract, SLA_VIEW),
    )
    def ticket_sla(
        context: dg.AssetExecutionContext, config: SlaHours, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        hours = config.hours or list(
            hourly.get_partition_keys_in_time_window(context.partition_time_window)
        )
        with warehouse.connect() as conn:
            update = apply_fact_hours(conn, contract, hours)
            counts = day_status_counts(conn, contract, date_key(context.partition_key))
        return dg.MaterializeResult(
            metadata={
                "dagster/partition_row_count": sum(
                    n for name, n in counts.items() if name.startswith("first_response_")
                ),
                "hours_applied": len(hours),
                "tickets_recomputed": update.tickets,
                "rows_written": update.written,
                "rows_removed": update.removed,
                CHANGED_DAYS: dg.MetadataValue.json([day_of_key(day) for day in update.days]),
                **counts,
            }
        )

    return ticket_sla
