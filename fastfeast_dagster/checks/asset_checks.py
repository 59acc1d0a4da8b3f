"""The checks of every table asset, one `multi_asset_check` per table, run after the asset's step.

Why a check step of its own rather than results yielded from the asset: the data path then reads
one way. The asset hands its `LoadBatch` to the IO manager, which commits it; the check step
takes the asset as its input, which the same IO manager loads back from the warehouse (the rows
of the run's partitions as committed), and judges those. Nothing waits on a side effect of an
earlier yield, and a check can be re-run on what the warehouse holds.

- `great_expectations`: the table's GE suite over the rows the run's partitions own (for a
  dimension: the members that day inserted or changed). Blocking for dimensions: their children
  in the same run do not load on a failed suite.
- `quarantine_rate`: the rate at which the partitions' source rows went to quarantine: WARN when
  it is above the contract's warn rate at the contract's confidence, ERROR when above its error
  rate (`rates.py`: a bound on the rate, so that a few bad rows of a small hour are not news);
  it never blocks, the rows are accounted for.
- `repair_rate`: the same for the rows that loaded with a repaired value (WARN above
  `repair.warn_rate`, never an error: the rows are in the warehouse, the values flagged).
- `contract_drift`: WARN when the partitions' files had columns the contract does not know, or
  lacked some of its columns (`schema_drift`), with the YAML lines that adopt them; the rows are
  accounted for either way (rescued, NULL, or their file rejected).
"""

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.checks.rates import rate_evidence
from fastfeast_dagster.contract import EXPECTATIONS_DIR, Contract, SourceSpec
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.validation.drift import DriftedColumn, adoption_yaml
from fastfeast_dagster.warehouse.drift import drifted_columns
from fastfeast_dagster.warehouse.readback import read_history

GE_CHECK = "great_expectations"
QUARANTINE_CHECK = "quarantine_rate"
REPAIR_CHECK = "repair_rate"
HISTORY_CHECK = "history_great_expectations"
DRIFT_CHECK = "contract_drift"


def build_table_checks(
    source: str, contract: Contract, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    spec = contract.sources[source]
    specs = [
        dg.AssetCheckSpec(
            GE_CHECK,
            asset=spec.table,
            partitions_def=partitions_def,
            blocking=spec.kind == "dimension",
            description=f"The Great Expectations suite config/expectations/{spec.table}.json "
            "over the rows these partitions hold.",
        ),
        dg.AssetCheckSpec(
            QUARANTINE_CHECK,
            asset=spec.table,
            partitions_def=partitions_def,
            description="Whether the partition's source rows go to quarantine more often than the"
            " contract allows, judged on a confidence bound of the rate (checks/rates.py).",
        ),
        dg.AssetCheckSpec(
            REPAIR_CHECK,
            asset=spec.table,
            partitions_def=partitions_def,
            description="Whether the partition's rows load repaired more often than the contract"
            " allows, judged on a confidence bound of the rate (checks/rates.py).",
        ),
        dg.AssetCheckSpec(
            DRIFT_CHECK,
            asset=spec.table,
            partitions_def=partitions_def,
            description="Whether the partition's files drifted from the contract: columns it does"
            " not know (rescued into _rescued) or lacks (loaded as NULL), with the YAML that"
            " adopts them (validation/drift.py).",
        ),
    ]
    if spec.history is not None:
        specs.append(
            dg.AssetCheckSpec(
                HISTORY_CHECK,
                asset=spec.table,
                partitions_def=partitions_def,
                blocking=True,
                description=f"The Great Expectations suite config/expectations/"
                f"{spec.history_table}.json over the versions of the members these partitions"
                " changed: contiguous, one current version each.",
            )
        )

    @dg.multi_asset_check(
        name=f"{spec.table}_checks",
        specs=specs,
        ins={"rows": dg.AssetIn(spec.table)},
        can_subset=True,
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, rows: pd.DataFrame, warehouse: Warehouse
    ) -> Iterator[dg.AssetCheckResult]:
        selected = {key.name for key in context.selected_asset_check_keys}
        if GE_CHECK in selected:
            yield suite_result(rows, spec, GE_CHECK, spec.table)
        if HISTORY_CHECK in selected:
            with warehouse.connect() as conn:
                versions = read_history(conn, contract, source, context.partition_keys)
            yield suite_result(versions, spec, HISTORY_CHECK, spec.history_table)
        if selected & {QUARANTINE_CHECK, REPAIR_CHECK}:
            with warehouse.connect() as conn:
                counts = file_counts(conn, contract, spec.table, context.partition_keys)
            if QUARANTINE_CHECK in selected:
                yield quarantine_result(contract, spec.table, counts)
            if REPAIR_CHECK in selected:
                yield repair_result(contract, spec.table, counts)
        if DRIFT_CHECK in selected:
            with warehouse.connect() as conn:
                drifted = drifted_columns(conn, contract, spec.table, context.partition_keys)
            yield drift_result(spec.table, drifted)

    return _checks


def suite_result(
    frame: pd.DataFrame, spec: SourceSpec, check: str, suite: str
) -> dg.AssetCheckResult:
    """The GE suite `suite` over `frame`, as `spec.table`'s check `check` (PII never echoed)."""
    # Imported here: the runner pulls in Great Expectations (seconds), which code servers and
    # sensors must not pay for.
    from fastfeast_dagster.checks.runner import run_suite

    outcome = run_suite(frame, EXPECTATIONS_DIR / f"{suite}.json", pii_columns=spec.pii_columns)
    return dg.AssetCheckResult(
        asset_key=spec.table,
        check_name=check,
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


def drift_result(table: str, drifted: list[DriftedColumn]) -> dg.AssetCheckResult:
    """WARN when these partitions' files drifted; the description holds the YAML to adopt."""
    if not drifted:
        return dg.AssetCheckResult(
            asset_key=table,
            check_name=DRIFT_CHECK,
            passed=True,
            description="The files' columns are the contract's.",
            metadata={"drifted_columns": 0},
        )
    adopt = adoption_yaml(drifted)
    listed = ", ".join(f"{column.column} ({column.kind}, {column.rows} rows)" for column in drifted)
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=DRIFT_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"The files drifted from the contract: {listed}. To adopt, add to"
        f" config/pipeline.yaml:\n\n```yaml\n{adopt}\n```",
        metadata={
            "drifted_columns": len(drifted),
            "columns": dg.MetadataValue.json([asdict(column) for column in drifted]),
            "adopt_yaml": dg.MetadataValue.md(f"```yaml\n{adopt}\n```"),
        },
    )


@dataclass(frozen=True)
class FileCounts:
    """What the current file-log rows of some partitions add up to."""

    read: int
    quarantined: int
    repaired: int


def quarantine_result(contract: Contract, table: str, counts: FileCounts) -> dg.AssetCheckResult:
    limits = contract.quarantine
    evidence = rate_evidence(counts.quarantined, counts.read, limits.confidence)
    error = evidence.above(limits.error_rate)
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=QUARANTINE_CHECK,
        passed=not evidence.above(limits.warn_rate),
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description=(
            evidence.describe("quarantined", limits.error_rate, "error rate")
            if error
            else evidence.describe("quarantined", limits.warn_rate, "warn rate")
        ),
        metadata={
            "quarantine_rate": evidence.share,
            "quarantine_rate_at_least": evidence.lower_bound,
            "rows_quarantined": counts.quarantined,
            "rows_read": counts.read,
            "warn_above": limits.warn_rate,
            "error_above": limits.error_rate,
            "confidence": limits.confidence,
        },
    )


def repair_result(contract: Contract, table: str, counts: FileCounts) -> dg.AssetCheckResult:
    limits = contract.repair
    evidence = rate_evidence(counts.repaired, counts.read, limits.confidence)
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=REPAIR_CHECK,
        passed=not evidence.above(limits.warn_rate),
        severity=dg.AssetCheckSeverity.WARN,
        description=evidence.describe("repaired", limits.warn_rate, "warn rate"),
        metadata={
            "repair_rate": evidence.share,
            "repair_rate_at_least": evidence.lower_bound,
            "rows_repaired": counts.repaired,
            "rows_read": counts.read,
            "warn_above": limits.warn_rate,
            "confidence": limits.confidence,
        },
    )


def file_counts(
    conn: psycopg.Connection, contract: Contract, asset_key: str, keys: list[str]
) -> FileCounts:
    """The current file-log rows of these partitions, added up."""
    row = conn.execute(
        sql.SQL(
            "SELECT coalesce(sum(total_records), 0), coalesce(sum(quarantined), 0),"
            " coalesce(sum(repaired), 0) FROM {}"
            " WHERE asset_key = %s AND partition_key = ANY(%s) AND superseded_at IS NULL"
        ).format(sql.Identifier(contract.warehouse.schema_name, "pipeline_file_log")),
        (asset_key, keys),
    ).fetchone()
    return FileCounts(*(int(value) for value in row)) if row else FileCounts(0, 0, 0)
