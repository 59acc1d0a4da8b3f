"""From files on disk to a `LoadBatch`: read → validate → derive → mask, file by file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fastfeast_dagster import pii
from fastfeast_dagster.batch import (
    DRIFT_ROW_COLUMNS,
    FILE_COLUMN,
    PARTITION_COLUMN,
    QUARANTINE_ROW_COLUMNS,
    REPAIR_ROW_COLUMNS,
    RESCUED_COLUMN,
    ROW_COLUMN,
    FileOutcome,
    LoadBatch,
    PartitionFile,
)
from fastfeast_dagster.contract import TEXT_DTYPE, Contract, SourceSpec
from fastfeast_dagster.sources.names import ColumnMatch
from fastfeast_dagster.sources.reading import EXTRA_KEY, ReadResult, read_source_file
from fastfeast_dagster.stopwatch import Stopwatch
from fastfeast_dagster.validation.damage import damage_quarantine
from fastfeast_dagster.validation.derive import add_derived_columns
from fastfeast_dagster.validation.drift import (
    MISSING,
    UNKNOWN,
    ColumnDrift,
    carried,
    column_drift,
    pii_name_kind,
)
from fastfeast_dagster.validation.engine import validate
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
    drifts: list[pd.DataFrame] = []
    watch = Stopwatch()
    for item in files:
        with watch.stage("read"):
            result = read_source_file(
                item.path,
                spec.file_format(item.folder_kind),
                data_root,
                ColumnMatch.of(contract, source),
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
        drift = None
        if result.rejection is None:
            drift = column_drift(result.readable, contract, source)
        with watch.stage("mask"):
            masked = _mask_columns(frame, spec, contract, key, drift.rescued if drift else [])
        rejection = result.rejection or (drift.rejection if drift else None)
        outcome = FileOutcome(
            result.file, item.folder_kind, item.partition_key, len(frame), rejection
        )
        outcomes.append(outcome)
        if drift is not None:
            drifts.append(_drift_rows(spec.table, outcome, drift, result, contract))
        if rejection is not None:
            raw = _raw(frame, np.ones(len(frame), dtype=bool), masked, contract, key)
            quarantines.append(quarantine_rows(spec.table, outcome, pd.DataFrame(), raw))
            continue
        if not result.damage.empty:
            damaged = frame[ROW_COLUMN].isin(result.damage[ROW_COLUMN])
            raw = _raw(frame, damaged, masked, contract, key)
            quarantines.append(damage_quarantine(spec.table, outcome, result.damage, raw, key))
        assert drift is not None  # the file was read and not rejected
        readable = result.readable
        if readable.empty:
            continue
        # A missing nullable column loads as NULL (the drift policy let the file through).
        readable = readable.assign(
            **{
                name: pd.Series(pd.NA, index=readable.index, dtype=TEXT_DTYPE)
                for name in drift.missing
            }
        )
        with watch.stage("validate"):
            validated = validate(readable, spec, contract)
            clean = add_derived_columns(validated.clean, spec)
        with watch.stage("mask"):
            _take_tokens(clean, masked, validated.repairs)
            clean[RESCUED_COLUMN] = _rescued(frame, clean, drift.rescued, masked, contract, key)
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
        drift=_concat(drifts, DRIFT_ROW_COLUMNS),
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


def _mask_columns(
    frame: pd.DataFrame, spec: SourceSpec, contract: Contract, key: bytes, rescued: list[str]
) -> dict[str, pd.Series]:
    """Masked text of every PII column present, invalid values included (quarantine stores them).

    A column the contract does not know is masked as the PII its name suggests
    (`drift.pii_names`: `backup_email` as an email). Otherwise a rescued one is judged value by
    value, as every column that is not PII is (`_raw`), so that it can be adopted as it came;
    any other (a rejected file's, ` email` where names are not trimmed, a headerless file's
    `column_<n>`) may hold anything and is masked whole.
    """
    masked = {
        column: pii.mask(frame[column], kind, key)
        for column, kind in ((name, spec.columns[name].pii) for name in spec.pii_columns)
        if column in frame.columns and kind is not None
    }
    unknown = {
        column: pii_name_kind(column, contract.drift.pii_names)
        for column in frame.columns
        if column not in spec.columns and column != ROW_COLUMN
    }
    return masked | {
        column: pii.mask(frame[column], kind or "text", key)
        for column, kind in unknown.items()
        if kind is not None or column not in rescued
    }


def _rescued(
    frame: pd.DataFrame,
    clean: pd.DataFrame,
    unknown: list[str],
    masked: dict[str, pd.Series],
    contract: Contract,
    key: bytes,
) -> pd.Series:
    """Per clean row, its values of the unknown columns as a JSON object (None when it has none),
    masked as its raw data would be in quarantine."""
    if not unknown:
        return pd.Series(None, index=clean.index, dtype=object)
    loaded = frame[ROW_COLUMN].isin(clean[ROW_COLUMN])
    own = {column: masked[column] for column in unknown if column in masked}
    raw = _raw(frame[[ROW_COLUMN, *unknown]], loaded.to_numpy(), own, contract, key)
    kept = raw[unknown].astype(object)
    kept = kept.where(pd.DataFrame({c: carried(raw[c], contract) for c in unknown}), None)
    # One JSON object per row, serialised by pandas (a loop of json.dumps took 4 s a million
    # rows); a value the row did not carry comes out as `null`, and its key is dropped.
    text = kept.to_json(orient="records", lines=True, force_ascii=False).splitlines()
    objects = pd.Series(text, index=raw[ROW_COLUMN].to_numpy(), dtype=object)
    objects = objects.str.replace(_absent_keys(unknown), "", regex=True)
    objects = objects.where(objects != "{}", None)
    return clean[ROW_COLUMN].map(objects).astype(object)


def _absent_keys(names: list[str]) -> re.Pattern[str]:
    """`"name":null` members of a one-line JSON object, with the comma that joins them. A quote
    inside a JSON string is escaped, so these can only be members, never part of a value."""
    key = "|".join(map(re.escape, names))
    return re.compile(f'(?<=\\{{)(?:"(?:{key})":null,?)+|(?:,"(?:{key})":null)+')


def _drift_rows(
    table: str, outcome: FileOutcome, drift: ColumnDrift, result: ReadResult, contract: Contract
) -> pd.DataFrame:
    """One drift-log row per drifted column of the file: the rows that carry an unknown column's
    values (also those it cost, a JSON key the policy rejects), or every row for a missing one."""
    readable = result.readable
    assert readable is not None
    path = outcome.file.relative_path
    found = [
        (name, UNKNOWN, int(carried(readable[name], contract).sum())) for name in drift.unknown
    ]
    refused = result.damage.loc[result.damage["rule"] == EXTRA_KEY, "column"].value_counts()
    found += [(str(name), UNKNOWN, int(rows)) for name, rows in refused.items()]
    found += [(name, MISSING, outcome.rows_read) for name in drift.missing]
    return pd.DataFrame(
        [
            (path.rsplit("/", 1)[-1], path, table, name, kind, rows, outcome.partition_key)
            for name, kind, rows in found
        ],
        columns=DRIFT_ROW_COLUMNS,
    )


def _tag(frame: pd.DataFrame, file_name: str, partition_key: str) -> pd.DataFrame:
    frame.insert(0, FILE_COLUMN, file_name)
    frame.insert(1, PARTITION_COLUMN, partition_key)
    return frame
