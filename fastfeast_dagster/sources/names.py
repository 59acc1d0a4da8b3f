"""Column names as a file gives them: matched to the contract's, shown only when they are names.

A CSV header or a JSON key is data the file brought. A CSV file without its header row makes the
first data row the "header", so its "column names" are a customer's e-mail address and phone: a
name from a file is quoted in a message, or kept as a key of quarantined raw values, only when it
looks like a column name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastfeast_dagster.contract import Contract, SourceSpec
from fastfeast_dagster.contract.model import ColumnNames

# An identifier, as the contract's own column names are: no digit first, no `@`, `.` or space.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def looks_like_name(text: str) -> bool:
    return _NAME.fullmatch(text.strip()) is not None


@dataclass(frozen=True)
class ColumnMatch:
    """A source's contract columns, and how a file's names are brought to their spelling."""

    columns: frozenset[str]
    naming: ColumnNames
    # The source's drift policy rescues unknown columns: a JSON key the contract does not know
    # is kept as a column (validation/drift.py) instead of costing its record.
    rescue: bool = False

    @classmethod
    def of(cls, contract: Contract, source: str) -> ColumnMatch:
        spec: SourceSpec = contract.sources[source]
        rescue = contract.drift_policy(source).rescue_unknown
        return cls(frozenset(spec.columns), contract.column_names, rescue)

    def canonical(self, name: str) -> str:
        return self.naming.normalise(name)

    def unknown(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name not in self.columns]
