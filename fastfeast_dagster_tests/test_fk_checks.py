"""Loads prove their keys set-wise and skip the per-row FK triggers only where that is safe.

Every other session keeps enforcing the foreign keys, a parent cannot be deleted under a load,
and a role that may not skip the triggers (or a table with triggers of its own) loads the same
rows with the triggers running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.settings import Contract
from fastfeast_dagster.validation.prepare import PartitionFile, prepare_batch
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.load import LoadReport, _key_checks, _lock_parents, load_batch

MASTER = "2026-03-01"
FILES = {
    "cities": "city_id,city_name,country,timezone\n1,Cairo,Egypt,Africa/Cairo\n",
    "regions": "region_id,region_name,city_id,delivery_base_fee\n1,Maadi,1,10\n2,Zamalek,1,12\n",
    "segments": "segment_id,segment_name,discount_pct,priority_support\n1,Regular,0,false\n",
    "customers": (
        "customer_id,full_name,email,phone,region_id,segment_id,signup_date,gender,"
        "created_at,updated_at\n"
        "1,Ann,ann@example.com,01012345678,1,1,2025-01-01,female,"
        "2025-01-01 10:00:00,2025-01-01 10:00:00\n"
        "2,Bob,bob@example.com,01012345679,1,,2025-01-02,male,"
        "2025-01-02 10:00:00,2025-01-02 10:00:00\n"
        "3,Cy,cy@example.com,01012345670,9,1,2025-01-03,male,"
        "2025-01-03 10:00:00,2025-01-03 10:00:00\n"
    ),
}
CUSTOMERS = "SELECT customer_id, email, region_id, segment_id FROM dim_customer ORDER BY 1"


def _load(url: str, contract: Contract, folder: Path, source: str) -> LoadReport:
    path = folder / f"{source}.csv"
    path.write_text(FILES[source])
    batch = prepare_batch(source, [PartitionFile(path, "master", MASTER)], contract, folder, b"k")
    with psycopg.connect(url) as conn:
        return load_batch(
            conn, contract, batch, asset_key=contract.sources[source].table, run_id="test"
        )


@pytest.fixture
def parents(warehouse_url: str, contract: Contract, tmp_path: Path) -> str:
    """A warehouse holding one city, two regions and one segment; its URL."""
    with psycopg.connect(warehouse_url) as conn:
        apply_schema(conn, contract)
    for source in ("cities", "regions", "segments"):
        _load(warehouse_url, contract, tmp_path, source)
    return warehouse_url


@pytest.fixture
def loader_url(parents: str) -> Iterator[str]:
    """The URL of `parents` for a plain role that may read and write the warehouse, no more."""
    with psycopg.connect(parents, autocommit=True) as conn:
        conn.execute("CREATE ROLE loader_test LOGIN")
        database = conn.info.dbname
        conn.execute(f'GRANT ALL ON DATABASE "{database}" TO loader_test')
        conn.execute("GRANT ALL ON SCHEMA public TO loader_test")
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO loader_test")
        conn.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO loader_test")
    yield parents.replace("postgresql://postgres@", "postgresql://loader_test@")
    with psycopg.connect(parents, autocommit=True) as conn:
        # Also revokes grants on the server's shared objects (the parameter), then the role can go.
        conn.execute("DROP OWNED BY loader_test")
        conn.execute("DROP ROLE loader_test")


def test_superuser_load_skips_triggers_and_every_fk_stays_enforced(
    parents: str, contract: Contract, tmp_path: Path
) -> None:
    report = _load(parents, contract, tmp_path, "customers")

    assert report.fk_triggers_skipped
    assert (report.rows_loaded, report.orphans) == (2, 1)  # region 9 does not exist
    with psycopg.connect(parents) as conn:
        assert conn.execute(CUSTOMERS).fetchall()[0][2:] == (1, 1)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("UPDATE dim_customer SET region_id = 9 WHERE customer_id = 1")
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("DELETE FROM dim_region WHERE region_id = 1")


def test_a_role_without_the_privilege_loads_the_same_rows_with_triggers(
    parents: str, loader_url: str, contract: Contract, tmp_path: Path
) -> None:
    report = _load(loader_url, contract, tmp_path, "customers")

    assert not report.fk_triggers_skipped
    assert (report.rows_loaded, report.orphans) == (2, 1)
    with psycopg.connect(parents, autocommit=True) as conn:
        rows = conn.execute(CUSTOMERS).fetchall()
        conn.execute("DELETE FROM dim_customer")
        conn.execute("GRANT SET ON PARAMETER session_replication_role TO loader_test")

    granted = _load(loader_url, contract, tmp_path, "customers")

    assert granted.fk_triggers_skipped
    with psycopg.connect(parents) as conn:
        assert conn.execute(CUSTOMERS).fetchall() == rows


def test_a_table_with_triggers_of_its_own_keeps_them(
    parents: str, contract: Contract, tmp_path: Path
) -> None:
    with psycopg.connect(parents) as conn:
        conn.execute("CREATE TABLE audit (customer_id int)")
        conn.execute(
            "CREATE FUNCTION audit_customer() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO audit VALUES (NEW.customer_id); RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER audit_customer AFTER INSERT ON dim_customer"
            " FOR EACH ROW EXECUTE FUNCTION audit_customer()"
        )

    report = _load(parents, contract, tmp_path, "customers")

    assert not report.fk_triggers_skipped
    with psycopg.connect(parents) as conn:
        assert conn.execute("SELECT customer_id FROM audit ORDER BY 1").fetchall() == [(1,), (2,)]


def test_a_parent_cannot_be_deleted_while_a_load_holds_its_keys(
    parents: str, contract: Contract
) -> None:
    """Region 2 has no customers, so only the load's lock stops its deletion."""
    with psycopg.connect(parents) as loading, loading.cursor() as cur:
        _lock_parents(cur, "public", _key_checks(contract, contract.sources["customers"]))
        with psycopg.connect(parents) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("DELETE FROM dim_region WHERE region_id = 2")
            other.rollback()
            loading.rollback()
            assert other.execute("DELETE FROM dim_region WHERE region_id = 2").rowcount == 1


def test_a_foreign_key_the_contract_does_not_know_keeps_the_triggers(
    parents: str, contract: Contract, tmp_path: Path
) -> None:
    """The orphan stage only proves the contract's keys; one declared by hand stays enforced."""
    with psycopg.connect(parents) as conn:
        conn.execute("CREATE TABLE vip (customer_id int PRIMARY KEY)")
        conn.execute("INSERT INTO vip VALUES (1)")
        conn.execute(
            "ALTER TABLE dim_customer ADD CONSTRAINT fk_vip FOREIGN KEY (customer_id)"
            " REFERENCES vip (customer_id)"
        )

    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # customer 2 is not a vip
        _load(parents, contract, tmp_path, "customers")
