"""The contract's relations, worked out once: every foreign key resolved to its parent's key.

A source's `foreign_keys` name the referenced *source*. The DDL, the load's key proof and
partition replace, the orphan retry and the lineage graph all need the resolved tables and key
columns, in both directions; derived date and time keys reference the calendar tables, which no
source describes. `Contract.relations` is the only place that works them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastfeast_dagster.contract.model import SourceSpec

# Derived key kind → (calendar table, its key column).
CALENDAR_TABLES = {"date_key": ("dim_date", "date_key"), "time_key": ("dim_time", "time_key")}


@dataclass(frozen=True)
class Reference:
    """A foreign key of a warehouse table: `child_table.column` → `parent_table.parent_column`."""

    child: str  # the referencing source
    child_table: str
    column: str
    parent: str | None  # the referenced source; None for a calendar table
    parent_table: str
    parent_column: str

    @property
    def to_calendar(self) -> bool:
        return self.parent is None

    @property
    def constraint_name(self) -> str:
        return f"fk_{self.child_table}_{self.column}"


@dataclass(frozen=True)
class Relations:
    references: tuple[Reference, ...]

    def parents_of(self, source: str) -> list[Reference]:
        """What `source`'s rows reference: its foreign keys, then its calendar keys."""
        return [ref for ref in self.references if ref.child == source]

    def children_of(self, source: str) -> list[Reference]:
        """The foreign keys of other sources' tables that point at `source`'s key."""
        return [ref for ref in self.references if ref.parent == source]

    def parent_sources(self, source: str) -> list[str]:
        """The distinct sources `source` references, in contract order."""
        return list(
            dict.fromkeys(ref.parent for ref in self.parents_of(source) if ref.parent is not None)
        )


def resolve_relations(sources: Mapping[str, SourceSpec]) -> Relations:
    references: list[Reference] = []
    for name, spec in sources.items():
        for fk in spec.foreign_keys:
            parent = sources[fk.references]
            references.append(
                Reference(
                    name, spec.table, fk.column, fk.references, parent.table, parent.primary_key
                )
            )
        for column, derived in spec.derived.items():
            if derived.kind in CALENDAR_TABLES:
                table, key = CALENDAR_TABLES[derived.kind]
                references.append(Reference(name, spec.table, column, None, table, key))
    return Relations(tuple(references))
