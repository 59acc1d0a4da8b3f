"""One asset per warehouse table, built from the contract by a single factory.

Dimensions are daily partitions of `input/batch/YYYY-MM-DD/` (the master snapshot is the start
date's partition); facts are hourly partitions of `input/stream/YYYY-MM-DD/HH/`. Foreign keys
become `deps` (lineage and in-run ordering, never blocking). The asset reads, validates and masks
its files into a `LoadBatch`; the Postgres IO manager writes it in one transaction, and the
table's checks (`checks/asset_checks.py`) then read back what committed.
"""

import datetime as dt

import dagster as dg
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from fastfeast_dagster import pii
from fastfeast_dagster.assets.metadata import table_metadata
from fastfeast_dagster.batch import LoadBatch
from fastfeast_dagster.contract import ColumnSpec, Contract, data_root
from fastfeast_dagster.sources.layout import partition_file
from fastfeast_dagster.sources.storage import for_run
from fastfeast_dagster.validation.prepare import prepare_batch

GROUPS = {"dimension": "dimensions", "fact": "facts"}
IO_MANAGER_KEY = "warehouse_io_manager"
LOAD_POOL = "warehouse_load"


def build_table_asset(
    source: str, contract: Contract, partitions_def: dg.TimeWindowPartitionsDefinition
) -> dg.AssetsDefinition:
    spec = contract.sources[source]

    @dg.asset(
        name=spec.table,
        description=spec.description,
        group_name=GROUPS[spec.kind],
        owners=spec.owners or contract.owners,
        kinds={"postgres", "pandas"},
        partitions_def=partitions_def,
        deps=_dependencies(source, contract),
        io_manager_key=IO_MANAGER_KEY,
        # Caps concurrent loads across every run worker where the instance sets a limit
        # (deploy/: `concurrency.pools`); unlimited where none is set, as on one machine.
        pool=LOAD_POOL,
        dagster_type=_batch_type(contract, source),
        metadata={
            "dagster/column_schema": _column_schema(contract, source),
            **table_metadata(contract, spec.table),
        },
        # Facts re-load a range in one run and one transaction; dimensions replay day by day
        # so that the never-regress rule sees the days in order.
        backfill_policy=(
            dg.BackfillPolicy.single_run()
            if spec.kind == "fact"
            else dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
        ),
        freshness_policy=_freshness_policy(contract) if spec.kind == "fact" else None,
    )
    def _table(context: dg.AssetExecutionContext) -> LoadBatch:
        root = for_run(data_root(contract), context.run.tags)
        files = [partition_file(contract, root, source, key) for key in context.partition_keys]
        missing = [str(item.path) for item in files if not item.path.exists()]
        if missing:
            raise dg.Failure(
                description=f"{spec.table}: no source file for the partition",
                metadata={"missing_files": dg.MetadataValue.json(missing)},
            )
        return prepare_batch(source, files, contract, root, pii.load_key(contract))

    return _table


def _freshness_policy(contract: Contract) -> dg.FreshnessPolicy:
    """Facts arrive every hour: a stream that has loaded nothing for a while is late.

    The daemon evaluates it (no check, no sensor) and the asset shows its freshness state; it
    looks at the latest materialization of any hour, as the stream sensor loads the hours.
    """
    sensors = contract.sensors
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(minutes=sensors.freshness_fail_minutes),
        warn_window=dt.timedelta(minutes=sensors.freshness_lag_minutes),
    )


def _dependencies(source: str, contract: Contract) -> list[dg.AssetDep]:
    kind = contract.sources[source].kind
    deps = []
    for parent_name in contract.relations.parent_sources(source):
        parent = contract.sources[parent_name]
        # An hour depends on its day's dimensions; same-grain parents map one to one.
        mapping = dg.TimeWindowPartitionMapping() if parent.kind != kind else None
        deps.append(dg.AssetDep(parent.table, partition_mapping=mapping))
    # Derived date and time keys reference the (unpartitioned) calendar tables.
    refs = contract.relations.parents_of(source)
    calendar = [ref.parent_table for ref in refs if ref.to_calendar]
    deps += [dg.AssetDep(table) for table in dict.fromkeys(calendar)]
    return deps


def _column_schema(contract: Contract, source: str) -> dg.TableSchema:
    spec = contract.sources[source]
    described = {
        name: column.description or _describe(column) for name, column in spec.columns.items()
    }
    derived = {name: f"derived: {column.kind}" for name, column in spec.derived.items()}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                column.name,
                column.type.sql,
                description=described.get(column.name) or derived.get(column.name),
                constraints=dg.TableColumnConstraints(
                    nullable=column.nullable, unique=column.name == spec.primary_key
                ),
            )
            for column in contract.table_columns(source)
        ]
    )


def _describe(column: ColumnSpec) -> str:
    parts = []
    if column.allowed:
        parts.append(f"one of {', '.join(column.allowed)}")
    if column.format:
        parts.append(f"format {column.format}")
    if column.min is not None or column.max is not None:
        parts.append(f"range [{column.min}, {column.max}]")
    if column.pii:
        parts.append(f"PII, HMAC-masked as {column.pii}")
    return "; ".join(parts)


def _batch_type(contract: Contract, source: str) -> dg.DagsterType:
    """A type check that the clean rows match the warehouse table before they are written."""
    spec = contract.sources[source]
    columns = [
        getattr(PandasColumn, f"{column.type.pandas_check}_column")(
            column.name,
            non_nullable=not column.nullable,
            # A fact range may carry several versions of one key (one per hour); a day may not.
            unique=column.name == spec.primary_key and spec.kind == "dimension",
            ignore_missing_vals=column.nullable,
        )
        for column in contract.table_columns(source)
        if column.name in spec.columns
    ]
    frame_type = create_dagster_pandas_dataframe_type(f"{spec.table}_rows", columns=columns)

    def check(context: dg.TypeCheckContext, value: object) -> dg.TypeCheck:
        if not isinstance(value, LoadBatch):
            return dg.TypeCheck(False, description=f"expected a LoadBatch, got {type(value)}")
        return frame_type.type_check(context, value.clean)

    return dg.DagsterType(
        type_check_fn=check,
        name=f"{spec.table}_batch",
        description=f"Validated, masked rows for {spec.table}, matching its contract columns.",
        typing_type=LoadBatch,
    )


def build_table_assets(
    contract: Contract, partitions: dict[str, dg.TimeWindowPartitionsDefinition]
) -> list[dg.AssetsDefinition]:
    """Every source's table asset, parents first; `partitions` by source kind."""
    return [
        build_table_asset(source, contract, partitions[contract.sources[source].kind])
        for source in contract.load_order()
    ]


def build_history_specs(
    contract: Contract, partitions: dict[str, dg.TimeWindowPartitionsDefinition]
) -> list[dg.AssetSpec]:
    """Each dimension's history table in the lineage: written by the dimension's own load, in
    its transaction, so it is observed there rather than materialized by a step of its own."""
    return [
        dg.AssetSpec(
            spec.history_table,
            description=(
                f"{spec.table}'s members as they were over time (SCD type 2): "
                f"{', '.join(spec.history.track)} from valid_from until valid_to."
            ),
            group_name=GROUPS[spec.kind],
            owners=spec.owners or contract.owners,
            kinds={"postgres"},
            deps=[spec.table],
            partitions_def=partitions[spec.kind],
            metadata=table_metadata(contract, spec.history_table),
        )
        for spec in contract.sources.values()
        if spec.history is not None
    ]
