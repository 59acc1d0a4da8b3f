"""The contract's cross-references, which a schema alone cannot express.

A primary key among the columns, a foreign key to a known source of the right type, a format
rule that exists, no foreign-key cycle, …: each problem is one `key.path: what is wrong` line,
and all of them are reported at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastfeast_dagster.contract.model import (
    ENV_REFERENCE,
    SECRET_FIELDS,
    Contract,
    NotBeforeRule,
    SourceSpec,
    SumEqualsRule,
)
from fastfeast_dagster.contract.policy import policy_problems

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# What Dagster accepts as an asset owner.
_OWNER = re.compile(r"^(team:[A-Za-z0-9_-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
_NUMERIC_TYPES = {"int", "float"}


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, str(index)))
    else:
        yield path, node


def check_env_references(raw: dict[str, Any]) -> Iterator[str]:
    alerts_enabled = bool((raw.get("alerts") or {}).get("enabled"))
    for path, value in _walk(raw):
        if not isinstance(value, str):
            continue
        for match in ENV_REFERENCE.finditer(value):
            key = ".".join(path)
            if path not in SECRET_FIELDS:
                yield f"{key}: ${{{match.group(1)}}} is allowed only in secret fields (alerts.smtp)"
            elif alerts_enabled and match.group(2) is None and match.group(1) not in os.environ:
                yield f"{key}: variable {match.group(1)} is not set and alerts are enabled"


def check_contract(contract: Contract) -> Iterator[str]:
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
    for index, rule in enumerate(contract.drift.pii_names):
        try:
            re.compile(rule.pattern)
        except re.error as error:
            yield f"drift.pii_names.{index}.pattern: not a valid regular expression: {error}"
    if contract.calendar.first_date > contract.calendar.last_date:
        yield "calendar: first_date is after last_date"
    if contract.quarantine.warn_rate > contract.quarantine.error_rate:
        yield "quarantine: warn_rate is above error_rate"
    if contract.sensors.freshness_fail_minutes <= contract.sensors.freshness_lag_minutes:
        yield "sensors: freshness_fail_minutes must be above freshness_lag_minutes"
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

    yield from policy_problems(spec, at)

    if spec.history is not None:
        if spec.kind == "fact":
            yield (
                f"{at}.history: a fact keeps newest-wins; its events (fact_ticket_event, say)"
                " are its history"
            )
        for index, column in enumerate(spec.history.track):
            key = f"{at}.history.track.{index}"
            if column not in spec.columns:
                yield f"{key}: {column!r} is not a column of {name}"
            elif column == spec.primary_key:
                yield f"{key}: {column!r} is the key the versions belong to, not an attribute"
        if len(set(spec.history.track)) != len(spec.history.track):
            yield f"{at}.history.track: an attribute is tracked twice"

    indexed: set[str] = set()
    for index, declared in enumerate(spec.indexes):
        key = f"{at}.indexes.{index}.column"
        if declared.column not in {*spec.columns, *spec.derived, "_partition_key"}:
            yield f"{key}: {declared.column!r} is not a column of {name}"
        elif declared.column == spec.primary_key:
            yield f"{key}: {declared.column!r} is the primary key, indexed already"
        elif declared.column in indexed:
            yield f"{key}: {declared.column!r} is indexed twice"
        indexed.add(declared.column)

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
