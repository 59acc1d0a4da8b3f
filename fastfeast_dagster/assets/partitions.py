"""The two partitions definitions: a day per batch folder (dimensions), an hour per stream folder
(facts). Both start where the contract says, in its time zone."""

from __future__ import annotations

import dagster as dg

from fastfeast_dagster.contract import Contract


def daily_partitions(contract: Contract) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's folder arrives today, so today must already be a partition.
    return dg.DailyPartitionsDefinition(
        start_date=contract.partitions.batch_start_date.isoformat(),
        timezone=contract.partitions.timezone,
        end_offset=1,
    )


def hourly_partitions(contract: Contract) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(
        start_date=f"{contract.partitions.stream_start_date.isoformat()}-00:00",
        timezone=contract.partitions.timezone,
        end_offset=1,
    )


def partitions_by_kind(contract: Contract) -> dict[str, dg.TimeWindowPartitionsDefinition]:
    """A source's partitions by its kind: `dimension` → daily, `fact` → hourly."""
    return {"dimension": daily_partitions(contract), "fact": hourly_partitions(contract)}
