"""The validation stages as pure functions: typing, nulls, rules, duplicates, all reasons, and
which bad values reject their row and which are repaired."""

from __future__ import annotations

import pandas as pd
import pytest

from fastfeast_dagster.batch import ROW_COLUMN
from fastfeast_dagster.contract import TEXT_DTYPE, Contract
from fastfeast_dagster.contract.model import DriftOverride
from fastfeast_dagster.validation.derive import add_derived_columns
from fastfeast_dagster.validation.drift import column_drift
from fastfeast_dagster.validation.engine import validate


def _frame(rows: list[dict[str, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).astype(TEXT_DTYPE)
    frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    return frame


def _order(**overrides: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "order_id": "3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
        "customer_id": "12",
        "restaurant_id": "3",
        "driver_id": "7",
        "region_id": "2",
        "order_amount": "100.50",
        "delivery_fee": "12",
        "discount_amount": "0",
        "total_amount": "112.50",
        "order_status": "Delivered",
        "payment_method": "card",
        "order_created_at": "2026-03-02 10:15:00",
        "delivered_at": "2026-03-02T10:55:30.250000",
    }
    row.update(overrides)
    return row


def _reasons(result, row: int) -> set[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    lines = result.rejects[result.rejects[ROW_COLUMN] == row]
    return set(zip(lines["stage"], lines["rule"], lines["column"], strict=True))


def _repairs(result, row: int) -> set[tuple[str, str, str, str | None]]:  # type: ignore[no-untyped-def]
    lines = result.repairs[result.repairs[ROW_COLUMN] == row]
    return set(
        zip(lines["stage"], lines["rule"], lines["column"], lines["repaired_to"], strict=True)
    )


def test_accepted_value_formats_are_typed(contract: Contract) -> None:
    rows = [
        _order(),
        _order(
            order_id="3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e50",
            customer_id="370.0",
            order_created_at="2026-03-02T10:15",
            delivered_at="",
        ),
    ]
    result = validate(_frame(rows), contract.sources["orders"], contract)
    assert result.rejects.empty, result.rejects
    clean = result.clean
    assert clean["customer_id"].tolist() == [12, 370]
    assert str(clean["customer_id"].dtype) == "Int64"
    assert clean["order_created_at"].tolist() == [
        pd.Timestamp("2026-03-02 10:15:00"),
        pd.Timestamp("2026-03-02 10:15:00"),
    ]
    assert clean["delivered_at"].iloc[0] == pd.Timestamp("2026-03-02 10:55:30.25")
    assert pd.isna(clean["delivered_at"].iloc[1])


def test_timestamps_with_an_offset_become_the_contracts_wall_clock(contract: Contract) -> None:
    """`Z` and `+hh:mm` are valid ISO-8601; the warehouse holds the contract zone's wall clock."""
    offsets = ["2026-03-02T10:15:00Z", "2026-03-02 12:15:00+02:00", "2026-03-02T07:45:00.5-0230"]
    ids = [f"3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5{n}" for n in range(len(offsets))]
    rows = [
        _order(order_id=order_id, order_created_at=moment, delivered_at="")
        for order_id, moment in zip(ids, offsets, strict=True)
    ]
    utc = validate(_frame(rows), contract.sources["orders"], contract)
    assert utc.rejects.empty, utc.rejects
    assert {str(value) for value in utc.clean["order_created_at"]} == {
        "2026-03-02 10:15:00",
        "2026-03-02 10:15:00.500000",
    }
    cairo = contract.model_copy(
        update={"partitions": contract.partitions.model_copy(update={"timezone": "Africa/Cairo"})}
    )
    local = validate(_frame(rows[:1]), contract.sources["orders"], cairo)
    assert str(local.clean["order_created_at"].iloc[0]) == "2026-03-02 12:15:00"
    # Without an offset a timestamp is already the contract zone's wall clock.
    plain = validate(_frame([_order()]), contract.sources["orders"], cairo)
    assert str(plain.clean["order_created_at"].iloc[0]) == "2026-03-02 10:15:00"
    bad = validate(
        _frame([_order(order_created_at="2026-03-02T10:15:00+2")]),
        contract.sources["orders"],
        contract,
    )
    assert _reasons(bad, 1) == {("schema", "type", "order_created_at")}


@pytest.mark.parametrize("token", ["", "null", "None", "NaN", "nat", "NA", " n/a ", None])
def test_the_null_vocabulary_becomes_a_real_null(contract: Contract, token: str | None) -> None:
    result = validate(
        _frame([_order(order_status=token, delivered_at=token)]),
        contract.sources["orders"],
        contract,
    )
    assert result.rejects.empty
    assert pd.isna(result.clean["order_status"].iloc[0])  # never the text 'None'
    assert pd.isna(result.clean["delivered_at"].iloc[0])


def test_nullability_is_honoured_per_column(contract: Contract) -> None:
    # Cancelled orders have no delivered_at: nullable, so they load (the reference's B1 bug).
    cancelled = _order(order_status="Cancelled", delivered_at=None, driver_id=None)
    # A required descriptive value is repaired with the placeholder; the order still happened.
    no_payment = _order(order_id="3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e51", payment_method="none")
    # A required essential one (it places the order in the calendar) rejects the row.
    no_time = _order(order_id="3f2b8c1e-1a2b-4c3d-8e9f-0a1b2c3d4e52", order_created_at="")
    frame = _frame([cancelled, no_payment, no_time])
    result = validate(frame, contract.sources["orders"], contract)
    assert result.clean[ROW_COLUMN].tolist() == [1, 2]
    assert result.clean["payment_method"].tolist() == ["card", "Unknown"]
    assert _repairs(result, 2) == {("schema", "not_null", "payment_method", "Unknown")}
    assert _reasons(result, 3) == {("schema", "not_null", "order_created_at")}


def test_bad_descriptive_values_are_repaired_and_the_row_loads(contract: Contract) -> None:
    customer = {
        "customer_id": "7",
        "full_name": "Mona Hassan",
        "email": "mona.hassan7@gmail.com",
        "phone": "01012345678",
        "region_id": "2",
        "segment_id": "1",
        "signup_date": "2024-01-02",
        "gender": "female",
        "created_at": "2024-01-02 10:00:00",
        "updated_at": "2024-01-02 10:00:00",
    }
    rows = [
        {**customer, "email": "notanemail", "full_name": ""},
        {**customer, "customer_id": "8", "gender": "other", "signup_date": "yesterday"},
        # A bad key rejects, whatever else is repairable; its reasons are all recorded.
        {**customer, "customer_id": "x", "email": "notanemail"},
    ]
    result = validate(_frame(rows), contract.sources["customers"], contract)
    clean = result.clean.set_index(ROW_COLUMN)
    assert clean.index.tolist() == [1, 2]
    assert pd.isna(clean.at[1, "email"]) and clean.at[1, "full_name"] == "Unknown"
    assert pd.isna(clean.at[2, "gender"]) and pd.isna(clean.at[2, "signup_date"])
    assert _repairs(result, 1) == {
        ("records", "format", "email", None),
        ("schema", "not_null", "full_name", "Unknown"),
    }
    assert _repairs(result, 2) == {
        ("schema", "allowed_values", "gender", None),
        ("schema", "type", "signup_date", None),
    }
    assert _repairs(result, 3) == set()
    assert _reasons(result, 3) == {
        ("schema", "type", "customer_id"),
        ("records", "format", "email"),
    }


def test_a_date_outside_the_calendar_rejects_the_row(contract: Contract) -> None:
    late = _order(order_created_at="2031-01-01 00:00:00", delivered_at="2031-01-01 01:00:00")
    result = validate(_frame([late]), contract.sources["orders"], contract)
    assert result.clean.empty
    assert _reasons(result, 1) == {("records", "calendar_range", "date_key")}


def test_every_failed_rule_of_a_row_is_recorded(contract: Contract) -> None:
    bad = _order(
        order_id="not-a-uuid",
        customer_id="abc",
        order_amount="-5",
        total_amount="7.5",
        order_status="Shipped",
        delivered_at="2026-03-02 09:00:00",
    )
    result = validate(_frame([bad]), contract.sources["orders"], contract)
    assert result.clean.empty
    assert _reasons(result, 1) == {
        ("records", "format", "order_id"),
        ("schema", "type", "customer_id"),
        ("records", "range", "order_amount"),
        ("schema", "allowed_values", "order_status"),
        ("records", "delivered_after_created", "delivered_at"),
        ("records", "total_matches_parts", "total_amount"),
    }
    assert result.rejected_rows == 1


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        *[("2147483647", True), ("2147483648", False), ("12.5", False), ("1e3", False)],
        *[("-4", True), ("-2147483648", True), ("-2147483649", False), ("+007", True)],
        *[("0000000000000000000005", True), ("99999999999999999999999", False), ("-0.00", True)],
    ],
)
def test_integers_must_fit_the_warehouse_type(contract: Contract, value: str, ok: bool) -> None:
    result = validate(_frame([_order(customer_id=value)]), contract.sources["orders"], contract)
    assert result.rejects.empty == ok
    if ok:
        assert result.clean["customer_id"].iloc[0] == int(value.split(".")[0])


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("12.5", True),
        (".5", True),
        ("+1e2", True),
        ("1e400", False),
        ("inf", False),
        # Not numbers at all, in the same column as the crashing exponent: the parser must not
        # fall back to one that crashes on it.
        ("abc", False),
        ("1,5", False),
    ],
)
def test_floats_must_be_finite_numbers(contract: Contract, value: str, ok: bool) -> None:
    # An exponent this long made pandas' parser crash the process; Arrow reads it as infinite.
    other = _order(order_id="00000000-0000-0000-0000-000000000002", delivery_fee="7e029807059171")
    result = validate(
        _frame([_order(delivery_fee=value), other]), contract.sources["orders"], contract
    )
    type_errors = set(result.rejects.loc[result.rejects["rule"] == "type", ROW_COLUMN])
    assert type_errors == ({2} if ok else {1, 2})


def test_duplicates_keep_the_first_valid_row(contract: Contract) -> None:
    frame = _frame(
        [
            {"team_id": "1", "team_name": "first"},
            {"team_id": "2", "team_name": "two"},
            {"team_id": "1", "team_name": "changed content"},
            {"team_id": "x", "team_name": "bad id"},
        ]
    )
    result = validate(frame, contract.sources["teams"], contract)
    assert result.clean["team_name"].tolist() == ["first", "two"]
    assert _reasons(result, 3) == {("records", "duplicate", "team_id")}
    assert result.duplicates == 1
    # A rejected row does not occupy its key: the later valid copy loads.
    frame = _frame(
        [
            {"team_id": "abc", "team_name": "x"},
            {"team_id": "5", "team_name": "y"},
            {"team_id": "5.0", "team_name": "y"},
        ]
    )
    result = validate(frame, contract.sources["teams"], contract)
    assert result.clean["team_id"].tolist() == [5]


def test_formats_and_ranges_apply_only_to_present_values(contract: Contract) -> None:
    base = {
        "agent_id": "1",
        "agent_name": "A",
        "team_id": "1",
        "skill_level": "Mid",
        "hire_date": "2021-05-01",
        "avg_handle_time_min": "7",
        "resolution_rate": "0.9",
        "csat_score": "4.5",
        "is_active": "True",
        "created_at": "2021-05-01 00:00:00",
        "updated_at": "2021-05-01 00:00:00",
    }
    rows = [
        {**base, "agent_email": "a@fastfeast.co.uk", "agent_phone": "01012345678"},
        {**base, "agent_id": "2", "agent_email": "N/A", "agent_phone": ""},
        {**base, "agent_id": "3", "agent_email": "missing@domain", "agent_phone": "0201234567"},
        {
            **base,
            "agent_id": "4",
            "agent_email": None,
            "agent_phone": "1012345678",
            "csat_score": "5.5",
            "is_active": "maybe",
            "hire_date": "2021/05/01",
        },
    ]
    result = validate(_frame(rows), contract.sources["agents"], contract)
    # Contact details, ratings and flags are descriptive: bad ones are repaired to NULL.
    assert result.clean["agent_id"].tolist() == [1, 2, 3, 4]
    assert result.repairs[ROW_COLUMN].unique().tolist() == [3, 4]
    assert _repairs(result, 3) == {
        ("records", "format", "agent_email", None),
        ("records", "format", "agent_phone", None),
    }
    assert _repairs(result, 4) == {
        ("records", "range", "csat_score", None),
        ("schema", "type", "is_active", None),
        ("schema", "type", "hire_date", None),
    }
    repaired = result.clean.set_index("agent_id")
    assert repaired.loc[[3, 4], ["agent_email", "agent_phone"]].isna().values.tolist() == [
        [True, True],
        [True, False],
    ]
    assert pd.isna(repaired.at[4, "csat_score"]) and pd.isna(repaired.at[4, "is_active"])
    assert repaired.at[2, "csat_score"] == 4.5  # a row without repairs keeps every value


def test_column_set_mismatch_names_the_columns(contract: Contract) -> None:
    # team_id is the key: missing, it rejects the file whatever the drift policy.
    drift = column_drift(_frame([{"team_name": "x", "team_label": "y"}]), contract, "teams")
    assert drift.rejection is not None
    assert drift.rejection.rule == "missing_columns"
    assert "missing key or required column(s) team_id" in drift.rejection.message
    assert drift.unknown == ["team_label"] and drift.missing == ["team_id"]
    assert drift.rescued == []  # a rejected file rescues nothing
    # A missing nullable column and an unknown one are drift the default policy lets through.
    loose = column_drift(_frame([{"team_id": "1", "team_label": "y"}]), contract, "teams")
    assert (loose.rejection, loose.missing, loose.rescued) == (None, ["team_name"], ["team_label"])
    reordered = _frame([{"team_name": "x", "team_id": "1"}])
    assert column_drift(reordered, contract, "teams") == column_drift(
        _frame([{"team_id": "1", "team_name": "x"}]), contract, "teams"
    )
    assert column_drift(reordered, contract, "teams").rejection is None


def test_the_drift_policy_can_reject_what_it_rescues_by_default(contract: Contract) -> None:
    teams = contract.sources["teams"].model_copy(
        update={"drift": DriftOverride(unknown_columns="reject", missing_columns="reject")}
    )
    strict = contract.model_copy(update={"sources": contract.sources | {"teams": teams}})
    extra = column_drift(_frame([{"team_id": "1", "team_name": "x", "lead": "y"}]), strict, "teams")
    assert extra.rejection is not None and extra.rejection.rule == "extra_columns"
    assert "unexpected column(s) lead" in extra.rejection.message
    short = column_drift(_frame([{"team_id": "1"}]), strict, "teams")
    assert short.rejection is not None and short.rejection.rule == "missing_columns"
    assert "missing column(s) team_name" in short.rejection.message
    # Other sources keep the contract's defaults.
    assert (
        strict.drift_policy("cities").rescue_unknown
        and not strict.drift_policy("teams").null_missing
    )


def test_derived_keys_and_minutes(contract: Contract) -> None:
    spec = contract.sources["tickets"]
    clean = pd.DataFrame(
        {
            "created_at": pd.to_datetime(["2026-03-02 00:05:00", "2026-03-02 13:21:10"]),
            "first_response_at": pd.to_datetime(["2026-03-02 00:06:30", None]),
            "resolved_at": pd.to_datetime(["2026-03-02 00:20:00", None]),
        }
    )
    derived = add_derived_columns(clean, spec)
    assert derived["date_key"].tolist() == [20260302, 20260302]
    assert derived["time_key"].tolist() == [5, 1321]
    assert derived["first_response_min"].iloc[0] == 1.5
    assert pd.isna(derived["resolution_min"].iloc[1])
