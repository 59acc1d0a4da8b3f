"""The contract loads into typed models; every malformed variant fails with a precise message."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastfeast_dagster.contract import DEFAULT_CONFIG_PATH, ContractError, load_contract

RAW = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def test_the_shipped_contract_describes_all_sixteen_sources(contract) -> None:
    assert len(contract.dimensions) == 13
    assert set(contract.facts) == {"orders", "tickets", "ticket_events"}
    assert contract.sources["cities"].table == "dim_city"
    assert contract.sources["restaurants"].file_format("batch") == "json"
    assert contract.sources["restaurants"].file_format("master") == "csv"
    assert contract.sources["drivers"].pii_columns == ["driver_phone", "national_id"]
    # Every real foreign key of the reference system, dim→dim and fact→dim/fact.
    fks = {
        (name, fk.column, fk.references)
        for name, spec in contract.sources.items()
        for fk in spec.foreign_keys
    }
    assert ("regions", "city_id", "cities") in fks
    assert ("reasons", "reason_category_id", "reason_categories") in fks
    assert ("orders", "region_id", "regions") in fks
    assert ("tickets", "order_id", "orders") in fks
    assert ("ticket_events", "agent_id", "agents") in fks
    assert len(fks) == 22


def test_load_order_puts_parents_first(contract) -> None:
    order = contract.load_order()
    for name, spec in contract.sources.items():
        for fk in spec.foreign_keys:
            assert order.index(fk.references) < order.index(name), (name, fk.references)


def _write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False) if not isinstance(raw, str) else raw)
    return path


def _mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    raw = copy.deepcopy(RAW)
    change(raw)
    return raw


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown key",
        lambda raw: raw["sources"]["customers"]["columns"]["email"].update(pi=True),
        "sources.customers.columns.email.pi: unknown key",
    ),
    (
        "wrong type",
        lambda raw: raw["sensors"].update(settle_seconds="soon"),
        "sensors.settle_seconds: Input should be a valid number",
    ),
    (
        "unknown column type",
        lambda raw: raw["sources"]["teams"]["columns"]["team_name"].update(type="string"),
        "sources.teams.columns.team_name.type: Input should be 'int', 'float'",
    ),
    (
        "foreign key to an unknown source",
        lambda raw: raw["sources"]["regions"]["foreign_keys"][0].update(references="towns"),
        "sources.regions.foreign_keys.0.references: unknown source 'towns'",
    ),
    (
        "primary key not among the columns",
        lambda raw: raw["sources"]["segments"].update(primary_key="segment_key"),
        "sources.segments.primary_key: 'segment_key' is not among the columns",
    ),
    (
        "missing required section",
        lambda raw: raw.pop("partitions"),
        "partitions: required key is missing",
    ),
    (
        "owner that Dagster would refuse",
        lambda raw: raw["sources"]["orders"].update(owners=["data team"]),
        "sources.orders.owners: 'data team' is neither team:<name> nor an e-mail address",
    ),
    (
        "unknown format rule",
        lambda raw: raw["sources"]["agents"]["columns"]["agent_email"].update(format="emial"),
        "sources.agents.columns.agent_email.format: unknown format 'emial'",
    ),
    (
        "foreign key type mismatch",
        lambda raw: raw["sources"]["orders"]["columns"]["customer_id"].update(type="text"),
        "sources.orders.foreign_keys.0: orders.customer_id is text but customers.customer_id is",
    ),
    (
        "allowed values on a numeric column",
        lambda raw: raw["sources"]["reasons"]["columns"]["severity_level"].update(allowed=["1"]),
        "sources.reasons.columns.severity_level.allowed: allowed values apply to text columns",
    ),
    (
        "bad file extension",
        lambda raw: raw["sources"]["orders"]["files"].update(stream="orders.parquet"),
        "sources.orders.files.stream: 'orders.parquet' must end in .csv or .json",
    ),
    (
        "secret reference outside a secret field",
        lambda raw: raw["paths"].update(data_dir="${HOME}/data"),
        "paths.data_dir: ${HOME} is allowed only in secret fields",
    ),
    (
        "foreign key cycle",
        lambda raw: (
            raw["sources"]["cities"]
            .setdefault("foreign_keys", [])
            .append({"column": "city_id", "references": "regions"})
        ),
        "foreign keys form a cycle",
    ),
    (
        "invalid regular expression",
        lambda raw: raw["formats"].update(email="^[a-z"),
        "formats.email: not a valid regular expression",
    ),
    (
        "cross-field rule on an unknown column",
        lambda raw: raw["sources"]["orders"]["rules"][0].update(reference="created"),
        "sources.orders.rules.0: 'created' is not a column of orders",
    ),
    (
        "index on an unknown column",
        lambda raw: raw["sources"]["orders"]["indexes"].append(
            {"column": "coupon", "why": "coupons"}
        ),
        "sources.orders.indexes.5.column: 'coupon' is not a column of orders",
    ),
    (
        "index without a reason",
        lambda raw: raw["sources"]["orders"]["indexes"].append({"column": "region_id"}),
        "sources.orders.indexes.5.why: required key is missing",
    ),
    (
        "index on the primary key",
        lambda raw: raw["sources"]["orders"]["indexes"].append(
            {"column": "order_id", "why": "lookups"}
        ),
        "sources.orders.indexes.5.column: 'order_id' is the primary key, indexed already",
    ),
    (
        "history of a fact",
        lambda raw: raw["sources"]["orders"].update(history={"track": ["order_status"]}),
        "sources.orders.history: a fact keeps newest-wins",
    ),
    (
        "history tracking an unknown attribute",
        lambda raw: raw["sources"]["customers"]["history"]["track"].append("nickname"),
        "sources.customers.history.track.6: 'nickname' is not a column of customers",
    ),
    (
        "history tracking the key",
        lambda raw: raw["sources"]["drivers"]["history"]["track"].append("driver_id"),
        "sources.drivers.history.track.9: 'driver_id' is the key the versions belong to",
    ),
    (
        "unknown repair policy",
        lambda raw: raw["sources"]["customers"]["columns"]["email"].update(on_invalid="drop"),
        "sources.customers.columns.email.on_invalid: unknown policy 'drop': use reject_row,"
        " set_null or {placeholder: <text>}",
    ),
    (
        "repair of a primary key",
        lambda raw: raw["sources"]["customers"]["columns"]["customer_id"].update(
            on_invalid="set_null"
        ),
        "sources.customers.columns.customer_id.on_invalid: the primary key cannot be repaired",
    ),
    (
        "repair of a foreign key",
        lambda raw: raw["sources"]["orders"]["columns"]["customer_id"].update(
            on_invalid={"placeholder": "0"}
        ),
        "sources.orders.columns.customer_id.on_invalid: the foreign key cannot be repaired",
    ),
    (
        "placeholder on a number",
        lambda raw: raw["sources"]["drivers"]["columns"]["completed_deliveries"].update(
            on_invalid={"placeholder": "0"}
        ),
        "sources.drivers.columns.completed_deliveries.on_invalid: a placeholder applies to text"
        " columns, not int",
    ),
    (
        "repair of an essential column",
        lambda raw: raw["sources"]["orders"]["columns"]["order_created_at"].update(
            on_invalid="set_null"
        ),
        "sources.orders.columns.order_created_at.on_invalid: it is essential by default (it"
        " drives date_key), so a bad value rejects its row; set essential: false to repair it",
    ),
    (
        "unknown drift policy",
        lambda raw: raw["drift"].update(unknown_columns="evolve"),
        "drift.unknown_columns: Input should be 'rescue' or 'reject' (got 'evolve')",
    ),
    (
        "unknown drift policy of a source",
        lambda raw: raw["sources"]["orders"].update(drift={"missing_columns": "null"}),
        "sources.orders.drift.missing_columns: Input should be 'set_null' or 'reject' (got 'null')",
    ),
    (
        "drift policy key of a source misspelt",
        lambda raw: raw["sources"]["orders"].update(drift={"unknown_column": "reject"}),
        "sources.orders.drift.unknown_column: unknown key",
    ),
    (
        "PII name rule that is no regex",
        lambda raw: raw["drift"]["pii_names"].append({"pattern": "e(mail", "pii": "email"}),
        "drift.pii_names.4.pattern: not a valid regular expression",
    ),
    (
        "PII name rule of an unknown kind",
        lambda raw: raw["drift"]["pii_names"].append({"pattern": "iban", "pii": "bank"}),
        "drift.pii_names.4.pii: Input should be 'phone', 'email' or 'text' (got 'bank')",
    ),
]


@pytest.mark.parametrize(("case", "change", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_contract_is_refused_with_file_key_and_problem(
    tmp_path: Path, case: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _write(tmp_path, _mutated(change))
    with pytest.raises(ContractError) as error:
        load_contract(path)
    text = str(error.value)
    assert str(path) in text
    assert message in text, text


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    def two_problems(raw: dict[str, Any]) -> None:
        raw["sources"]["segments"]["primary_key"] = "nope"
        raw["sources"]["regions"]["foreign_keys"][0]["references"] = "towns"

    with pytest.raises(ContractError) as error:
        load_contract(_write(tmp_path, _mutated(two_problems)))
    assert len(error.value.problems) == 2


def test_unreadable_and_non_yaml_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="cannot read file"):
        load_contract(tmp_path / "missing.yaml")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(_write(tmp_path, "sources: [unclosed"))


def test_smtp_secrets_are_needed_only_when_alerts_are_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("HOST", "PORT", "STARTTLS", "USER", "PASSWORD", "SENDER", "RECIPIENTS"):
        monkeypatch.delenv(f"FASTFEAST_SMTP_{variable}", raising=False)
    assert load_contract(_write(tmp_path, RAW)).alerts.enabled is False

    enabled = _mutated(lambda raw: raw["alerts"].update(enabled=True))
    with pytest.raises(ContractError) as error:
        load_contract(_write(tmp_path, enabled))
    assert "alerts.smtp.host: variable FASTFEAST_SMTP_HOST is not set" in str(error.value)
    assert "FASTFEAST_SMTP_PASSWORD" not in str(error.value), "it has a default (no login)"

    monkeypatch.setenv("FASTFEAST_SMTP_HOST", "mail.internal")
    monkeypatch.setenv("FASTFEAST_SMTP_SENDER", "etl@fastfeast.example")
    monkeypatch.setenv("FASTFEAST_SMTP_RECIPIENTS", "oncall@ff.example, data@ff.example")
    settings = load_contract(_write(tmp_path, enabled)).smtp_settings()
    assert (settings.host, settings.port, settings.starttls) == ("mail.internal", 587, True)
    assert (settings.user, settings.password) == (None, None)
    assert settings.recipients == ("oncall@ff.example", "data@ff.example")

    monkeypatch.setenv("FASTFEAST_SMTP_PASSWORD", "value-PASSWORD")
    monkeypatch.setenv("FASTFEAST_SMTP_PORT", "smtp")
    with pytest.raises(ContractError, match=r"alerts\.smtp\.port: 'smtp' is not a TCP port"):
        load_contract(_write(tmp_path, enabled))
    monkeypatch.setenv("FASTFEAST_SMTP_PORT", "2525")
    contract = load_contract(_write(tmp_path, enabled))
    assert contract.smtp_settings().port == 2525
    assert contract.resolve_secret(contract.alerts.smtp.password) == "value-PASSWORD"


def test_value_policies_follow_the_defaults_and_the_declarations(contract) -> None:
    customers = contract.value_policies("customers")
    assert customers["customer_id"].reject and customers["region_id"].reject  # key, foreign key
    assert not customers["email"].reject and customers["email"].placeholder is None
    assert customers["full_name"].placeholder == contract.repair.placeholder == "Unknown"
    orders = contract.value_policies("orders")
    # Essential by default: what places the order in the calendar, and the money.
    assert orders["order_created_at"].reject and orders["total_amount"].reject
    assert orders["date_key"] == orders["order_created_at"]
    assert not orders["order_status"].reject and not orders["delivered_at"].reject
    # A required column that repairs to NULL may hold NULL in the warehouse; one that keeps a
    # placeholder or rejects stays NOT NULL.
    drivers = {column.name: column for column in contract.table_columns("drivers")}
    assert drivers["completed_deliveries"].nullable
    assert not drivers["driver_name"].nullable and not drivers["driver_id"].nullable
