"""`LoadScope`: what one load writes to, handed to each step of the load as one object."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from psycopg import sql

from fastfeast_dagster.contract import Contract, Reference, SourceSpec, TableColumn

# The load's temporary tables (ON COMMIT DROP): the clean rows, and the quarantine and repair
# rows of this load before they are compared with what those tables already hold.
STAGE = sql.Identifier("_stage")
QUARANTINE_STAGE = sql.Identifier("_quarantine_new")
REPAIR_STAGE = sql.Identifier("_repair_new")


@dataclass(frozen=True)
class LoadScope:
    contract: Contract
    source: str
    asset_key: str
    run_id: str
    partition_keys: list[str]

    @cached_property
    def spec(self) -> SourceSpec:
        return self.contract.sources[self.source]

    @cached_property
    def table_columns(self) -> list[TableColumn]:
        return self.contract.table_columns(self.source)

    @property
    def schema(self) -> str:
        return self.contract.warehouse.schema_name

    @property
    def table(self) -> sql.Identifier:
        return self.relation(self.spec.table)

    def relation(self, name: str) -> sql.Identifier:
        """A table of the warehouse schema."""
        return sql.Identifier(self.schema, name)

    @cached_property
    def parents(self) -> list[Reference]:
        """The references this table's rows must satisfy (foreign keys, then calendar keys)."""
        return self.contract.relations.parents_of(self.source)

    @cached_property
    def children(self) -> list[Reference]:
        """Other tables' foreign keys that point at this table's rows."""
        return self.contract.relations.children_of(self.source)
