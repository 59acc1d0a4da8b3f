"""One asset per warehouse table, built from the contract by a single factory.

Dimensions are daily partitions of `input/batch/YYYY-MM-DD/` (the master snapshot is the start
date's partition); facts are hourly partitions of `input/stream/YYYY-MM-DD/HH/`. Foreign keys
become `deps` (lineage and in-run ordering, never blocking). The asset reads, validates and masks;
the Postgres IO manager writes the resulting `LoadBatch` in one transaction.
"""

from collections.abc import Iterator

import dagster as dg
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from fastfeast_dagster import pii
from fastfeast_dagster.checks.asset_checks import check_specs, evaluate_checks
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.settings import ColumnSpec, Contract, SourceSpec, data_root
from fastfeast_dagster.sources.layout import partition_file
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.batch import LoadBatch
from fastfeast_dagster.warehouse.ddl import DERIVED_SQL_TYPES, SQL_TYPES

GROUPS = {"dimension": "dimensions", "fact": "facts"}
IO_MANAGER_KEY = "warehouse_io_manager"


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


def build_table_asset(
    source: str, contract: Contract, partitions: dict[str, dg.PartitionsDefinition]
) -> dg.AssetsDefinition:
    spec = contract.sources[source]
    schema = contract.warehouse.schema_name
    partitions_def = partitions[spec.kind]

    @dg.asset(
        name=spec.table,
        description=spec.description,
        group_name=GROUPS[spec.kind],
        owners=spec.owners or contract.owners,
        kinds={"postgres", "pandas"},
        partitions_def=partitions_def,
        deps=_dependencies(spec, contract),
        io_manager_key=IO_MANAGER_KEY,
        dagster_type=_batch_type(spec),
        metadata={
            "dagster/column_schema": _column_schema(spec),
            "dagster/table_name": f"{schema}.{spec.table}",
            "partition_expr": "_partition_key",
            "source": source,
        },
        # Facts re-load a range in one run and one transaction; dimensions replay day by day
        # so that the never-regress rule sees the days in order.
        check_specs=check_specs(spec, partitions_def),
        backfill_policy=(
            dg.BackfillPolicy.single_run()
            if spec.kind == "fact"
            else dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
        ),
    )
    def _table(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Iterator[object]:
        root = data_root(contract)
        files = [partition_file(contract, root, source, key) for key in context.partition_keys]
        missing = [str(item.path) for item in files if not item.path.exists()]
        if missing:
            raise dg.Failure(
                description=f"{spec.table}: no source file for the partition",
                metadata={"missing_files": dg.MetadataValue.json(missing)},
            )
        batch = prepare_batch(source, files, contract, root, pii.load_key(contract))
        yield dg.Output(batch, metadata={"rows_read": batch.rows_read})
        # The IO manager has committed by now: the checks see what was loaded.
        yield from evaluate_checks(warehouse, contract, spec, batch, spec.table)

    return _table


def _dependencies(spec: SourceSpec, contract: Contract) -> list[dg.AssetDep]:
    parents = dict.fromkeys(fk.references for fk in spec.foreign_keys)
    deps = []
    for parent_name in parents:
        parent = contract.sources[parent_name]
        # An hour depends on its day's dimensions; same-grain parents map one to one.
        mapping = dg.TimeWindowPartitionMapping() if parent.kind != spec.kind else None
        deps.append(dg.AssetDep(parent.table, partition_mapping=mapping))
    return deps


def _column_schema(spec: SourceSpec) -> dg.TableSchema:
    columns = [
        dg.TableColumn(
            name,
            SQL_TYPES[column.type],
            description=column.description or _describe(column),
            constraints=dg.TableColumnConstraints(
                nullable=column.nullable, unique=name == spec.primary_key
            ),
        )
        for name, column in spec.columns.items()
    ]
    columns += [
        dg.TableColumn(
            name, DERIVED_SQL_TYPES[derived.kind], description=f"derived: {derived.kind}"
        )
        for name, derived in spec.derived.items()
    ]
    return dg.TableSchema(columns=columns)


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


def _batch_type(spec: SourceSpec) -> dg.DagsterType:
    """A type check that the clean rows match the warehouse table before they are written."""
    builders = {
        "int": PandasColumn.integer_column,
        "float": PandasColumn.float_column,
        "text": PandasColumn.string_column,
        "bool": PandasColumn.boolean_column,
        "date": PandasColumn.datetime_column,
        "timestamp": PandasColumn.datetime_column,
    }
    columns = [
        builders[column.type](
            name,
            non_nullable=not column.nullable,
            # A fact range may carry several versions of one key (one per hour); a day may not.
            unique=name == spec.primary_key and spec.kind == "dimension",
            ignore_missing_vals=column.nullable,
        )
        for name, column in spec.columns.items()
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


def build_table_assets(contract: Contract) -> list[dg.AssetsDefinition]:
    partitions: dict[str, dg.PartitionsDefinition] = {
        "dimension": daily_partitions(contract),
        "fact": hourly_partitions(contract),
    }
    return [build_table_asset(source, contract, partitions) for source in contract.load_order()]
