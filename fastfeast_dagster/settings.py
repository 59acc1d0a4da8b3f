"""Typed model of `config/pipeline.yaml`, the pipeline contract.

Loading fails with one `ContractError` that lists every problem as `file: key.path: what is wrong`,
so a broken config is fixed in one pass instead of one traceback at a time. Cross-references that a
schema alone cannot express (a primary key among the columns, a foreign key to a known source of
the same type, a format rule that exists, …) are checked after parsing, with the same messages.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "pipeline.yaml"
EXPECTATIONS_DIR = PROJECT_ROOT / "config" / "expectations"

ColumnType = Literal["int", "float", "text", "bool", "date", "timestamp"]
SourceKind = Literal["dimension", "fact"]
FolderKind = Literal["master", "batch", "stream"]
FileFormat = Literal["csv", "json"]

# `${VAR}` or `${VAR:-default}`, as in a shell: the default applies when VAR is unset.
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# What Dagster accepts as an asset owner.
_OWNER = re.compile(r"^(team:[A-Za-z0-9_-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
_NUMERIC_TYPES = {"int", "float"}


class ContractError(ValueError):
    """The contract is malformed; `problems` holds one `key.path: message` line per problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {path}: {problem}" for problem in problems)
        super().__init__(f"invalid pipeline contract {path} ({len(problems)} problem(s)):\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: ColumnType
    nullable: bool = True
    allowed: list[str] | None = None
    format: str | None = None
    min: float | None = None
    max: float | None = None
    pii: Literal["phone", "email", "text"] | None = None
    description: str | None = None


class ForeignKey(_Strict):
    column: str
    references: str


class DerivedColumn(_Strict):
    kind: Literal["date_key", "time_key", "minutes_between"]
    source: str
    until: str | None = None


class NotBeforeRule(_Strict):
    """`column` must not be earlier than `reference`; skipped when either is null."""

    name: str
    kind: Literal["not_before"]
    column: str
    reference: str


class SumEqualsRule(_Strict):
    """`column` must equal sum(plus) - sum(minus) within `tolerance` (skipped on any null)."""

    name: str
    kind: Literal["sum_equals"]
    column: str
    plus: list[str]
    minus: list[str] = []
    tolerance: float = 0.0


CrossFieldRule = Annotated[NotBeforeRule | SumEqualsRule, Field(discriminator="kind")]


class SourceSpec(_Strict):
    kind: SourceKind
    table: str
    description: str
    files: dict[FolderKind, str]
    primary_key: str
    columns: dict[str, ColumnSpec]
    foreign_keys: list[ForeignKey] = []
    derived: dict[str, DerivedColumn] = {}
    rules: list[CrossFieldRule] = []
    owners: list[str] = []

    def file_format(self, folder: FolderKind) -> FileFormat:
        suffix = Path(self.files[folder]).suffix.lower().lstrip(".")
        return suffix  # type: ignore[return-value]  # checked by _check_source

    @property
    def pii_columns(self) -> list[str]:
        return [name for name, column in self.columns.items() if column.pii is not None]


class Paths(_Strict):
    data_dir: str
    state_dir: str
    master: str
    batch: str
    stream: str


class Partitions(_Strict):
    batch_start_date: dt.date
    stream_start_date: dt.date
    timezone: str = "UTC"


class Sensors(_Strict):
    settle_seconds: float = Field(ge=0)
    minimum_interval_seconds: int = Field(ge=1)
    max_requests_per_tick: int = Field(ge=1)
    freshness_lag_minutes: int = Field(ge=1)


class Orphans(_Strict):
    retry_window_hours: float = Field(gt=0)
    promotion_cron: str
    retry_check_seconds: int = Field(default=60, gt=0)


class Sla(_Strict):
    refresh_minutes: int = Field(ge=1, le=59)


class Marts(_Strict):
    refresh_cron: str


class QuarantineThresholds(_Strict):
    warn_rate: float = Field(ge=0, le=1)
    error_rate: float = Field(ge=0, le=1)


class Calendar(_Strict):
    first_date: dt.date
    last_date: dt.date


class Warehouse(_Strict):
    schema_name: str = Field(alias="schema")


class Pii(_Strict):
    key_env: str


class Smtp(_Strict):
    """The mail relay, as written in the contract: every field may be a `${VAR}` reference."""

    host: str
    port: int | str = 587
    starttls: bool | str = True
    user: str | None = None
    password: str | None = None
    sender: str
    recipients: str


@dataclass(frozen=True)
class SmtpSettings:
    """The mail relay with its `${VAR}` references resolved and typed."""

    host: str
    port: int
    starttls: bool
    user: str | None
    password: str | None
    sender: str
    recipients: tuple[str, ...]


class Alerts(_Strict):
    enabled: bool = False
    # One mail per asset + partition + reason within this window; repeats are counted, not sent.
    rate_limit_minutes: int = Field(default=60, ge=0)
    ui_url: str = "http://127.0.0.1:3000"
    smtp: Smtp


# Fields whose values may be `${VAR}` references: credentials and addresses of the alert mailer.
_SECRET_FIELDS = {("alerts", "smtp", field) for field in Smtp.model_fields}


class Contract(_Strict):
    paths: Paths
    partitions: Partitions
    sensors: Sensors
    orphans: Orphans
    sla: Sla
    marts: Marts
    quarantine: QuarantineThresholds
    calendar: Calendar
    warehouse: Warehouse
    owners: list[str]
    null_tokens: list[str]
    formats: dict[str, str]
    pii: Pii
    alerts: Alerts
    sources: dict[str, SourceSpec]

    @cached_property
    def dimensions(self) -> dict[str, SourceSpec]:
        return {name: spec for name, spec in self.sources.items() if spec.kind == "dimension"}

    @cached_property
    def facts(self) -> dict[str, SourceSpec]:
        return {name: spec for name, spec in self.sources.items() if spec.kind == "fact"}

    def source_for_table(self, table: str) -> tuple[str, SourceSpec]:
        for name, spec in self.sources.items():
            if spec.table == table:
                return name, spec
        raise KeyError(f"no source loads table {table!r}")

    def load_order(self, names: list[str] | None = None) -> list[str]:
        """Sources ordered parents-first along foreign keys (stable: contract order breaks ties)."""
        wanted = list(self.sources) if names is None else names
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in ordered or name in visiting:
                return
            visiting.add(name)
            for fk in self.sources[name].foreign_keys:
                if fk.references in wanted:
                    visit(fk.references)
            visiting.discard(name)
            ordered.append(name)

        for name in wanted:
            visit(name)
        return ordered

    def resolve_secret(self, value: str | None) -> str | None:
        """Expand `${VAR}` references; only called for features that are enabled."""
        if value is None:
            return None
        return _ENV_REFERENCE.sub(_expand_reference, value)

    def smtp_settings(self) -> SmtpSettings:
        """The alert relay from the environment; raises ValueError naming the field at fault."""
        smtp = self.alerts.smtp
        port = self.resolve_secret(str(smtp.port)) or ""
        starttls = (self.resolve_secret(str(smtp.starttls)) or "").strip().lower()
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"alerts.smtp.port: {port!r} is not a TCP port")
        if starttls not in ("true", "false"):
            raise ValueError(f"alerts.smtp.starttls: {starttls!r} is not true or false")
        recipients = tuple(
            address.strip()
            for address in (self.resolve_secret(smtp.recipients) or "").split(",")
            if address.strip()
        )
        if not recipients:
            raise ValueError("alerts.smtp.recipients: no address given")
        return SmtpSettings(
            host=self.resolve_secret(smtp.host) or "",
            port=int(port),
            starttls=starttls == "true",
            user=self.resolve_secret(smtp.user) or None,
            password=self.resolve_secret(smtp.password) or None,
            sender=self.resolve_secret(smtp.sender) or "",
            recipients=recipients,
        )


def load_contract(path: Path | str | None = None) -> Contract:
    """Load and check the contract; `FASTFEAST_CONFIG` overrides the default path."""
    config_path = Path(path or os.environ.get("FASTFEAST_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ContractError(config_path, [f"cannot read file: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise ContractError(config_path, [f"not valid YAML: {error}"]) from None
    if not isinstance(raw, dict):
        raise ContractError(config_path, ["the top level must be a mapping of sections"])

    problems = list(_check_env_references(raw))
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as error:
        problems.extend(_describe_validation_error(error))
        raise ContractError(config_path, problems) from None
    problems.extend(_check_contract(contract))
    if problems:
        raise ContractError(config_path, problems)
    return contract


def _describe_validation_error(error: ValidationError) -> Iterator[str]:
    for item in error.errors():
        # Discriminated unions add the tag to the location; it is noise in a key path.
        loc = [str(part) for part in item["loc"] if part not in ("not_before", "sum_equals")]
        key = ".".join(loc) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("union_tag_invalid",):
            message = f"{message} (got {item['input']!r})"
        yield f"{key}: {message}"


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, str(index)))
    else:
        yield path, node


def _expand_reference(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    return os.environ[name] if default is None else os.environ.get(name, default)


def _check_env_references(raw: dict[str, Any]) -> Iterator[str]:
    alerts_enabled = bool((raw.get("alerts") or {}).get("enabled"))
    for path, value in _walk(raw):
        if not isinstance(value, str):
            continue
        for match in _ENV_REFERENCE.finditer(value):
            key = ".".join(path)
            if path not in _SECRET_FIELDS:
                yield f"{key}: ${{{match.group(1)}}} is allowed only in secret fields (alerts.smtp)"
            elif alerts_enabled and match.group(2) is None and match.group(1) not in os.environ:
                yield f"{key}: variable {match.group(1)} is not set and alerts are enabled"


def _check_contract(contract: Contract) -> Iterator[str]:
    owners = [("owners", owner) for owner in contract.owners] + [
        (f"sources.{name}.owners", owner)
        for name, spec in contract.sources.items()
        for owner in spec.owners
    ]
    for key, owner in owners:
        if not _OWNER.match(owner):
            yield f"{key}: {owner!r} is neither team:<name> nor an e-mail address"
    if contract.alerts.enabled:
        try:
            contract.smtp_settings()
        except KeyError:
            pass  # an unset variable is reported by _check_env_references
        except ValueError as error:
            yield str(error)
    for name, pattern in contract.formats.items():
        try:
            re.compile(pattern)
        except re.error as error:
            yield f"formats.{name}: not a valid regular expression: {error}"
    if contract.calendar.first_date > contract.calendar.last_date:
        yield "calendar: first_date is after last_date"
    if contract.quarantine.warn_rate > contract.quarantine.error_rate:
        yield "quarantine: warn_rate is above error_rate"
    if contract.warehouse.schema_name and not _IDENTIFIER.match(contract.warehouse.schema_name):
        yield f"warehouse.schema: {contract.warehouse.schema_name!r} is not a lower-case identifier"

    tables: dict[str, str] = {}
    files: dict[tuple[str, str], str] = {}
    for name, spec in contract.sources.items():
        yield from _check_source(contract, name, spec)
        if spec.table in tables:
            yield f"sources.{name}.table: {spec.table!r} is also the table of {tables[spec.table]}"
        tables[spec.table] = name
        for folder, file_name in spec.files.items():
            if (folder, file_name) in files:
                other = files[(folder, file_name)]
                yield f"sources.{name}.files.{folder}: {file_name!r} is also a file of {other}"
            files[(folder, file_name)] = name
    yield from _check_fk_cycles(contract)


def _check_source(contract: Contract, name: str, spec: SourceSpec) -> Iterator[str]:
    at = f"sources.{name}"
    for identifier, key in [(name, at), (spec.table, f"{at}.table")]:
        if not _IDENTIFIER.match(identifier):
            yield f"{key}: {identifier!r} is not a lower-case identifier"
    required_folders = {"dimension": {"master", "batch"}, "fact": {"stream"}}[spec.kind]
    for folder in sorted(required_folders - set(spec.files)):
        yield f"{at}.files: a {spec.kind} needs a {folder} file"
    for folder in sorted(set(spec.files) - required_folders):
        yield f"{at}.files.{folder}: a {spec.kind} has no {folder} file"
    for folder, file_name in spec.files.items():
        if Path(file_name).suffix.lower() not in (".csv", ".json"):
            yield f"{at}.files.{folder}: {file_name!r} must end in .csv or .json"
    if not spec.columns:
        yield f"{at}.columns: a source needs at least one column"
    if spec.primary_key not in spec.columns:
        yield f"{at}.primary_key: {spec.primary_key!r} is not among the columns"
    elif spec.columns[spec.primary_key].nullable:
        yield f"{at}.columns.{spec.primary_key}.nullable: the primary key must be nullable: false"

    for column_name, column in spec.columns.items():
        key = f"{at}.columns.{column_name}"
        if not _IDENTIFIER.match(column_name):
            yield f"{key}: {column_name!r} is not a lower-case identifier"
        if column.format is not None and column.format not in contract.formats:
            known = ", ".join(sorted(contract.formats))
            yield f"{key}.format: unknown format {column.format!r} (known: {known})"
        if column.format is not None and column.type != "text":
            yield f"{key}.format: format rules apply to text columns, not {column.type}"
        if column.allowed is not None and column.type != "text":
            yield f"{key}.allowed: allowed values apply to text columns, not {column.type}"
        if (column.min is not None or column.max is not None) and column.type not in _NUMERIC_TYPES:
            yield f"{key}: min/max apply to int and float columns, not {column.type}"
        if column.min is not None and column.max is not None and column.min > column.max:
            yield f"{key}: min {column.min} is above max {column.max}"
        if column.pii is not None and column.type != "text":
            yield f"{key}.pii: only text columns can be masked"

    for index, fk in enumerate(spec.foreign_keys):
        key = f"{at}.foreign_keys.{index}"
        if fk.column not in spec.columns:
            yield f"{key}.column: {fk.column!r} is not a column of {name}"
            continue
        parent = contract.sources.get(fk.references)
        if parent is None:
            yield f"{key}.references: unknown source {fk.references!r}"
            continue
        if spec.kind == "dimension" and parent.kind == "fact":
            yield f"{key}.references: a dimension cannot reference the fact {fk.references!r}"
        parent_type = (
            parent.columns[parent.primary_key].type
            if parent.primary_key in parent.columns
            else None
        )
        if parent_type is not None and parent_type != spec.columns[fk.column].type:
            yield (
                f"{key}: {name}.{fk.column} is {spec.columns[fk.column].type} but "
                f"{fk.references}.{parent.primary_key} is {parent_type}"
            )

    for derived_name, derived in spec.derived.items():
        key = f"{at}.derived.{derived_name}"
        if derived_name in spec.columns:
            yield f"{key}: the name is already a source column"
        for role, column_name in [("source", derived.source), ("until", derived.until)]:
            if column_name is None:
                continue
            if column_name not in spec.columns:
                yield f"{key}.{role}: {column_name!r} is not a column of {name}"
            elif spec.columns[column_name].type != "timestamp":
                yield f"{key}.{role}: {column_name!r} must be a timestamp column"
        if (derived.kind == "minutes_between") != (derived.until is not None):
            yield f"{key}.until: required for minutes_between and only for it"

    for index, rule in enumerate(spec.rules):
        key = f"{at}.rules.{index}"
        operands = [rule.column]
        if isinstance(rule, NotBeforeRule):
            operands.append(rule.reference)
        else:
            operands.extend(rule.plus + rule.minus)
        for operand in operands:
            if operand not in spec.columns:
                yield f"{key}: {operand!r} is not a column of {name}"
            elif isinstance(rule, NotBeforeRule) and spec.columns[operand].type != "timestamp":
                yield f"{key}: {operand!r} must be a timestamp column for not_before"
            elif (
                isinstance(rule, SumEqualsRule) and spec.columns[operand].type not in _NUMERIC_TYPES
            ):
                yield f"{key}: {operand!r} must be numeric for sum_equals"


def _check_fk_cycles(contract: Contract) -> Iterator[str]:
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> Iterator[str]:
        state[name] = "visiting"
        for fk in contract.sources[name].foreign_keys:
            parent = fk.references
            if parent not in contract.sources or parent == name:
                continue
            if state.get(parent) == "visiting":
                cycle = " -> ".join([*trail[trail.index(parent) :], parent])
                yield f"sources.{name}.foreign_keys: foreign keys form a cycle: {cycle}"
            elif parent not in state:
                yield from visit(parent, [*trail, parent])
        state[name] = "done"

    for name in contract.sources:
        if name not in state:
            yield from visit(name, [name])


def data_root(contract: Contract) -> Path:
    """Root of `master/`, `input/batch/` and `input/stream/`; `FASTFEAST_DATA_DIR` overrides."""
    return _project_path(os.environ.get("FASTFEAST_DATA_DIR") or contract.paths.data_dir)


def state_root(contract: Contract) -> Path:
    """Embedded Postgres data and the PII key; `FASTFEAST_STATE_DIR` overrides."""
    return _project_path(os.environ.get("FASTFEAST_STATE_DIR") or contract.paths.state_dir)


def _project_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


@cache
def default_contract() -> Contract:
    """The contract this process runs with (loaded once; `FASTFEAST_CONFIG` picks the file)."""
    return load_contract()
