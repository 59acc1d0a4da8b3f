"""Quarantine rows for the rows the reader could not take as they are (`sources/reading.py`)."""

from __future__ import annotations

import pandas as pd

from fastfeast_dagster import pii
from fastfeast_dagster.batch import ROW_COLUMN, FileOutcome
from fastfeast_dagster.sources.reading import MISALIGNED, ReadResult
from fastfeast_dagster.validation.quarantine import quarantine_rows


def damage_quarantine(
    table: str, outcome: FileOutcome, result: ReadResult, masked: dict[str, pd.Series], key: bytes
) -> pd.DataFrame:
    """One quarantine row per damaged row, its values masked as the verdict's rows are.

    A row whose fields do not line up with its header may carry an e-mail address or a phone
    number under any column's name, so every one of its values is masked.
    """
    assert result.frame is not None
    frame = result.frame
    damaged = frame[frame[ROW_COLUMN].isin(result.damage[ROW_COLUMN])]
    raw = damaged.assign(**{column: values.loc[damaged.index] for column, values in masked.items()})
    misaligned = result.damage.loc[result.damage["rule"] == MISALIGNED, ROW_COLUMN]
    shifted = raw[ROW_COLUMN].isin(misaligned).to_numpy()
    if shifted.any():
        for column in raw.columns.drop(ROW_COLUMN):
            raw[column] = raw[column].where(~shifted, pii.mask(raw[column], "text", key))
    return quarantine_rows(table, outcome, result.damage, raw)
