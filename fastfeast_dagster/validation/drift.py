"""Schema drift: a file's columns against its source's contract, pure (no warehouse, no Dagster).

The file stage compares the column set. What differs is drift, and the source's policy
(`drift:` in the contract, overridable per source) says what it costs:
- an **unknown column** is rescued (its values go into the row's `_rescued` jsonb, masked as
  quarantine's raw data is: by the PII kind its name suggests, `pii_names`, else any value that
  looks like PII) or rejects the file (`extra_columns`);
- a **missing nullable column** loads as NULL, or rejects the file (`missing_columns`);
- a missing key, foreign key, essential or required column always rejects the file, naming it.
Every drift, also one that rejected its file, is one line of the drift log (`schema_drift`,
written by the load, `warehouse/drift.py`).

Adopting a column is a contract edit; `adoption_yaml` writes it, with the type the rescued
values parse as (`infer_type`) and the PII kind they were masked as.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from fastfeast_dagster.batch import ROW_COLUMN, FileRejection
from fastfeast_dagster.contract import ColumnSpec, Contract
from fastfeast_dagster.contract.model import PiiName
from fastfeast_dagster.validation.engine import parse_column

UNKNOWN = "unknown"
MISSING = "missing"


@dataclass(frozen=True)
class ColumnDrift:
    """How a file's columns differ from the contract's, and whether that rejects the file."""

    unknown: list[str]
    missing: list[str]  # every contract column the file lacks, required ones included
    rejection: FileRejection | None

    @property
    def rescued(self) -> list[str]:
        """The unknown columns whose values go into `_rescued` (none when the file is rejected)."""
        return [] if self.rejection is not None else self.unknown


def column_drift(frame: pd.DataFrame, contract: Contract, source: str) -> ColumnDrift:
    """The file stage: the frame's columns (order is free) against the source's contract."""
    spec = contract.sources[source]
    present = [name for name in frame.columns if name != ROW_COLUMN]
    if not present and frame.empty:
        # An empty JSON array carries no keys: it is a partition with no rows, not a bad file.
        return ColumnDrift([], [], None)
    policy = contract.drift_policy(source)
    values = contract.value_policies(source)
    unknown = [name for name in present if name not in spec.columns]
    missing = [name for name in spec.columns if name not in present]
    # A key, a foreign key or an essential column rejects its row when bad: missing, every row.
    required = [name for name in missing if values[name].reject or not spec.columns[name].nullable]
    problems = []
    if required:
        problems.append(f"missing key or required column(s) {', '.join(required)}")
    refused = [] if policy.null_missing else [n for n in missing if n not in required]
    if refused:
        problems.append(f"missing column(s) {', '.join(refused)}")
    if unknown and not policy.rescue_unknown:
        problems.append(f"unexpected column(s) {', '.join(unknown)}")
    rejection = None
    if problems:
        rejection = FileRejection(
            "missing_columns" if required or refused else "extra_columns",
            f"the columns do not match the contract: {'; '.join(problems)}",
        )
    return ColumnDrift(unknown, missing, rejection)


def pii_name_kind(name: str, rules: Sequence[PiiName]) -> str | None:
    """The PII kind an unknown column's name suggests (`drift.pii_names`), if any."""
    for rule in rules:
        if re.search(rule.pattern, name, flags=re.IGNORECASE):
            return rule.pii
    return None


def carried(values: pd.Series, contract: Contract) -> pd.Series:
    """Which values are there at all: neither missing nor a token of the null vocabulary."""
    text = values.astype("string").str.strip().str.lower()
    return (values.notna() & ~text.isin(contract.null_vocabulary).fillna(False)).astype(bool)


# Tried in this order: the narrowest type all of a column's values parse as is suggested.
_INFERRED = ("int", "float", "bool", "date", "timestamp")


def infer_type(values: Iterable[str | None], contract: Contract) -> str:
    """The contract type to adopt a rescued column as: the first all its values parse as."""
    text = pd.Series(list(values), dtype="string")
    text = text[carried(text, contract)]
    if text.empty:
        return "text"
    for kind in _INFERRED:
        _, bad = parse_column(text, "value", ColumnSpec(type=kind), contract)  # type: ignore[arg-type]
        if not bad.any():
            return kind
    return "text"


@dataclass(frozen=True)
class DriftedColumn:
    """One drifted column of a table, as the drift log adds it up."""

    source: str
    column: str
    kind: str  # UNKNOWN or MISSING
    rows: int
    files: int
    first_seen: str
    last_seen: str
    type: str = "text"  # what the rescued values parse as (unknown columns)
    pii: str | None = None  # the kind the name made them masked as (unknown columns)


def adoption_yaml(columns: Sequence[DriftedColumn]) -> str:
    """The contract lines that adopt the unknown columns (missing ones as a comment each)."""
    lines: list[str] = ["sources:"]
    for source in dict.fromkeys(column.source for column in columns):
        lines += [f"  {source}:", "    columns:"]
        for column in columns:
            if column.source != source:
                continue
            if column.kind == MISSING:
                lines.append(
                    f"      # {column.column}: missing from {column.files} file(s), loaded as"
                    " NULL; remove it here if the export dropped it for good"
                )
                continue
            fields = f"type: {column.type}" + (f", pii: {column.pii}" if column.pii else "")
            lines.append(f"      {column.column}: {{{fields}}}")
    return "\n".join(lines)
