"""Quarantine rows of a file's verdict: one row per rejected source row, all its reasons, its raw
values (PII already masked). Pure: the load writes them as they are.

A rejected file quarantines each row it could parse, or one row for the file when it parsed none.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fastfeast_dagster.batch import QUARANTINE_ROW_COLUMNS, ROW_COLUMN, FileOutcome

_REASON_PARTS = ["stage", "rule", "column", "reason"]


def quarantine_rows(
    table: str, outcome: FileOutcome, rejects: pd.DataFrame, raw: pd.DataFrame | None
) -> pd.DataFrame:
    """The quarantine rows of one file; `raw`: its masked text with `_source_row`, if it parsed."""
    lines = _file_lines(outcome, raw) if outcome.rejection is not None else rejects
    if lines.empty:
        return pd.DataFrame(columns=QUARANTINE_ROW_COLUMNS)
    lines = lines.sort_values(ROW_COLUMN, kind="stable", na_position="first")
    lines = lines.reset_index(drop=True)
    row_numbers = lines[ROW_COLUMN].astype("Int64")
    group = row_numbers.fillna(0).to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(group) != 0])
    ends = np.r_[starts[1:], len(lines)]
    parts = lines[_REASON_PARTS].astype(object).where(lines[_REASON_PARTS].notna(), None)
    reason_json = [json.dumps(reason, ensure_ascii=False) for reason in parts.to_dict("records")]
    first = {name: _first_present(parts[name], starts) for name in _REASON_PARTS}
    rows = row_numbers.iloc[starts].reset_index(drop=True)
    path = outcome.file.relative_path
    frame = pd.DataFrame(
        {
            "source_file": path.rsplit("/", 1)[-1],
            "source_path": path,
            "source_table": table,
            "source_row": rows,
            "rejection_stage": first["stage"],
            "rejection_rule": first["rule"],
            "rejection_column": first["column"],
            "rejection_reason": first["reason"],
            "reasons": [
                "[" + ",".join(reason_json[start:end]) + "]"
                for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
            ],
            "raw_data": _raw_json(rows, raw, first["reason"]),
            "partition_key": outcome.partition_key,
        }
    )
    return frame[QUARANTINE_ROW_COLUMNS]


def _file_lines(outcome: FileOutcome, raw: pd.DataFrame | None) -> pd.DataFrame:
    """A rejected file: one line per parsed row, or a single line without a row."""
    assert outcome.rejection is not None
    rows = raw[ROW_COLUMN].tolist() if raw is not None and not raw.empty else [None]
    return pd.DataFrame(
        {
            ROW_COLUMN: pd.array(rows, dtype="Int64"),
            "stage": "file",
            "rule": outcome.rejection.rule,
            "column": None,
            "reason": outcome.rejection.message,
        }
    )


def _raw_json(rows: pd.Series, raw: pd.DataFrame | None, reasons: np.ndarray) -> list[str]:
    """Each row's masked source values as a JSON object; a row-less line names the file error."""
    found = pd.Series("{}", index=rows.index, dtype=object)
    if raw is not None and not raw.empty:
        values = raw.set_index(ROW_COLUMN)
        present = rows.notna() & rows.isin(values.index)
        if present.any():
            picked = values.loc[rows[present].astype(np.int64).tolist()]
            found[present] = picked.to_json(orient="records", lines=True).splitlines()
    missing = rows.isna().to_numpy()
    found[missing] = [json.dumps({"file_error": reason}) for reason in reasons[missing]]
    return found.tolist()


def _first_present(values: pd.Series, starts: np.ndarray) -> np.ndarray:
    """Per group (rows `starts[i]` up to the next start), its first non-missing value, as
    groupby's "first" gives it; None where a group has none."""
    count = len(values)
    positions = np.where(values.notna().to_numpy(), np.arange(count), count)
    first = np.minimum.reduceat(positions, starts)
    picked = values.to_numpy(dtype=object)[np.minimum(first, count - 1)]
    picked[first == count] = None
    return picked
