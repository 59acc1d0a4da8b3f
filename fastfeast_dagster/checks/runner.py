"""Validate the rows of one partition, read back from the warehouse, against a table's suite.

Great Expectations is imported on first use (4-5 s), never at module import, so the Dagster code
server and the sensors do not pay for it. One ephemeral context is built per process and reused.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastfeast_dagster.checks.suites import import_gx, load_suite

MASKED = "***masked***"
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class SuiteOutcome:
    success: bool  # no ERROR-severity expectation failed
    evaluated: int
    failed: int  # failed expectations of either severity
    failures: list[dict[str, Any]] = field(default_factory=list)
    ge_version: str = ""
    warnings: int = 0  # failed WARN-severity expectations
    skipped: int = 0  # `skip_when_empty` expectations not evaluated on an empty partition


@cache
def _batch_definition() -> Any:
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # Otherwise every validation draws tqdm bars into the Dagster run log.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return (
        context.data_sources.add_pandas(name="fastfeast")
        .add_dataframe_asset(name="partition")
        .add_batch_definition_whole_dataframe("whole_frame")
    )


def run_suite(
    frame: pd.DataFrame,
    suite_path: Path,
    *,
    pii_columns: Collection[str] = (),
    allow_empty: bool = True,
) -> SuiteOutcome:
    """Validate `frame` against the suite in `suite_path` (result format SUMMARY).

    With `allow_empty` (the default) an empty frame is a legitimately empty partition and the
    expectations marked `skip_when_empty` are not evaluated; pass False when the caller knows rows
    were loaded, so that an empty read-back fails the row-count expectation.
    """
    suite = load_suite(suite_path)
    skipped = 0
    if frame.empty and allow_empty:
        kept = [e for e in suite.expectations if not e.meta.get("skip_when_empty")]
        skipped = len(suite.expectations) - len(kept)
        suite.expectations = kept
    result = (
        _batch_definition()
        .get_batch(batch_parameters={"dataframe": frame})
        .validate(suite, result_format="SUMMARY")
    )
    failures = [_failure(item, set(pii_columns)) for item in result.results if not _succeeded(item)]
    errors = sum(failure["severity"] == "error" for failure in failures)
    return SuiteOutcome(
        success=errors == 0,
        evaluated=len(result.results),
        failed=len(failures),
        failures=failures,
        ge_version=import_gx().__version__,
        warnings=len(failures) - errors,
        skipped=skipped,
    )


def _exception_message(item: Any) -> str | None:
    # `exception_info` is either one {"raised_exception", "exception_message", …} dict or a dict
    # of them keyed by metric.
    info = item.exception_info or {}
    candidates = [info] if "raised_exception" in info else list(info.values())
    for candidate in candidates:
        if isinstance(candidate, dict) and candidate.get("raised_exception"):
            return str(candidate.get("exception_message"))
    return None


def _succeeded(item: Any) -> bool:
    return bool(item.success) and _exception_message(item) is None


def _failure(item: Any, pii_columns: set[str]) -> dict[str, Any]:
    config = item.expectation_config
    kwargs = config.kwargs
    columns = [kwargs[key] for key in ("column", "column_A", "column_B") if kwargs.get(key)]
    details = item.result or {}
    if "partial_unexpected_list" in details:
        examples = details["partial_unexpected_list"][:MAX_EXAMPLES]
    elif "details" in details:  # e.g. the column set: {"mismatched": {"missing": [...]}}
        examples = [details["details"]]
    elif "observed_value" in details:
        examples = [details["observed_value"]]
    else:
        examples = []
    if pii_columns.intersection(columns):
        examples = [MASKED for _ in examples]
    return {
        "type": config.type,
        "column": ", ".join(columns) or None,
        "severity": config.meta.get("severity", "error"),
        "unexpected_count": details.get("unexpected_count"),
        "examples": [_plain(value) for value in examples],
        "exception": _exception_message(item),
    }


def _plain(value: Any) -> Any:
    """A JSON-friendly example value (Dagster metadata), whatever dtype the frame had."""
    if isinstance(value, dict):
        return {str(key): _plain(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(inner) for inner in value]
    if isinstance(value, np.datetime64):  # `.item()` would give integer nanoseconds
        value = pd.Timestamp(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dt.date | dt.time):  # includes datetime and pd.Timestamp
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)
