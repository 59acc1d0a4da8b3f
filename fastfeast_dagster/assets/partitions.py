"""The two partitions definitions: a day per batch folder (dimensions), an hour per stream folder
(facts). Both start where the contract says, in its time zone."""

from __future__ import annotations

from collections.abc import Mapping

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


# The tags Dagster puts on a run of one partition, or of a range of them (a backfill's run).
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def run_partition_range(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """The first and last partition a run covered, from its tags."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG], tags[PARTITION_TAG]
    first, last = (tags.get(tag) for tag in RANGE_TAGS)
    return (first, last) if first and last else None


def run_partition(tags: Mapping[str, str]) -> str | None:
    """The partition (or partition range) a run covered, as the operator reads it."""
    covered = run_partition_range(tags)
    if covered is None:
        return None
    first, last = covered
    return first if first == last else f"{first}...{last}"
