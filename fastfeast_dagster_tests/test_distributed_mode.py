"""FASTFEAST_DEPLOYMENT=distributed: nothing falls back to this machine; a gap is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastfeast_dagster import pii
from fastfeast_dagster.contract import Contract, data_root
from fastfeast_dagster.deployment import DeploymentError

pytestmark = pytest.mark.distributed

BIN = Path(sys.executable).parent


def clean_environment(tmp_path: Path) -> dict[str, str]:
    """A distributed process's environment with nothing set but what this test names."""
    (tmp_path / "home").mkdir(exist_ok=True)
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "FASTFEAST_DEPLOYMENT": "distributed",
        "FASTFEAST_STATE_DIR": str(tmp_path / "state"),
    }


def test_without_a_warehouse_url_the_command_says_so_in_one_line_and_starts_nothing(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [str(BIN / "fastfeast"), "db", "start"],
        cwd=tmp_path,
        env=clean_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "fastfeast: FASTFEAST_DATABASE_URL is not set; with FASTFEAST_DEPLOYMENT=distributed it"
        " is required (nothing falls back to the embedded PostgreSQL)"
    ]
    assert result.stdout == ""
    # No embedded server was initialised, neither in the state dir nor anywhere under HOME.
    assert not (tmp_path / "state").exists()
    assert not list((tmp_path / "home").rglob("*"))


def test_without_a_pii_key_no_key_file_is_made(
    tmp_path: Path, contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in clean_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FASTFEAST_DATABASE_URL", "postgresql://warehouse.internal/ff")
    monkeypatch.delenv(contract.pii.key_env, raising=False)
    with pytest.raises(DeploymentError) as raised:
        pii.load_key(contract)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{contract.pii.key_env} is not set")
    assert not (tmp_path / "state").exists()


def test_without_a_data_root_nothing_falls_back_to_the_installed_code(
    tmp_path: Path, contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in clean_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FASTFEAST_DATA_DIR", raising=False)
    with pytest.raises(DeploymentError, match=r"^FASTFEAST_DATA_DIR is not set"):
        data_root(contract)


def test_the_suites_may_come_from_a_configured_folder(tmp_path: Path) -> None:
    """A deployment may keep its GE suites outside the package (FASTFEAST_EXPECTATIONS_DIR)."""
    suites = tmp_path / "suites"
    probe = "from fastfeast_dagster.contract import EXPECTATIONS_DIR; print(EXPECTATIONS_DIR)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=clean_environment(tmp_path) | {"FASTFEAST_EXPECTATIONS_DIR": str(suites)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == str(suites)
