"""Importing the definitions, as every code server and run worker does, warns about nothing.

Dagster marks superseded APIs with `SupersessionWarning` (a `FutureWarning`) and deprecated ones
with `DeprecationWarning`; `python -W error::...` turns them into errors, so the import fails if
the code uses one. The beta and preview notices of the APIs the project pins are silenced where
the code is loaded (`notices.py`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastfeast_dagster.contract import PROJECT_ROOT
from fastfeast_dagster_tests.commands import fresh_environment

IMPORT = "import fastfeast_dagster.definitions"


def _python(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=fresh_environment(state),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_no_superseded_or_deprecated_dagster_api_is_used(tmp_path: Path) -> None:
    result = _python(
        tmp_path, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning", "-c", IMPORT
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_nothing_else_warns_at_import_either(tmp_path: Path) -> None:
    result = _python(tmp_path, "-W", "error", "-c", IMPORT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""


def test_without_the_filter_the_pinned_beta_and_preview_apis_would_warn(tmp_path: Path) -> None:
    # The check above can fail: the notices are there, the filter is what removes them.
    unfiltered = (
        "import fastfeast_dagster.notices as n; n.silence_pinned_api_notices = lambda: None; "
    )
    result = _python(tmp_path, "-W", "error", "-c", unfiltered + IMPORT)
    assert result.returncode != 0
    assert "BetaWarning" in result.stderr or "PreviewWarning" in result.stderr
