"""The one table of column types: what a contract type is in each place a value lives.

A contract column is declared once as `int`, `float`, `text`, `bool`, `date` or `timestamp`; a
derived column by its kind. Each stage needs the type in its own terms: the warehouse column
(DDL), the dtype of the typed clean frame (validation), what the read-back parses (Arrow), and
the dagster-pandas column check on the asset's output. They are all here, side by side, so a
type can only change in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

# Every source value starts as text of this dtype (reading) and text columns keep it.
TEXT_DTYPE = pd.StringDtype("pyarrow")


@dataclass(frozen=True)
class ColumnType:
    sql: str  # the warehouse column type
    dtype: str | pd.StringDtype  # the typed clean frame's pandas dtype
    arrow: pa.DataType  # what the read-back parses COPY's text into
    # The dagster-pandas `PandasColumn.<kind>_column` that checks it on the asset output.
    pandas_check: str | None = None


# Money and rates are `numeric` (exact), read back as float for the checks.
TYPES: dict[str, ColumnType] = {
    "int": ColumnType("integer", "Int64", pa.int64(), "integer"),
    "float": ColumnType("numeric", "Float64", pa.float64(), "float"),
    "text": ColumnType("text", TEXT_DTYPE, pa.string(), "string"),
    "bool": ColumnType("boolean", "boolean", pa.bool_(), "boolean"),
    "date": ColumnType("date", "datetime64[ns]", pa.date32(), "datetime"),
    "timestamp": ColumnType("timestamp", "datetime64[ns]", pa.timestamp("us"), "datetime"),
}
# Derived columns, by their kind: calendar keys, and minutes between two timestamps.
DERIVED_TYPES: dict[str, ColumnType] = {
    "date_key": TYPES["int"],
    "time_key": TYPES["int"],
    "minutes_between": ColumnType("numeric(12,2)", "Float64", pa.float64(), "float"),
}
# Load and audit times carry their zone; source timestamps are wall clock in the contract's zone.
LOADED_AT_TYPE = ColumnType("timestamptz", "datetime64[ns, UTC]", pa.timestamp("us", "UTC"))


@dataclass(frozen=True)
class TableColumn:
    """A column of a warehouse table as every stage sees it."""

    name: str
    type: ColumnType
    nullable: bool = True
    default: str | None = None  # SQL expression
