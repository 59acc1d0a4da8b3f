"""Definition metadata every warehouse-backed asset carries, written one way."""

from __future__ import annotations

from fastfeast_dagster.contract import Contract


def table_metadata(contract: Contract, table: str) -> dict[str, str]:
    """`dagster/table_name`: where the asset lives, schema-qualified, as the UI shows it."""
    return {"dagster/table_name": f"{contract.warehouse.schema_name}.{table}"}
