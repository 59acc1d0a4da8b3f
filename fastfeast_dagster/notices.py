"""Dagster's notices about the beta and preview APIs this project uses on purpose, silenced.

Dagster warns on every use of an API it marks beta or preview: partitioned asset checks
(`AssetCheckSpec(partitions_def=...)`), `backfill_policy`, dagster-pandas' `PandasColumn`, the
yaml-defined log handler. Dagster is pinned exactly (pyproject.toml), so the notice tells an
operator nothing to act on, and every process that loads the code printed it again: each code
server and each run worker, dozens of lines per run. `definitions.py` calls this before it builds
anything, which covers every process that loads the code; superseded and deprecated APIs still
warn (`test_warnings.py` turns those into errors at import).
"""

import warnings

import dagster as dg


def silence_pinned_api_notices() -> None:
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
