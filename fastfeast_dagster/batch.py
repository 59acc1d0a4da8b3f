"""The batch model that every stage hands to the next: file → frame → verdict → load → report.

`sources/` finds and reads `PartitionFile`s into `SourceFile`s (or `FileRejection`s);
`validation/` turns them into a `LoadBatch` (clean rows and the quarantine rows of the verdict);
`warehouse/` writes one batch in one transaction and answers with a `LoadReport`. The lineage
columns every loaded and quarantined row carries are named here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from fastfeast_dagster.contract.types import LOADED_AT_TYPE, TYPES, ColumnType, TableColumn

# Lineage of every loaded row: where it came from, which partition and which run loaded it.
FILE_COLUMN = "_source_file"
ROW_COLUMN = "_source_row"  # 1-based data row in the source file
PARTITION_COLUMN = "_partition_key"
RUN_COLUMN = "_run_id"
LOADED_AT_COLUMN = "_loaded_at"
LINEAGE_COLUMNS = (
    TableColumn(FILE_COLUMN, TYPES["text"], nullable=False),
    TableColumn(ROW_COLUMN, TYPES["int"], nullable=False),
    TableColumn(PARTITION_COLUMN, TYPES["text"], nullable=False),
    TableColumn(RUN_COLUMN, TYPES["text"], nullable=False),
    TableColumn(LOADED_AT_COLUMN, LOADED_AT_TYPE, nullable=False, default="now()"),
)

# A source table's values of columns the contract does not know, per row (`validation/drift.py`).
RESCUED_COLUMN = "_rescued"
RESCUED = TableColumn(RESCUED_COLUMN, ColumnType("jsonb", object, pa.string()))


@dataclass(frozen=True)
class PartitionFile:
    """A file to load and the partition it belongs to (it may not exist yet)."""

    path: Path
    folder_kind: str  # master, batch or stream
    partition_key: str


@dataclass(frozen=True)
class SourceFile:
    """A file as found on disk, identified by what was read (md5 of the bytes actually parsed)."""

    path: Path
    relative_path: str
    size: int
    mtime_ns: int
    md5: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class FileRejection:
    """The whole file is unusable; `rule` is a stable key, `message` says what is wrong."""

    rule: str
    message: str


@dataclass(frozen=True)
class FileOutcome:
    """One source file of the batch and what validation made of it."""

    file: SourceFile
    folder_kind: str
    partition_key: str
    rows_read: int
    rejection: FileRejection | None = None


# The columns of `LoadBatch.quarantine`, as the `quarantine` table names them; the load adds the
# asset key and the run.
QUARANTINE_ROW_COLUMNS = [
    "source_file",
    "source_path",
    "source_table",
    "source_row",
    "rejection_stage",
    "rejection_rule",
    "rejection_column",
    "rejection_reason",
    "reasons",
    "raw_data",
    "partition_key",
]


# The columns of `LoadBatch.repairs`, as the `value_repair` table names them.
REPAIR_ROW_COLUMNS = [
    "source_file",
    "source_path",
    "source_table",
    "source_row",
    "repair_stage",
    "repair_rule",
    "repair_column",
    "repair_reason",
    "raw_value",
    "repaired_to",
    "partition_key",
]


# The columns of `LoadBatch.drift`, as the `schema_drift` table names them.
DRIFT_ROW_COLUMNS = [
    "source_file",
    "source_path",
    "source_table",
    "column_name",
    "drift_kind",
    "row_count",
    "partition_key",
]


@dataclass
class LoadBatch:
    """The verdict on one or more partitions of one source, ready to be written in one go.

    `clean` holds the typed contract and derived columns plus `_source_file`, `_source_row` and
    `_partition_key` (and `_rescued`, the masked values of unknown columns, as JSON text or
    None), bad descriptive values already repaired; `quarantine` one row per rejected
    source row (all its reasons, its masked raw values) in `QUARANTINE_ROW_COLUMNS`; `repairs`
    one row per repaired value in `REPAIR_ROW_COLUMNS`. Rows whose parents are missing are found
    at load time, in the warehouse: they join the quarantine there, and their repairs are void.
    """

    source: str
    partition_keys: list[str]
    files: list[FileOutcome]
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    repairs: pd.DataFrame
    stage_seconds: dict[str, float] = field(default_factory=dict)  # read, validate, mask
    # One row per (file, drifted column) in `DRIFT_ROW_COLUMNS`.
    drift: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DRIFT_ROW_COLUMNS))

    @property
    def rows_read(self) -> int:
        return sum(outcome.rows_read for outcome in self.files)

    @property
    def rejected_partitions(self) -> set[str]:
        """Partitions whose file was rejected whole: no file is not "no rows"."""
        return {outcome.partition_key for outcome in self.files if outcome.rejection is not None}


@dataclass
class FileCounts:
    total: int
    loaded: int
    quarantined: int
    repaired: int  # loaded rows with at least one repaired value
    duplicates: int
    orphans: int
    status: str
    md5: str
    error: str | None = None


@dataclass
class LoadReport:
    table: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_repaired: int
    inserted: int
    updated: int
    removed: int
    duplicates: int
    orphans: int
    rejects_by_stage: dict[str, int]
    repairs_by_column: dict[str, int]
    files: dict[str, FileCounts] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Whether the upsert left the keys' proof to the orphan stage (`warehouse/keys.py`).
    fk_triggers_skipped: bool = False
    # A dimension with history: versions this load began, and same-day versions it corrected.
    versions_opened: int = 0
    versions_corrected: int = 0
