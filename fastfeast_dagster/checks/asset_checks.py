"""Asset checks evaluated inline, per partition, right after the IO manager committed the load.

- `great_expectations`: the table's GE suite over exactly the rows this partition loaded, read
  back from Postgres. Blocking for dimensions: their children in the same run do not load on a
  failed suite.
- `quarantine_rate`: the share of this partition's rows that went to quarantine (WARN above the
  contract's warn rate, ERROR above its error rate); it never blocks, the rows are accounted for.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.settings import EXPECTATIONS_DIR, Contract, SourceSpec
from fastfeast_dagster.warehouse.batch import LoadBatch
from fastfeast_dagster.warehouse.readback import read_rows

GE_CHECK = "great_expectations"
QUARANTINE_CHECK = "quarantine_rate"


def check_specs(
    spec: SourceSpec, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            GE_CHECK,
            asset=spec.table,
            partitions_def=partitions_def,
            blocking=spec.kind == "dimension",
            description=f"The Great Expectations suite config/expectations/{spec.table}.json "
            "over the rows this partition loaded.",
        ),
        dg.AssetCheckSpec(
            QUARANTINE_CHECK,
            asset=spec.table,
            partitions_def=partitions_def,
            description="Share of the partition's source rows that went to quarantine.",
        ),
    ]


def evaluate_checks(
    warehouse: Warehouse, contract: Contract, spec: SourceSpec, batch: LoadBatch, asset_key: str
) -> Iterator[dg.AssetCheckResult]:
    with warehouse.connect() as conn:
        if spec.kind == "fact":
            frame = read_rows(conn, contract, spec, partition_keys=batch.partition_keys)
        else:
            # A dimension row belongs to the newest day that changed it: check this day's keys.
            keys = batch.clean[spec.primary_key].dropna().tolist()
            frame = read_rows(conn, contract, spec, primary_keys=keys)
        quarantined, total = _quarantine_counts(conn, contract, asset_key, batch.partition_keys)
    yield _suite_result(frame, spec)
    yield _quarantine_result(contract, quarantined, total)


def _suite_result(frame: pd.DataFrame, spec: SourceSpec) -> dg.AssetCheckResult:
    # Imported here: the runner pulls in Great Expectations (seconds), which code servers and
    # sensors must not pay for.
    from fastfeast_dagster.checks.runner import run_suite

    outcome = run_suite(
        frame, EXPECTATIONS_DIR / f"{spec.table}.json", pii_columns=spec.pii_columns
    )
    return dg.AssetCheckResult(
        check_name=GE_CHECK,
        passed=outcome.failed == 0,
        severity=dg.AssetCheckSeverity.ERROR if not outcome.success else dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_validated": len(frame),
            "expectations_evaluated": outcome.evaluated,
            "expectations_failed": outcome.failed,
            "failed_expectations": dg.MetadataValue.json(outcome.failures),
            "great_expectations_version": outcome.ge_version,
        },
    )


def _quarantine_result(contract: Contract, quarantined: int, total: int) -> dg.AssetCheckResult:
    rate = quarantined / total if total else 0.0
    thresholds = contract.quarantine
    return dg.AssetCheckResult(
        check_name=QUARANTINE_CHECK,
        passed=rate <= thresholds.warn_rate,
        severity=(
            dg.AssetCheckSeverity.ERROR
            if rate > thresholds.error_rate
            else dg.AssetCheckSeverity.WARN
        ),
        metadata={
            "quarantine_rate": rate,
            "rows_quarantined": quarantined,
            "rows_read": total,
            "warn_above": thresholds.warn_rate,
            "error_above": thresholds.error_rate,
        },
    )


def _quarantine_counts(
    conn: psycopg.Connection, contract: Contract, asset_key: str, keys: list[str]
) -> tuple[int, int]:
    row = conn.execute(
        sql.SQL(
            "SELECT coalesce(sum(quarantined), 0), coalesce(sum(total_records), 0) FROM {}"
            " WHERE asset_key = %s AND partition_key = ANY(%s) AND superseded_at IS NULL"
        ).format(sql.Identifier(contract.warehouse.schema_name, "pipeline_file_log")),
        (asset_key, keys),
    ).fetchone()
    return int(row[0]), int(row[1])


def build_freshness_checks(contract: Contract) -> list[dg.AssetChecksDefinition]:
    """Stream facts must have been loaded within the contract's lag (WARN otherwise)."""
    import datetime as dt

    facts = [spec.table for spec in contract.facts.values()]
    return list(
        dg.build_last_update_freshness_checks(
            assets=facts,
            lower_bound_delta=dt.timedelta(minutes=contract.sensors.freshness_lag_minutes),
        )
    )
