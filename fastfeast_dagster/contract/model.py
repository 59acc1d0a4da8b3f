"""Typed model of `config/pipeline.yaml`, the pipeline contract (declarations only).

Loading and the cross-reference checks live in `loading.py` and `checks.py`; the resolved
relations and the type table in `relations.py` and `types.py`. Derived views of a model are plain
properties, not cached: `model_copy(update=...)` would carry a cached value over to the copy.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from fastfeast_dagster.contract.policy import ValuePolicy, value_policies
from fastfeast_dagster.contract.relations import Relations, resolve_relations
from fastfeast_dagster.contract.types import DERIVED_TYPES, TYPES, TableColumn

ColumnType = Literal["int", "float", "text", "bool", "date", "timestamp"]
SourceKind = Literal["dimension", "fact"]
FolderKind = Literal["master", "batch", "stream"]
FileFormat = Literal["csv", "json"]

# `${VAR}` or `${VAR:-default}`, as in a shell: the default applies when VAR is unset.
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Placeholder(_Strict):
    placeholder: str = Field(min_length=1)


class ColumnSpec(_Strict):
    type: ColumnType
    nullable: bool = True
    allowed: list[str] | None = None
    format: str | None = None
    min: float | None = None
    max: float | None = None
    pii: Literal["phone", "email", "text"] | None = None
    description: str | None = None
    # Whether a bad value rejects the row; unset: see `policy.py` for the defaults.
    essential: bool | None = None
    # What a bad value of a column that is not essential becomes (`policy.py`).
    on_invalid: Literal["reject_row", "set_null"] | Placeholder | None = None


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


class IndexSpec(_Strict):
    """An index on one column of the source's table, and why it earns its cost on every load."""

    column: str
    # btree for lookups and joins; brin for a column that grows with load order (a date key).
    using: Literal["btree", "brin"] = "btree"
    why: str = Field(min_length=1)


class History(_Strict):
    """The dimension's members as they were over time (SCD type 2), in `<table>_history`: a
    version per key and span of days in which its tracked attributes held."""

    track: list[str] = Field(min_length=1)


UnknownColumns = Literal["rescue", "reject"]
MissingColumns = Literal["set_null", "reject"]


class DriftOverride(_Strict):
    """A source's own answer to schema drift; what it leaves unset comes from `drift:`."""

    unknown_columns: UnknownColumns | None = None
    missing_columns: MissingColumns | None = None


class PiiName(_Strict):
    """An unknown column whose name matches `pattern` (searched, case-insensitively) is PII."""

    pattern: str
    pii: Literal["phone", "email", "text"]


# What an unknown column's name says about its values (`validation/drift.py`).
_PII_NAMES = [
    PiiName(pattern="e_?mail", pii="email"),
    PiiName(pattern="phone|mobile|msisdn|whatsapp", pii="phone"),
    PiiName(pattern="national_?id|passport|ssn|tax_?id|iban|card_?number", pii="text"),
    PiiName(pattern="name|address|birth", pii="text"),
]


class Drift(_Strict):
    """Schema drift (`validation/drift.py`): a file's columns that differ from the contract.

    Unknown columns are rescued into the row's `_rescued` jsonb (or reject the file); missing
    nullable columns load as NULL (or reject the file). A missing key or required column always
    rejects the file.
    """

    unknown_columns: UnknownColumns = "rescue"
    missing_columns: MissingColumns = "set_null"
    pii_names: list[PiiName] = _PII_NAMES


@dataclass(frozen=True)
class DriftPolicy:
    """A source's drift policy, its override applied over the contract's defaults."""

    rescue_unknown: bool
    null_missing: bool


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
    # The table's indexes besides its primary key; the schema has exactly these.
    indexes: list[IndexSpec] = []
    history: History | None = None
    owners: list[str] = []
    drift: DriftOverride = DriftOverride()

    @property
    def history_table(self) -> str:
        return f"{self.table}_history"

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
    # Largest file a tick reads to see whether it is already whole (`sources/completeness.py`).
    complete_max_mb: float = Field(default=16, ge=0)
    minimum_interval_seconds: int = Field(ge=1)
    max_requests_per_tick: int = Field(ge=1)
    # Facts' freshness policy (`assets/tables.py`): WARN, then FAIL, when no fact hour loaded for
    # this long.
    freshness_lag_minutes: int = Field(ge=1)
    freshness_fail_minutes: int = Field(default=360, ge=2)
    # How long an hour of facts waits for its day's dimension files to load (`sensors/parents.py`).
    parent_wait_minutes: float = Field(default=30, ge=0)


class Orphans(_Strict):
    retry_window_hours: float = Field(gt=0)
    promotion_cron: str
    retry_check_seconds: int = Field(default=60, gt=0)


class QuarantineThresholds(_Strict):
    warn_rate: float = Field(ge=0, le=1)
    error_rate: float = Field(ge=0, le=1)
    # How sure the quarantine-rate check must be that a rate is above a threshold (`rates.py`).
    confidence: float = Field(default=0.999, gt=0, lt=1)


class Repair(_Strict):
    """How repaired values look, and when their share of a partition is worth a warning."""

    placeholder: str = Field(default="Unknown", min_length=1)
    warn_rate: float = Field(default=0.05, ge=0, le=1)
    confidence: float = Field(default=0.999, gt=0, lt=1)


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


class ColumnNames(_Strict):
    """How the names a file gives its columns (CSV header, JSON keys) meet the contract's, which
    are lower-case identifiers: ` Email` and `EMAIL` are the column `email`."""

    trim: bool = True
    ignore_case: bool = True

    def normalise(self, name: str) -> str:
        name = name.strip() if self.trim else name
        return name.lower() if self.ignore_case else name


class Retries(_Strict):
    """Self-healing (`sensors/healing.py`): how often a partition whose run failed or died is
    requested again, and how long it waits before each re-run after the first."""

    max_attempts: int = Field(default=4, ge=0)
    backoff_seconds: float = Field(default=60, ge=0)


# Fields whose values may be `${VAR}` references: credentials and addresses of the alert mailer.
SECRET_FIELDS = {("alerts", "smtp", field) for field in Smtp.model_fields}


class Contract(_Strict):
    paths: Paths
    partitions: Partitions
    sensors: Sensors
    orphans: Orphans
    quarantine: QuarantineThresholds
    repair: Repair = Repair()
    calendar: Calendar
    warehouse: Warehouse
    owners: list[str]
    null_tokens: list[str]
    formats: dict[str, str]
    pii: Pii
    alerts: Alerts
    sources: dict[str, SourceSpec]
    column_names: ColumnNames = ColumnNames()
    retries: Retries = Retries()
    drift: Drift = Drift()

    def drift_policy(self, source: str) -> DriftPolicy:
        own = self.sources[source].drift
        unknown = own.unknown_columns or self.drift.unknown_columns
        missing = own.missing_columns or self.drift.missing_columns
        return DriftPolicy(rescue_unknown=unknown == "rescue", null_missing=missing == "set_null")

    @property
    def null_vocabulary(self) -> frozenset[str]:
        """The null tokens as values are compared with them: trimmed and lower-cased."""
        return frozenset(token.strip().lower() for token in self.null_tokens)

    @property
    def dimensions(self) -> dict[str, SourceSpec]:
        return {name: spec for name, spec in self.sources.items() if spec.kind == "dimension"}

    @property
    def facts(self) -> dict[str, SourceSpec]:
        return {name: spec for name, spec in self.sources.items() if spec.kind == "fact"}

    @property
    def table_sources(self) -> dict[str, str]:
        """The source that loads each warehouse table."""
        return {spec.table: name for name, spec in self.sources.items()}

    @property
    def relations(self) -> Relations:
        return resolve_relations(self.sources)

    def value_policies(self, source: str) -> dict[str, ValuePolicy]:
        """What a bad value of each column (derived ones included) does to its row."""
        return value_policies(self.sources[source], self.repair.placeholder)

    def table_columns(self, source: str) -> list[TableColumn]:
        """The table's contract columns, then its derived columns (lineage excluded).

        A required column stays NOT NULL in the warehouse only when a bad value cannot make it
        NULL: it rejects its row, or becomes the placeholder.
        """
        spec = self.sources[source]
        policies = self.value_policies(source)
        columns = [
            TableColumn(
                name,
                TYPES[column.type],
                nullable=column.nullable or not policies[name].keeps_not_null,
            )
            for name, column in spec.columns.items()
        ]
        return columns + [
            TableColumn(name, DERIVED_TYPES[derived.kind]) for name, derived in spec.derived.items()
        ]

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
        return ENV_REFERENCE.sub(_expand_reference, value)

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


def _expand_reference(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    return os.environ[name] if default is None else os.environ.get(name, default)
