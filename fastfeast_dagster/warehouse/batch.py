"""`LoadBatch`: all that one asset partition hands to the warehouse, written in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from fastfeast_dagster.sources.reading import FileRejection, SourceFile

FILE_COLUMN = "_source_file"
PARTITION_COLUMN = "_partition_key"


@dataclass(frozen=True)
class FileOutcome:
    """One source file of the batch and what validation made of it."""

    file: SourceFile
    folder_kind: str  # master, batch or stream
    partition_key: str
    rows_read: int
    rejection: FileRejection | None = None
    duplicates: int = 0


@dataclass
class LoadBatch:
    """The validated, masked content of one or more partitions of one source.

    `clean` holds typed contract + derived columns with `_source_file`, `_source_row` and
    `_partition_key`; `rejects` one line per (row, failed rule); `raw` the masked source text of
    every row (what quarantine stores, for validation rejects and for orphans found at load).
    """

    source: str
    partition_keys: list[str]
    files: list[FileOutcome]
    clean: pd.DataFrame
    rejects: pd.DataFrame
    raw: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # read, validate, mask

    @property
    def rows_read(self) -> int:
        return sum(outcome.rows_read for outcome in self.files)
