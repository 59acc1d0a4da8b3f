"""From files on disk to a `LoadBatch`: read → validate → derive → mask, file by file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fastfeast_dagster import pii
from fastfeast_dagster.batch import (
    FILE_COLUMN,
    PARTITION_COLUMN,
    QUARANTINE_ROW_COLUMNS,
    REPAIR_ROW_COLUMNS,
    ROW_COLUMN,
    FileOutcome,
    LoadBatch,
    PartitionFile,
)
from fastfeast_dagster.contract import Contract, SourceSpec
from fastfeast_dagster.sources.names import ColumnMatch
from fastfeast_dagster.sources.reading import read_source_file
from fastfeast_dagster.stopwatch import Stopwatch
from fastfeast_dagster.validation.damage import damage_quarantine
from fastfeast_dagster.validation.derive import add_derived_columns
from fastfeast_dagster.validation.engine import check_columns, validate
from fastfeast_dagster.validation.quarantine import quarantine_rows
from fastfeast_dagster.validation.repairs import repair_rows


def prepare_batch(
    source: str,
    files: list[PartitionFile],
    contract: Contract,
    data_root: Path,
    key: bytes,
) -> LoadBatch:
    spec = contract.sources[source]
    outcomes: list[FileOutcome] = []
    cleans: list[pd.DataFrame] = []
    quarantines: list[pd.DataFrame] = []
    repairs: list[pd.DataFrame] = []
    watch = Stopwatch()
    for item in files:
        with watch.stage("read"):
            result = read_source_file(
                item.path,
                spec.file_format(item.folder_kind),
                data_root,
                ColumnMatch.of(contract, spec),
            )
        name = result.file.relative_path
        if result.frame is None:
            outcome = FileOutcome(
                result.file, item.folder_kind, item.partition_key, 0, result.rejection
            )
            outcomes.append(outcome)
            quarantines.append(quarantine_rows(spec.table, outcome, pd.DataFrame(), None))
            continue
        frame = result.frame
        with watch.stage("mask"):
            masked = _mask_columns(frame, spec, key)
        rejection = result.rejection or check_columns(result.readable, spec)
        outcome = FileOutcome(
            result.file, item.folder_kind, item.partition_key, len(frame), rejection
        )
        outcomes.append(outcome)
        if rejection is not None:
            raw = _raw(frame, np.ones(len(frame), dtype=bool), masked, contract, key)
            quarantines.append(quarantine_rows(spec.table, outcome, pd.DataFrame(), raw))
            continue
        if not result.damage.empty:
            damaged = frame[ROW_COLUMN].isin(result.damage[ROW_COLUMN])
            raw = _raw(frame, damaged, masked, contract, key)
            quarantines.append(damage_quarantine(spec.table, outcome, result.damage, raw, key))
        readable = result.readable
        if readable.empty:
            continue
        with watch.stage("validate"):
            validated = validate(readable, spec, contract)
            clean = add_derived_columns(validated.clean, spec)
        with watch.stage("mask"):
            _take_tokens(clean, masked, validated.repairs)
        cleans.append(_tag(clean, name, item.partition_key))
        with watch.stage("quarantine"):
            rows = frame[ROW_COLUMN]
            if not validated.rejects.empty:
                raw = _raw(frame, rows.isin(validated.rejects[ROW_COLUMN]), masked, contract, key)
                quarantines.append(quarantine_rows(spec.table, outcome, validated.rejects, raw))
            if not validated.repairs.empty:
                raw = _raw(frame, rows.isin(validated.repairs[ROW_COLUMN]), masked, contract, key)
                repairs.append(repair_rows(spec.table, outcome, validated.repairs, raw))
    return LoadBatch(
        source=source,
        partition_keys=sorted({item.partition_key for item in files}),
        files=outcomes,
        clean=pd.concat(cleans, ignore_index=True) if cleans else _empty_clean(contract, source),
        quarantine=_concat(quarantines, QUARANTINE_ROW_COLUMNS),
        repairs=_concat(repairs, REPAIR_ROW_COLUMNS),
        stage_seconds=watch.seconds,
    )


def _take_tokens(clean: pd.DataFrame, masked: dict[str, pd.Series], repairs: pd.DataFrame) -> None:
    """Clean rows take the tokens already computed for the raw text (same canonical value); a
    repaired value keeps what the repair made of it."""
    positions = clean[ROW_COLUMN].to_numpy() - 1
    for column, tokens in masked.items():
        if column not in clean.columns:
            continue
        repaired = repairs.loc[repairs["column"] == column, ROW_COLUMN]
        keep = clean[column].notna() & ~clean[ROW_COLUMN].isin(repaired)
        # Taken in Arrow: a round trip through Python strings cost ~0.5 s a column.
        token = pc.take(pa.array(tokens.array), positions)
        current = pa.array(clean[column].array).cast(token.type)
        token = pc.if_else(pa.array(keep.to_numpy()), token, current)
        clean[column] = pd.Series(pd.arrays.ArrowStringArray(token), index=clean.index)


def _raw(
    frame: pd.DataFrame,
    rows: pd.Series | np.ndarray,
    masked: dict[str, pd.Series],
    contract: Contract,
    key: bytes,
) -> pd.DataFrame:
    """The source text of `rows` as audit rows keep it: PII masked, and any value that looks like
    PII masked too, whatever column it arrived in."""
    picked = frame[rows]
    others = {
        column: pii.mask_lookalikes(picked[column], contract, key)
        for column in picked.columns
        if column not in masked and column != ROW_COLUMN
    }
    return picked.assign(**others, **{column: v[rows] for column, v in masked.items()})


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    present = [frame for frame in frames if not frame.empty]
    return pd.concat(present, ignore_index=True) if present else pd.DataFrame(columns=columns)


def _empty_clean(contract: Contract, source: str) -> pd.DataFrame:
    """No file yielded rows: an empty frame that still has the table's columns and types."""
    columns = contract.table_columns(source)
    frame = pd.DataFrame({column.name: pd.Series(dtype=column.type.dtype) for column in columns})
    frame.insert(0, ROW_COLUMN, pd.Series(dtype="int64"))
    return _tag(frame, "", "")


def _mask_columns(frame: pd.DataFrame, spec: SourceSpec, key: bytes) -> dict[str, pd.Series]:
    """Masked text of every PII column present, invalid values included (quarantine stores them).

    A column the contract does not know (` email`, `Email`) may hold anything: it is masked too.
    """
    masked = {
        column: pii.mask(frame[column], kind, key)
        for column, kind in ((name, spec.columns[name].pii) for name in spec.pii_columns)
        if column in frame.columns and kind is not None
    }
    unknown = [c for c in frame.columns if c not in spec.columns and c != ROW_COLUMN]
    return masked | {column: pii.mask(frame[column], "text", key) for column in unknown}


def _tag(frame: pd.DataFrame, file_name: str, partition_key: str) -> pd.DataFrame:
    frame.insert(0, FILE_COLUMN, file_name)
    frame.insert(1, PARTITION_COLUMN, partition_key)
    return frame
