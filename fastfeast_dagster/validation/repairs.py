"""Repair records of a file's verdict: one per value that was bad and was repaired, the row loading.

Each record keeps the value as it arrived (PII and PII look-alikes masked) and what it became
(NULL or the contract's placeholder), with the rule it failed. Pure: the load writes them as
they are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fastfeast_dagster.batch import REPAIR_ROW_COLUMNS, ROW_COLUMN, FileOutcome


def repair_rows(
    table: str, outcome: FileOutcome, repairs: pd.DataFrame, raw: pd.DataFrame
) -> pd.DataFrame:
    """`repairs`: validation's repair lines; `raw`: the masked text of the repaired rows."""
    if repairs.empty:
        return pd.DataFrame(columns=REPAIR_ROW_COLUMNS)
    values = raw.set_index(ROW_COLUMN)
    rows = repairs[ROW_COLUMN].to_numpy(dtype=np.int64)
    raw_values = [
        values.at[row, column] for row, column in zip(rows.tolist(), repairs["column"], strict=True)
    ]
    path = outcome.file.relative_path
    frame = pd.DataFrame(
        {
            "source_file": path.rsplit("/", 1)[-1],
            "source_path": path,
            "source_table": table,
            "source_row": rows,
            "repair_stage": repairs["stage"].to_numpy(),
            "repair_rule": repairs["rule"].to_numpy(),
            "repair_column": repairs["column"].to_numpy(),
            "repair_reason": repairs["reason"].to_numpy(),
            "raw_value": [None if pd.isna(value) else value for value in raw_values],
            "repaired_to": repairs["repaired_to"].to_numpy(),
            "partition_key": outcome.partition_key,
        }
    )
    return frame[REPAIR_ROW_COLUMNS]
