"""Great Expectations suites: generated from the contract, hand-written parts kept, run on frames.

No database: frames are built from the contract with the dtypes a Postgres read-back produces
(nullable Int64 or float64 ints, float64 or Decimal numerics, datetime64 timestamps, object dates
and booleans). Importing GE costs ~5 s once per process; the runner caches it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest

from fastfeast_dagster.checks.runner import MASKED, SuiteOutcome, run_suite
from fastfeast_dagster.checks.suites import (
    PII_TOKEN_REGEX,
    SuiteError,
    expectations_command,
    generated_expectations,
    load_suite,
    suite_drift,
    suite_targets,
    write_suites,
)
from fastfeast_dagster.contract import PROJECT_ROOT, Contract, NotBeforeRule, SourceSpec

SUITES = PROJECT_ROOT / "config" / "expectations"
START = pd.Timestamp("2026-01-02 05:00")


def _column_values(name: str, column, spec: SourceSpec, rows: int) -> pd.Series:
    """Valid values for one contract column, typed like a Postgres read-back."""
    index = range(rows)
    if column.type == "int":
        low = int(column.min) if column.min is not None else 1
        span = int(column.max) - low + 1 if column.max is not None else rows
        values = [low + i % span for i in index]
        if column.nullable and name != spec.primary_key and rows > 2:
            values[1] = None  # nullable ints arrive as Int64 with <NA>
        return pd.Series(values, dtype="Int64")
    if column.type == "float":
        low = column.min if column.min is not None else 0.0
        high = column.max if column.max is not None else low + 1000.0
        return pd.Series([low + (high - low) * (i % 7) / 7 for i in index], dtype="float64")
    if column.type == "bool":
        return pd.Series([[True, False, None][i % 3] for i in index], dtype="object")
    if column.type == "date":
        return pd.Series([dt.date(2025, 1, 1) + dt.timedelta(days=i % 300) for i in index])
    if column.type == "timestamp":
        return pd.Series(START + pd.to_timedelta(list(index), unit="s"))
    if column.pii is not None:
        return pd.Series([hashlib.sha256(f"{name}{i}".encode()).hexdigest() for i in index])
    if column.format == "uuid":
        return pd.Series([str(uuid.UUID(int=i + 1)) for i in index])
    if column.allowed is not None:
        return pd.Series([column.allowed[i % len(column.allowed)] for i in index])
    return pd.Series([f"{name} {i}" for i in index])


def make_frame(spec: SourceSpec, rows: int) -> pd.DataFrame:
    """A frame of `rows` rows that satisfies every expectation of `spec.table`'s suite."""
    frame = pd.DataFrame(
        {name: _column_values(name, column, spec, rows) for name, column in spec.columns.items()}
    )
    for rule in spec.rules:
        if isinstance(rule, NotBeforeRule):
            frame[rule.column] = frame[rule.reference] + pd.Timedelta(minutes=7)
        else:
            frame[rule.column] = frame[rule.plus].sum(axis=1) - frame[rule.minus].sum(axis=1)
    for name, derived in spec.derived.items():
        source = frame[derived.source]
        if derived.kind == "date_key":
            frame[name] = (source.dt.year * 10000 + source.dt.month * 100 + source.dt.day).astype(
                "Int64"
            )
        elif derived.kind == "time_key":
            frame[name] = (source.dt.hour * 100 + source.dt.minute).astype("Int64")
        else:
            frame[name] = (frame[derived.until] - source).dt.total_seconds() / 60
    return frame


def _suite(spec: SourceSpec) -> Path:
    return SUITES / f"{spec.table}.json"


def _failure(outcome: SuiteOutcome, type_: str, column: str) -> dict:
    matches = [f for f in outcome.failures if f["type"] == type_ and f["column"] == column]
    assert len(matches) == 1, outcome.failures
    return matches[0]


# --- suite files (no GE import) ------------------------------------------------------------------


def test_committed_suites_do_not_drift_from_the_contract(contract: Contract) -> None:
    assert suite_drift(contract, SUITES) == []
    # One suite per source table and one per dimension history table, no other.
    assert sorted(path.stem for path in SUITES.glob("*.json")) == sorted(suite_targets(contract))


def test_generated_expectations_follow_the_contract(contract: Contract) -> None:
    customers = generated_expectations(contract.sources["customers"], contract)
    assert all(item["meta"] == {"source": "contract"} for item in customers)
    regexes = {
        item["kwargs"]["column"]: item["kwargs"]["regex"]
        for item in customers
        if item["type"] == "expect_column_values_to_match_regex"
    }
    # PII columns are stored as HMAC tokens: their contract format does not apply after masking.
    assert regexes == {"email": PII_TOKEN_REGEX, "phone": PII_TOKEN_REGEX}
    segments = generated_expectations(contract.sources["segments"], contract)
    assert {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "discount_pct", "min_value": 0, "max_value": 100},
        "meta": {"source": "contract"},
    } in segments
    assert segments[-1]["type"] == "expect_column_values_to_be_unique"
    assert segments[-1]["kwargs"] == {"column": "segment_id"}
    columns = generated_expectations(contract.sources["orders"], contract)[0]["kwargs"]
    assert columns["exact_match"] is False
    assert columns["column_set"][-2:] == ["date_key", "time_key"]


def test_regeneration_keeps_hand_written_expectations_and_is_byte_stable(
    contract: Contract, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert len(write_suites(contract, first)) == len(suite_targets(contract)) == 20
    assert write_suites(contract, first) == []  # nothing changes on a second build
    write_suites(contract, second)
    for path in first.glob("*.json"):
        assert path.read_bytes() == (second / path.name).read_bytes()

    # A committed suite that lost a generated expectation is restored byte for byte, its
    # hand-written expectations kept in place.
    committed = tmp_path / "committed"
    shutil.copytree(SUITES, committed)
    orders = committed / "fact_order.json"
    suite = json.loads(orders.read_text())
    hand_written = [e for e in suite["expectations"] if e["meta"]["source"] == "hand-written"]
    assert len(hand_written) == 3
    del suite["expectations"][1]
    orders.write_text(json.dumps(suite))
    [drift] = suite_drift(contract, committed)
    assert "fact_order.json" in drift
    assert "not in file: expect_column_values_to_not_be_null(order_id)" in drift
    assert write_suites(contract, committed) == [orders]
    assert orders.read_bytes() == (SUITES / "fact_order.json").read_bytes()


def test_drift_and_unmarked_expectations_are_reported(contract: Contract, tmp_path: Path) -> None:
    shutil.copytree(SUITES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "dim_city.json").unlink()
    (tmp_path / "dim_old.json").write_text("{}")
    team = tmp_path / "dim_team.json"
    suite = json.loads(team.read_text())
    suite["expectations"].append({"type": "expect_column_values_to_be_unique", "kwargs": {}})
    team.write_text(json.dumps(suite))
    drift = suite_drift(contract, tmp_path)
    assert len(drift) == 3
    assert any("dim_city.json: missing" in message for message in drift)
    assert any("dim_old.json: no source" in message for message in drift)
    assert any("dim_team.json" in message and "meta.source None" in message for message in drift)
    # Regeneration would lose an unmarked expectation: it refuses instead.
    with pytest.raises(SuiteError, match="dim_team"):
        write_suites(contract, tmp_path)


def test_cli_hook_builds_then_checks(
    contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expectations_command("check", contract, tmp_path) == 1
    assert "dim_city.json: missing" in capsys.readouterr().out
    assert expectations_command("build", contract, tmp_path) == 0
    suites = len(suite_targets(contract))
    assert f"{suites} of {suites} suite(s) changed" in (capsys.readouterr().out)
    assert expectations_command("check", contract, tmp_path) == 0


# --- GE: loading and running (one GE import for the module) -------------------------------------


@pytest.fixture(scope="module")
def gx_ready() -> None:
    """Pay the GE import and context build once, outside the individual tests' assertions."""
    load_suite(SUITES / "dim_team.json")


@pytest.mark.usefixtures("gx_ready")
def test_every_committed_suite_loads_without_dropping_an_expectation(contract: Contract) -> None:
    for spec in contract.sources.values():
        raw = json.loads(_suite(spec).read_text())
        suite = load_suite(_suite(spec))
        assert [e.expectation_type for e in suite.expectations] == [
            item["type"] for item in raw["expectations"]
        ]
        assert [e.meta for e in suite.expectations] == [
            item["meta"] for item in raw["expectations"]
        ]


@pytest.mark.usefixtures("gx_ready")
@pytest.mark.parametrize(
    "bad_type",
    [
        "expect_column_values_to_not_be_nul",
        # The 0.x spelling: GE 1.x registers this type in lower case only.
        "expect_column_pair_values_A_to_be_greater_than_B",
    ],
)
def test_a_misspelt_expectation_type_is_refused(tmp_path: Path, bad_type: str) -> None:
    suite = json.loads((SUITES / "dim_team.json").read_text())
    suite["expectations"].insert(
        2, {"type": bad_type, "kwargs": {"column": "team_id"}, "meta": {"source": "hand-written"}}
    )
    path = tmp_path / "dim_team.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match=rf"dim_team\.json: expectation #2 {bad_type}\(team_id\)"):
        load_suite(path)
    path.write_text("{not json")
    with pytest.raises(SuiteError, match=r"dim_team\.json: not valid JSON"):
        load_suite(path)


@pytest.mark.usefixtures("gx_ready")
def test_clean_frames_pass_every_suite(contract: Contract) -> None:
    for spec in contract.sources.values():
        outcome = run_suite(make_frame(spec, 50), _suite(spec), pii_columns=spec.pii_columns)
        assert (outcome.success, outcome.failed, outcome.failures) == (True, 0, []), spec.table
        assert outcome.evaluated == len(json.loads(_suite(spec).read_text())["expectations"])
        assert outcome.ge_version.startswith("1.")


@pytest.mark.usefixtures("gx_ready")
def test_planted_violations_fail_the_right_expectations(contract: Contract) -> None:
    spec = contract.sources["orders"]
    frame = make_frame(spec, 40)
    frame.loc[3, "order_id"] = frame.loc[4, "order_id"]
    # A negative amount, the fee raised to match: row 5 still adds up to its total.
    frame.loc[5, "delivery_fee"] += frame.loc[5, "order_amount"] + 1.0
    frame.loc[5, "order_amount"] = -1.0
    frame.loc[6, "total_amount"] += 0.5
    frame.loc[7, "delivered_at"] = frame.loc[7, "order_created_at"] - pd.Timedelta(minutes=1)
    frame.loc[8, "payment_method"] = "bitcoin"

    outcome = run_suite(frame, _suite(spec))
    assert not outcome.success
    unique = _failure(outcome, "expect_column_values_to_be_unique", "order_id")
    assert unique["unexpected_count"] == 2
    assert unique["severity"] == "error"
    between = _failure(outcome, "expect_column_values_to_be_between", "order_amount")
    assert (between["unexpected_count"], between["examples"]) == (1, [-1.0])
    total = _failure(outcome, "expect_column_values_to_be_null", "total_amount")
    assert total["unexpected_count"] == 1
    pair = _failure(
        outcome,
        "expect_column_pair_values_a_to_be_greater_than_b",
        "delivered_at, order_created_at",
    )
    assert pair["unexpected_count"] == 1
    in_set = _failure(outcome, "expect_column_values_to_be_in_set", "payment_method")
    assert in_set["examples"] == ["bitcoin"]
    assert (outcome.failed, outcome.warnings) == (5, 0)
    json.dumps(outcome.failures)  # plain values only: they become Dagster metadata


@pytest.mark.usefixtures("gx_ready")
def test_postgres_read_back_dtypes(contract: Contract) -> None:
    """Numerics as Decimal objects, nullable ints as float64, text as string dtype, no rows lost."""
    spec = contract.sources["orders"]
    frame = make_frame(spec, 30)
    for name in ("order_amount", "delivery_fee", "discount_amount", "total_amount"):
        frame[name] = [decimal.Decimal(f"{value:.2f}") for value in frame[name]]
    for name in ("customer_id", "restaurant_id", "driver_id", "region_id"):
        frame[name] = frame[name].astype("float64")
    for name in ("order_id", "order_status", "payment_method"):
        frame[name] = frame[name].astype("string")
    frame.loc[1, "discount_amount"] = None  # a NULL part skips the total rule, as in the contract
    assert run_suite(frame, _suite(spec)).failures == []

    frame.loc[2, "discount_amount"] = decimal.Decimal("-3.00")
    frame.loc[4, "order_status"] = pd.NA  # nullable column: no failure
    outcome = run_suite(frame, _suite(spec))
    assert [(f["type"], f["column"]) for f in outcome.failures] == [
        ("expect_column_values_to_be_between", "discount_amount"),
        ("expect_column_values_to_be_null", "total_amount"),
    ]
    assert outcome.failures[0]["examples"] == [-3.0]


@pytest.mark.usefixtures("gx_ready")
def test_warn_severity_does_not_fail_the_outcome(contract: Contract, tmp_path: Path) -> None:
    spec = contract.sources["teams"]
    suite = json.loads(_suite(spec).read_text())
    for item in suite["expectations"]:
        if item["type"] == "expect_column_values_to_be_unique":
            item["meta"]["severity"] = "warn"
    path = tmp_path / "dim_team.json"
    path.write_text(json.dumps(suite))
    frame = make_frame(spec, 10)
    frame.loc[1, "team_id"] = frame.loc[0, "team_id"]
    outcome = run_suite(frame, path)
    assert (outcome.success, outcome.failed, outcome.warnings) == (True, 1, 1)
    assert outcome.failures[0]["severity"] == "warn"

    item["meta"]["severity"] = "fatal"
    path.write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match=r"meta\.severity 'fatal'"):
        load_suite(path)


@pytest.mark.usefixtures("gx_ready")
def test_pii_examples_are_masked(contract: Contract) -> None:
    spec = contract.sources["customers"]
    frame = make_frame(spec, 10)
    frame.loc[2, "email"] = "someone@example.com"  # an unmasked value reached the warehouse
    outcome = run_suite(frame, _suite(spec), pii_columns=spec.pii_columns)
    failure = _failure(outcome, "expect_column_values_to_match_regex", "email")
    assert failure["unexpected_count"] == 1
    assert failure["examples"] == [MASKED]
    assert "someone@example.com" not in json.dumps(outcome.failures)


@pytest.mark.usefixtures("gx_ready")
def test_an_empty_partition_skips_the_row_count(contract: Contract) -> None:
    spec = contract.sources["tickets"]
    empty = make_frame(spec, 3).iloc[0:0]
    total = len(json.loads(_suite(spec).read_text())["expectations"])
    outcome = run_suite(empty, _suite(spec))
    assert (outcome.success, outcome.failed, outcome.skipped) == (True, 0, 1)
    assert outcome.evaluated == total - 1

    # The caller knows rows were loaded: an empty read-back is then worth a warning.
    outcome = run_suite(empty, _suite(spec), allow_empty=False)
    assert (outcome.success, outcome.warnings, outcome.skipped) == (True, 1, 0)
    assert outcome.failures[0]["type"] == "expect_table_row_count_to_be_between"
