"""Master + two generated batch days through the real dimension assets, against the manifest."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from fastfeast_dagster.contract import Contract, load_contract
from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database

DAY_1 = dt.date(2026, 3, 2)
DAY_2 = dt.date(2026, 3, 3)
DIMENSIONS = [spec.table for spec in load_contract().dimensions.values()]


@dataclass
class Loaded:
    url: str
    root: Path
    day_1: Manifest
    day_2: Manifest
    run: object  # (partition_key) -> ExecuteInProcessResult


@pytest.fixture(scope="module")
def loaded(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loaded]:
    """The warehouse after the master, day 1 and day 2 partitions, loaded in that order."""
    from fastfeast_dagster.definitions import defs

    root = tmp_path_factory.mktemp("data")
    database = "dims_e2e"
    create_database(pg_server.url("postgres"), database)
    url = pg_server.url(database)
    day_1 = generate(root, DAY_1, hours=[])
    day_2 = generate(root, DAY_2, hours=[])
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("FASTFEAST_DATA_DIR", str(root))
        patch.setenv("FASTFEAST_DATABASE_URL", url)
        patch.setenv("FASTFEAST_PII_KEY", "e2e-key")
        keys = [dg.AssetKey(table) for table in DIMENSIONS]
        job = defs.resolve_implicit_job_def_def_for_assets(keys)
        assert job is not None

        def run(partition_key: str) -> dg.ExecuteInProcessResult:
            result = job.execute_in_process(
                instance=instance, partition_key=partition_key, asset_selection=keys
            )
            assert result.success
            return result

        master = load_contract().partitions.batch_start_date.isoformat()
        for partition in (master, DAY_1.isoformat(), DAY_2.isoformat()):
            run(partition)
        yield Loaded(url, root, day_1, day_2, run)


def _dump(url: str, table: str, key: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()


def test_every_table_holds_exactly_the_expected_rows(loaded: Loaded, contract: Contract) -> None:
    # Day 2's manifest covers master + batch day 2; day 1's new customers stay in the warehouse.
    new_on_day_1 = loaded.day_1.files[f"input/batch/{DAY_1}/customers.csv"]["defects"][
        "new_customers"
    ]
    with psycopg.connect(loaded.url) as conn:
        for spec in contract.dimensions.values():
            expected = loaded.day_2.tables[spec.table]["expected_rows"]
            if spec.table == "dim_customer":
                expected += new_on_day_1
            (count,) = conn.execute(f"SELECT count(*) FROM {spec.table}").fetchone()
            assert count == expected, spec.table


def test_every_file_reconciles_and_every_reject_has_its_reason(loaded: Loaded) -> None:
    expected_files = {**loaded.day_1.files, **loaded.day_2.files}
    with psycopg.connect(loaded.url) as conn:
        log = conn.execute(
            "SELECT file_path, total_records, valid_records, quarantined, status"
            " FROM pipeline_file_log WHERE superseded_at IS NULL"
        ).fetchall()
        rejects = conn.execute(
            "SELECT source_path, rejection_stage, rejection_rule, rejection_column"
            " FROM quarantine WHERE superseded_at IS NULL"
        ).fetchall()
    assert len(log) == 13 * 3
    for path, total, valid, quarantined, status in log:
        relative = str(Path(path).relative_to(loaded.root))
        expected = expected_files[relative]
        assert status == "success", relative
        assert total == valid + quarantined == expected["rows"], relative
        assert (valid, quarantined) == (
            expected["expected_loaded"],
            expected["expected_quarantined"],
        )
    by_file: dict[str, Counter[str]] = {}
    for path, stage, rule, column in rejects:
        by_file.setdefault(path, Counter())[f"{stage}/{rule}/{column}"] += 1
    for path, expected in expected_files.items():
        if not path.endswith((".csv", ".json")) or "stream" in path:
            continue
        assert dict(by_file.get(path, Counter())) == expected["expected_rejects"], path


def test_day_two_changes_are_visible(loaded: Loaded) -> None:
    changes = loaded.day_2.changes
    with open(loaded.root / "input" / "batch" / str(DAY_2) / "drivers.csv") as handle:
        day_2_drivers = {row["driver_id"]: row for row in csv.DictReader(handle)}
    flipped = changes["drivers"]["is_active"]
    assert flipped
    with psycopg.connect(loaded.url) as conn:
        for driver_id in flipped:
            (active,) = conn.execute(
                "SELECT is_active FROM dim_driver WHERE driver_id = %s", (int(driver_id),)
            ).fetchone()
            assert active == (day_2_drivers[str(driver_id)]["is_active"].lower() == "true")
        changed_emails = changes["customers"]["email"]
        partitions = conn.execute(
            "SELECT DISTINCT _partition_key FROM dim_customer WHERE customer_id = ANY(%s)",
            ([int(i) for i in changed_emails],),
        ).fetchall()
        assert partitions == [(str(DAY_2),)]


def test_replaying_day_one_changes_nothing_and_replays_are_idempotent(
    loaded: Loaded, contract: Contract
) -> None:
    tables = {spec.table: spec.primary_key for spec in contract.dimensions.values()}
    tables |= {"quarantine": "quarantine_id", "pipeline_file_log": "log_id"}
    before = {table: _dump(loaded.url, table, key) for table, key in tables.items()}
    loaded.run(DAY_1.isoformat())  # type: ignore[operator]
    loaded.run(DAY_2.isoformat())  # type: ignore[operator]
    loaded.run(DAY_2.isoformat())  # type: ignore[operator]
    after = {table: _dump(loaded.url, table, key) for table, key in tables.items()}
    for table in tables:
        assert after[table] == before[table], table


def test_no_clear_text_pii_anywhere_in_the_database(loaded: Loaded) -> None:
    clear: set[str] = set()
    for manifest in (loaded.day_1, loaded.day_2):
        for columns in manifest.pii_clear_values.values():
            for values in columns.values():
                clear |= {str(value) for value in values}
    # Also the other spellings a phone may take (without its leading zero).
    clear |= {value.lstrip("0") for value in clear if value.isdigit()}
    assert len(clear) > 100
    found: set[str] = set()
    with psycopg.connect(loaded.url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type IN ('text', 'jsonb', 'character varying')"
        ).fetchall()
        assert ("quarantine", "raw_data", "jsonb") in columns
        for table, column, data_type in columns:
            for (value,) in conn.execute(f'SELECT "{column}" FROM "{table}"'):
                if value is None:
                    continue
                if data_type == "jsonb":
                    cells = [str(v) for v in value.values()] if isinstance(value, dict) else []
                    cells.append(json.dumps(value))
                else:
                    cells = [value]
                found |= {cell for cell in cells if cell in clear}
    assert found == set()
