"""Columns derived from validated source columns (date/time keys, minutes between timestamps)."""

from __future__ import annotations

import pandas as pd

from fastfeast_dagster.contract import SourceSpec


def add_derived_columns(clean: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """The contract's `derived` columns, computed from the typed clean frame."""
    for name, derived in spec.derived.items():
        start = clean[derived.source]
        if derived.kind == "date_key":
            value = start.dt.year * 10000 + start.dt.month * 100 + start.dt.day
        elif derived.kind == "time_key":
            value = start.dt.hour * 100 + start.dt.minute
        else:
            assert derived.until is not None  # the contract checks this
            value = ((clean[derived.until] - start).dt.total_seconds() / 60).round(2)
        clean[name] = value.astype("Int64" if derived.kind != "minutes_between" else "Float64")
    return clean
