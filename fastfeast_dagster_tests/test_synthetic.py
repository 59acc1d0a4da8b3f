"""The synthetic generator: determinism, contract shape, and a manifest that adds up."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fastfeast_dagster.synthetic import Manifest, generate

CONTRACT = Path(__file__).resolve().parents[1] / "config" / "pipeline.yaml"
DAY = dt.date(2026, 3, 2)


@pytest.fixture(scope="module")
def contract() -> dict:
    return yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def full_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("full_day")
    return out, generate(out, DAY)


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    text = path.read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _source_of(contract: dict, relative: str) -> str:
    folder = {"master": "master", "input/batch": "batch", "input/stream": "stream"}
    kind = next(v for k, v in folder.items() if relative.startswith(k))
    name = Path(relative).name
    return next(s for s, spec in contract["sources"].items() if spec["files"].get(kind) == name)


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", DAY, hours=[3, 18, 19], seed=7)
    second = generate(tmp_path / "b", DAY, hours=[3, 18, 19], seed=7)
    assert first == second
    assert _all_files(tmp_path / "a") == _all_files(tmp_path / "b")
    assert Manifest.load(tmp_path / "a" / "manifest.json") == first


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    generate(tmp_path / "a", DAY, hours=[19], seed=1)
    generate(tmp_path / "b", DAY, hours=[19], seed=2)
    a, b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    for name in ("master/customers.csv", f"input/stream/{DAY}/19/orders.json"):
        assert a[name] != b[name]


def test_every_defect_of_the_catalogue_is_injected(full_day: tuple[Path, Manifest]) -> None:
    _, manifest = full_day
    rejects: Counter[str] = Counter()
    repairs: Counter[str] = Counter()
    defects: dict[str, Counter[str]] = {}
    for path, entry in manifest.files.items():
        rejects.update(entry["expected_rejects"])
        repairs.update(entry["expected_repairs"])
        defects.setdefault(Path(path).name.split(".")[0], Counter()).update(entry["defects"])
    # Bad keys, foreign keys and essential values (calendar-placing times, money) reject.
    expected_rejects = [
        "records/duplicate/customer_id", "records/duplicate/driver_id",
        "schema/type/customer_id", "schema/type/driver_id", "records/duplicate/order_id",
        "records/duplicate/ticket_id", "schema/not_null/created_at",
        "records/range/order_amount", "records/range/refund_amount",
        "records/total_matches_parts/total_amount", "orphan/foreign_key/customer_id",
        "orphan/foreign_key/driver_id", "orphan/foreign_key/restaurant_id",
        "orphan/foreign_key/order_id", "orphan/foreign_key/ticket_id",
    ]  # fmt: skip
    # Bad descriptive values are repaired: the member, or the fact, loads.
    expected_repairs = [
        "schema/not_null/full_name", "schema/not_null/restaurant_name",
        "schema/not_null/driver_name", "records/format/email", "records/format/agent_email",
        "records/format/phone", "records/format/driver_phone", "records/format/agent_phone",
        "records/format/national_id", "records/range/rating_avg", "records/range/on_time_rate",
        "schema/allowed_values/shift", "schema/allowed_values/gender",
        "schema/type/prep_time_avg_min", "schema/not_null/payment_method",
        "schema/type/delivered_at", "schema/type/resolved_at",
        "schema/allowed_values/order_status", "records/delivered_after_created/delivered_at",
    ]  # fmt: skip
    assert [rule for rule in expected_rejects if rejects[rule] < 1] == []
    assert set(rejects) == set(expected_rejects)
    assert [rule for rule in expected_repairs if repairs[rule] < 1] == []
    assert set(repairs) == set(expected_repairs)
    assert all(manifest.repaired_members[name] for name in ("customers", "restaurants", "drivers"))
    for source, kinds in {
        "customers": ["duplicate_pk_changed", "valid_nulls", "int_as_float", "drift",
                      "new_customers", "phone_without_leading_zero"],
        "restaurants": ["valid_nulls", "int_as_float", "drift"],
        "drivers": ["valid_nulls", "int_as_float", "drift"],
        "agents": ["valid_nulls", "int_as_float", "drift"],
        "orders": ["valid_nulls", "json_nan", "late_parent", "cancelled_or_refunded",
                   "in_flight", "order_update"],
        "tickets": ["valid_nulls", "open_ticket", "ticket_update", "derived_orphan"],
        "ticket_events": ["valid_nulls", "reopen", "derived_orphan"],
    }.items():  # fmt: skip
        assert [kind for kind in kinds if defects[source][kind] < 1] == [], source
    assert manifest.late_parent_orders and manifest.order_updates and manifest.ticket_updates
    assert manifest.late_files and all(f.startswith("input/stream/") for f in manifest.late_files)
    assert manifest.changes["drivers"]["is_active"] and manifest.changes["customers"]["email"]


def test_counts_reconcile_with_the_files(full_day: tuple[Path, Manifest]) -> None:
    root, manifest = full_day
    assert len(manifest.files) == 13 + 13 + 3 * 24
    for relative, entry in manifest.files.items():
        assert entry["expected_loaded"] + entry["expected_quarantined"] == entry["rows"], relative
        assert sum(entry["expected_rejects"].values()) == entry["expected_quarantined"]
        # Each defective row carries one defect: a repaired row has one repaired value.
        assert entry["expected_repaired"] == sum(entry["expected_repairs"].values())
        assert entry["expected_repaired"] <= entry["expected_loaded"]
        assert len(_read(root / relative)) == entry["rows"], relative
    assert set(manifest.tables) == {
        spec["table"] for spec in yaml.safe_load(CONTRACT.read_text())["sources"].values()
    }
    stream = [e for p, e in manifest.files.items() if p.endswith("orders.json")]
    updates = sum(e["defects"].get("order_update", 0) for e in stream)
    duplicates = sum(e["defects"].get("duplicate", 0) for e in stream)
    loaded = sum(e["expected_loaded"] for e in stream)
    assert manifest.tables["fact_order"]["expected_rows"] == loaded - updates
    assert duplicates >= 1


def test_columns_match_the_contract(full_day: tuple[Path, Manifest], contract: dict) -> None:
    root, manifest = full_day
    for relative, entry in manifest.files.items():
        if entry["rows"] == 0 and relative.endswith(".json"):
            continue  # `[]` carries no keys
        columns = list(_read(root / relative).columns)
        source = _source_of(contract, relative)
        assert columns == list(contract["sources"][source]["columns"]), relative


def test_special_files_and_literals(full_day: tuple[Path, Manifest], contract: dict) -> None:
    root, _ = full_day
    hour = root / "input" / "stream" / DAY.isoformat() / "03"
    assert (hour / "ticket_events.json").read_text() == "[]"
    assert (hour / "tickets.csv").read_text().strip().count("\n") == 0
    orders = sorted((root / "input" / "stream").rglob("orders.json"))
    assert any(re.search(r":\s*NaN[,\n]", path.read_text()) for path in orders)
    assert all(path.read_text().startswith("[\n  {\n") for path in orders)
    uuid = re.compile(contract["formats"]["uuid"])
    for name, column in (
        ("orders.json", "order_id"),
        ("tickets.csv", "ticket_id"),
        ("ticket_events.json", "event_id"),
    ):
        for path in (root / "input" / "stream").rglob(name):
            values = _read(path)[column] if path.stat().st_size > 2 else pd.Series([], dtype=str)
            assert values.map(lambda v: bool(uuid.fullmatch(v))).all(), path


def test_pii_values_are_listed_and_valid(full_day: tuple[Path, Manifest], contract: dict) -> None:
    root, manifest = full_day
    email = re.compile(contract["formats"]["email"])
    customers = _read(root / "master" / "customers.csv")
    listed = set(manifest.pii_clear_values["customers"]["email"])
    assert set(customers["email"][customers["email"].map(lambda v: bool(email.fullmatch(v)))]) <= (
        listed
    )
    tlds = {value.rsplit(".", 1)[1] for value in listed}
    assert len(tlds) > 2
    nationals = manifest.pii_clear_values["drivers"]["national_id"]
    assert nationals and all(re.fullmatch(contract["formats"]["national_id"], v) for v in nationals)


def test_next_day_resolves_late_parents_and_keeps_master(tmp_path: Path) -> None:
    today = generate(tmp_path, DAY, hours=[12, 19])
    master = _all_files(tmp_path / "master")
    generate(tmp_path, DAY + dt.timedelta(days=1), hours=[0])
    assert _all_files(tmp_path / "master") == master
    tomorrow = _read(
        tmp_path / "input" / "batch" / f"{DAY + dt.timedelta(days=1)}" / "customers.csv"
    )
    orders = pd.concat(
        _read(p) for p in (tmp_path / "input" / "stream" / DAY.isoformat()).rglob("orders.json")
    )
    late = orders[orders["order_id"].isin(today.late_parent_orders)]
    assert len(late) == len(today.late_parent_orders) > 0
    assert set(late["customer_id"].astype(str)) <= set(tomorrow["customer_id"])
    batch = _read(tmp_path / "input" / "batch" / DAY.isoformat() / "drivers.csv")
    first = _read(tmp_path / "master" / "drivers.csv").drop_duplicates("driver_id")
    merged = first.merge(batch.drop_duplicates("driver_id"), on="driver_id", suffixes=("", "_b"))
    for column, ids in today.changes["drivers"].items():
        changed = merged[merged[column] != merged[f"{column}_b"]]["driver_id"].astype(int)
        assert sorted(changed) == ids, column


def test_scale_smoke_twenty_thousand_orders(tmp_path: Path) -> None:
    manifest = generate(tmp_path, DAY, hours=[19], scale=20_000 / 270)
    entry = manifest.files[f"input/stream/{DAY}/19/orders.json"]
    assert 20_000 <= entry["rows"] <= 20_600
    rows = json.loads(
        (tmp_path / "input" / "stream" / DAY.isoformat() / "19" / "orders.json").read_text()
    )
    assert len(rows) == entry["rows"]
    assert entry["expected_loaded"] + entry["expected_quarantined"] == entry["rows"]
    assert manifest.tables["fact_order"]["expected_rows"] == entry["expected_loaded"]
