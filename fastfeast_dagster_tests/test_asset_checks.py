"""Asset checks run for real: GE suites over loaded rows, blocking, and the quarantine rate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from fastfeast_dagster.checks import asset_checks
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.warehouse.readback import read_history, read_rows

DAY = "2026-03-02"


def _evaluations(
    result: dg.ExecuteInProcessResult,
) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


def _write_batch(data_dir: Path, files: dict[str, str]) -> None:
    folder = data_dir / "input" / "batch" / DAY
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


CLEAN = {
    "teams.csv": "team_id,team_name\n1,Refunds\n2,VIP Support\n",
    "agents.csv": (
        "agent_id,agent_name,agent_email,agent_phone,team_id,skill_level,hire_date,"
        "avg_handle_time_min,resolution_rate,csat_score,is_active,created_at,updated_at\n"
        "7,Mona,mona@fastfeast.com,01012345678,1,Senior,2021-05-01,8,0.9,4.5,true,"
        "2021-05-01 00:00:00,2021-05-01 00:00:00\n"
    ),
}


def test_a_clean_partition_passes_every_check(data_dir: Path, materialize) -> None:  # type: ignore[no-untyped-def]
    _write_batch(data_dir, CLEAN)
    result = materialize(["dim_team", "dim_agent"], DAY)
    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) == {
        (table, check)
        for table in ("dim_team", "dim_agent")
        for check in ("great_expectations", "quarantine_rate", "repair_rate", "contract_drift")
    } | {("dim_agent", "history_great_expectations")}
    for key, evaluation in evaluations.items():
        assert evaluation.passed, (key, evaluation.metadata)
        assert evaluation.partition == DAY
    ge = evaluations[("dim_agent", "great_expectations")].metadata
    assert ge["expectations_evaluated"].value > 5
    assert ge["great_expectations_version"].value.startswith("1.")


def test_contract_drift_warns_with_the_yaml_that_adopts_the_column(
    data_dir: Path,
    materialize,  # type: ignore[no-untyped-def]
) -> None:
    _write_batch(data_dir, {"teams.csv": "team_id,team_name,Lead_Phone,floor\n1,A,01012345678,3\n"})
    result = materialize(["dim_team"], DAY)
    assert result.success  # a WARN never blocks: the row loaded, its values rescued
    drift = _evaluations(result)[("dim_team", "contract_drift")]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    # By column name, each as the contract would declare it (the phone number masked as one).
    adopt = "floor: {type: int}\n      lead_phone: {type: text, pii: phone}"
    assert adopt in drift.metadata["adopt_yaml"].value
    assert adopt in (drift.description or "")
    assert [column["column"] for column in drift.metadata["columns"].value] == [
        "floor",
        "lead_phone",
    ]
    assert "01012345678" not in str(drift.metadata) + (drift.description or "")


@pytest.mark.usefixtures("failing_team_suite")
def test_a_failing_dimension_suite_blocks_its_children_in_the_run(
    data_dir: Path,
    materialize,  # type: ignore[no-untyped-def]
) -> None:
    _write_batch(data_dir, CLEAN)

    result = materialize(["dim_team", "dim_agent"], DAY, raise_on_error=False)
    assert not result.success
    evaluation = _evaluations(result)[("dim_team", "great_expectations")]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    (failure,) = evaluation.metadata["failed_expectations"].value
    assert failure["type"] == "expect_column_values_to_be_in_set"
    assert failure["unexpected_count"] == 2
    # The data was written (checks run after the commit) but the child never ran.
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"dim_team"}


def test_a_violation_planted_in_the_table_fails_the_right_expectation(
    data_dir: Path,
    materialize,
    warehouse_url: str,
    contract: Contract,  # type: ignore[no-untyped-def]
) -> None:
    _write_batch(data_dir, CLEAN)
    assert materialize(["dim_team", "dim_agent"], DAY).success
    with psycopg.connect(warehouse_url) as conn:
        # Straight into the table, past validation: out of range and a non-token "masked" email.
        conn.execute("UPDATE dim_agent SET csat_score = 7.5, agent_email = 'clear@text.com'")
    spec = contract.sources["agents"]
    # The day's check evaluated again over the tampered table, through the rows it reads.
    with psycopg.connect(warehouse_url) as conn:
        rows = read_rows(conn, contract, "agents", [DAY])
    checks = [asset_checks.suite_result(rows, spec, "great_expectations", spec.table)]
    results = {result.check_name: result for result in checks}
    ge = results["great_expectations"]
    assert not ge.passed
    failures = {(f["type"], f["column"]): f for f in ge.metadata["failed_expectations"].value}
    assert failures[("expect_column_values_to_be_between", "csat_score")]["unexpected_count"] == 1
    email = failures[("expect_column_values_to_match_regex", "agent_email")]
    assert email["unexpected_count"] == 1
    assert email["examples"] == ["***masked***"]  # a PII column never echoes its values


def test_quarantine_rate_trips_on_a_bad_hour_and_passes_on_a_clean_day(
    data_dir: Path,
    materialize,  # type: ignore[no-untyped-def]
) -> None:
    generate(data_dir, dt.date(2026, 3, 2), hours=[10])
    # The hour arrives before any dimension: every order is an orphan.
    result = materialize(["fact_order"], f"{DAY}-10:00")
    assert result.success
    rate = _evaluations(result)[("fact_order", "quarantine_rate")]
    assert not rate.passed
    assert rate.severity == dg.AssetCheckSeverity.ERROR
    assert rate.metadata["quarantine_rate"].value == 1.0
    assert rate.metadata["quarantine_rate_at_least"].value > 0.25
    assert "above the 25% error rate" in (rate.description or "")
    # The rejects show on the quarantine asset of the lineage graph too.
    (observation,) = [
        event.asset_observation_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key == dg.AssetKey("quarantine")
    assert observation.metadata["rows_quarantined"].value == rate.metadata["rows_read"].value

    _write_batch(data_dir, {"teams.csv": CLEAN["teams.csv"]})
    clean = _evaluations(materialize(["dim_team"], DAY))[("dim_team", "quarantine_rate")]
    assert clean.passed
    assert clean.metadata["quarantine_rate"].value == 0.0


CUSTOMERS = {
    "cities.json": '[{"city_id": 1, "city_name": "Cairo", "country": "Egypt",'
    ' "timezone": "Africa/Cairo"}]',
    "regions.csv": "region_id,region_name,city_id,delivery_base_fee\n1,Maadi,1,10\n",
    "segments.csv": "segment_id,segment_name,discount_pct,priority_support\n1,Regular,0,false\n",
    "customers.csv": (
        "customer_id,full_name,email,phone,region_id,segment_id,signup_date,gender,created_at,"
        "updated_at\n1,Ola,,,1,1,2024-01-02,female,,\n2,Omar,,,1,1,2024-01-02,male,,\n"
    ),
}


def test_the_history_check_passes_and_catches_an_overlapping_version(
    data_dir: Path,
    materialize,
    warehouse_url: str,
    contract: Contract,  # type: ignore[no-untyped-def]
) -> None:
    _write_batch(data_dir, CUSTOMERS)
    result = materialize(["dim_city", "dim_region", "dim_segment", "dim_customer"], DAY)
    assert result.success
    history = _evaluations(result)[("dim_customer", "history_great_expectations")]
    assert history.passed and history.metadata["rows_validated"].value == 2
    with psycopg.connect(warehouse_url) as conn:
        # A second version of customer 1 that overlaps the first, and a second current one.
        conn.execute(
            "INSERT INTO dim_customer_history (customer_id, segment_id, valid_from, valid_to,"
            " _source_file, _source_row, _partition_key, _run_id)"
            " VALUES (1, 1, %s::date + 1, %s::date + 3, 'x', 1, %s, 'x')",
            (DAY, DAY, DAY),
        )
        versions = read_history(conn, contract, "customers", [DAY])
    spec = contract.sources["customers"]
    check = asset_checks.suite_result(
        versions, spec, "history_great_expectations", spec.history_table
    )
    assert not check.passed
    failed = {f["type"] for f in check.metadata["failed_expectations"].value}
    assert "expect_column_pair_values_to_be_equal" in failed  # valid_to is not the next start


def test_a_few_rejected_rows_of_a_small_partition_are_not_evidence(
    data_dir: Path,
    materialize,  # type: ignore[no-untyped-def]
) -> None:
    # One team of three has no usable key: a third of the day is quarantined, far above the 5 %
    # warn rate as a share, but three rows cannot show the source is worse than 5 %.
    _write_batch(data_dir, {"teams.csv": "team_id,team_name\n1,Refunds\n2,VIP Support\nx,Ops\n"})
    rate = _evaluations(materialize(["dim_team"], DAY))[("dim_team", "quarantine_rate")]
    assert rate.metadata["quarantine_rate"].value == pytest.approx(1 / 3)
    assert rate.metadata["quarantine_rate_at_least"].value < 0.05
    assert rate.passed
    assert rate.description == (
        "1 of 3 rows quarantined (33.3%); at 99.9% confidence the rate is at least 0.0%,"
        " not above the 5% warn rate"
    )
