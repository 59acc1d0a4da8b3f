"""Quarantine rows for the rows the reader could not take as they are (`sources/reading.py`)."""

from __future__ import annotations

import pandas as pd

from fastfeast_dagster import pii
from fastfeast_dagster.batch import ROW_COLUMN, FileOutcome
from fastfeast_dagster.sources.reading import MISALIGNED
from fastfeast_dagster.validation.quarantine import quarantine_rows


def damage_quarantine(
    table: str, outcome: FileOutcome, damage: pd.DataFrame, raw: pd.DataFrame, key: bytes
) -> pd.DataFrame:
    """One quarantine row per damaged row; `raw`: their source text, masked as audit rows are.

    A row whose fields do not line up with its header may carry any column's value under any
    column's name, so every one of its values is masked.
    """
    misaligned = damage.loc[damage["rule"] == MISALIGNED, ROW_COLUMN]
    shifted = raw[ROW_COLUMN].isin(misaligned).to_numpy()
    if shifted.any():
        raw = raw.copy()
        for column in raw.columns.drop(ROW_COLUMN):
            raw[column] = raw[column].where(~shifted, pii.mask(raw[column], "text", key))
    return quarantine_rows(table, outcome, damage, raw)
