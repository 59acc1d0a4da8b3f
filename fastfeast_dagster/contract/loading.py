"""Loading the contract: `config/pipeline.yaml` (or `FASTFEAST_CONFIG`) into a checked `Contract`.

Loading fails with one `ContractError` that lists every problem as `file: key.path: what is wrong`,
so a broken config is fixed in one pass instead of one traceback at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from fastfeast_dagster.contract.checks import check_contract, check_env_references
from fastfeast_dagster.contract.model import Contract
from fastfeast_dagster.deployment import refuse_fallback
from fastfeast_dagster.sources.storage import DataRoot, data_root_from

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# The source tree's config/, or the copy inside an installed package (pyproject.toml ships it).
_SOURCE_CONFIG = PROJECT_ROOT / "config"
CONFIG_DIR = _SOURCE_CONFIG if _SOURCE_CONFIG.is_dir() else Path(__file__).parent.parent / "config"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "pipeline.yaml"
STATE_DIR_ENV = "FASTFEAST_STATE_DIR"
# A deployment may keep its suites elsewhere, as it may its contract (FASTFEAST_CONFIG).
EXPECTATIONS_DIR = Path(os.environ.get("FASTFEAST_EXPECTATIONS_DIR") or CONFIG_DIR / "expectations")


class ContractError(ValueError):
    """The contract is malformed; `problems` holds one `key.path: message` line per problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {path}: {problem}" for problem in problems)
        super().__init__(f"invalid pipeline contract {path} ({len(problems)} problem(s)):\n{lines}")


def contract_path(path: Path | str | None = None) -> Path:
    """The contract file: `path`, else `FASTFEAST_CONFIG`, else `config/pipeline.yaml`."""
    return Path(path or os.environ.get("FASTFEAST_CONFIG") or DEFAULT_CONFIG_PATH)


def load_contract(path: Path | str | None = None) -> Contract:
    """Load and check the contract at `contract_path(path)`."""
    config_path = contract_path(path)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ContractError(config_path, [f"cannot read file: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise ContractError(config_path, [f"not valid YAML: {error}"]) from None
    if not isinstance(raw, dict):
        raise ContractError(config_path, ["the top level must be a mapping of sections"])

    problems = list(check_env_references(raw))
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as error:
        problems.extend(_describe_validation_error(error))
        raise ContractError(config_path, problems) from None
    problems.extend(check_contract(contract))
    if problems:
        raise ContractError(config_path, problems)
    return contract


def _describe_validation_error(error: ValidationError) -> Iterator[str]:
    said: set[str] = set()
    for item in error.errors():
        # Discriminated unions add the tag to the location; it is noise in a key path.
        loc = [str(part) for part in item["loc"] if part not in ("not_before", "sum_equals")]
        if "on_invalid" in loc:
            # Pydantic explains each member of the policy union; one line says it all.
            loc = loc[: loc.index("on_invalid") + 1]
            value = _value_at(error, loc)
            message = (
                f"unknown policy {value!r}: use reject_row, set_null or {{placeholder: <text>}}"
            )
        elif item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("union_tag_invalid",):
            message = f"{item['msg']} (got {item['input']!r})"
        else:
            message = item["msg"]
        line = f"{'.'.join(loc) or '(top level)'}: {message}"
        if line not in said:
            said.add(line)
            yield line


def _value_at(error: ValidationError, loc: list[str]) -> object:
    """The input at `loc`, as the first error under that key path saw it."""
    for item in error.errors():
        parts = [str(part) for part in item["loc"]]
        if parts[: len(loc)] == loc and len(parts) == len(loc) + 1:
            return item["input"]
    return None


def data_root(contract: Contract) -> DataRoot:
    """Root of `master/`, `input/batch/` and `input/stream/`; `FASTFEAST_DATA_DIR` overrides.

    `s3://bucket/prefix` puts it in object storage (`sources/storage.py`).
    """
    value = os.environ.get("FASTFEAST_DATA_DIR")
    if not value:
        refuse_fallback("FASTFEAST_DATA_DIR", "a data root relative to the installed code")
        value = contract.paths.data_dir
    return data_root_from(value) or _project_path(value)


def state_root(contract: Contract) -> Path:
    """Embedded Postgres data and the PII key; `FASTFEAST_STATE_DIR` overrides."""
    return _project_path(os.environ.get(STATE_DIR_ENV) or contract.paths.state_dir)


def _project_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


@cache
def cached_contract(path: Path) -> Contract:
    """The contract at `path`, loaded once per process."""
    return load_contract(path)


def default_contract() -> Contract:
    """The contract this process runs with (`FASTFEAST_CONFIG` picks the file)."""
    return cached_contract(contract_path())
