"""Loads prove their keys set-wise and skip the per-row FK triggers only where that is safe.

Every other session keeps enforcing the foreign keys, a parent cannot be deleted under a load,
and a role that may not skip the triggers (or a table with triggers of its own) loads the same
rows with the triggers running.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fastfeast_dagster.batch import LoadReport, PartitionFile
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.synthetic import generate
from fastfeast_dagster.validation.prepare import prepare_batch
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.keys import lock_parents
from fastfeast_dagster.warehouse.load import load_batch

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
    return _load_file(url, contract, folder, source, path)


def _load_file(
    url: str, contract: Contract, root: Path, source: str, path: Path, hour: str | None = None
) -> LoadReport:
    """Load one file as the IO manager would: a master snapshot, or a stream hour's file."""
    files = [PartitionFile(path, "stream", hour) if hour else PartitionFile(path, "master", MASTER)]
    batch = prepare_batch(source, files, contract, root, b"k")
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
        lock_parents(cur, contract, "customers")
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


def _wait_until(url: str, query: str, expected: int) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute(query).fetchone() != (expected,):
            assert time.monotonic() < deadline, query
            time.sleep(0.05)


def test_an_orders_replace_waits_for_a_tickets_load_referencing_an_order_it_removes(
    warehouse_url: str, contract: Contract, tmp_path: Path
) -> None:
    """The race where the replace deleted the order under the tickets load, failing it."""
    day = dt.date(2026, 3, 2)
    root = tmp_path / "data"
    generate(root, day, hours=[10])
    with psycopg.connect(warehouse_url) as conn:
        apply_schema(conn, contract)
    for name in contract.load_order():
        spec = contract.sources[name]
        if spec.kind == "dimension":
            _load_file(warehouse_url, contract, root, name, root / "master" / spec.files["master"])
    orders = root / "input" / "stream" / str(day) / "10" / "orders.json"
    _load_file(warehouse_url, contract, root, "orders", orders, f"{day}-10:00")
    with psycopg.connect(warehouse_url) as conn:
        order_id, customer, driver, restaurant = conn.execute(
            "SELECT order_id, customer_id, driver_id, restaurant_id FROM fact_order"
            " ORDER BY order_id LIMIT 1"
        ).fetchone()
        agent, reason, priority, channel = conn.execute(
            "SELECT (SELECT min(agent_id) FROM dim_agent),"
            " (SELECT min(reason_id) FROM dim_reason),"
            " (SELECT min(priority_id) FROM dim_priority),"
            " (SELECT min(channel_id) FROM dim_channel)"
        ).fetchone()
    ticket_id = str(uuid.uuid4())
    tickets = root / "input" / "stream" / str(day) / "11" / "tickets.csv"
    tickets.parent.mkdir(parents=True)
    values = [order_id, customer, driver, restaurant, agent, reason, priority, channel]
    tickets.write_text(
        ",".join(contract.sources["tickets"].columns)
        + "\n"
        + ",".join([ticket_id, *("" if v is None else str(v) for v in values), "Open", ""])
        + ",2026-03-02 11:05:00,,,,\n"
    )
    replaced = tmp_path / "orders.json"
    records = json.loads(orders.read_text())
    replaced.write_text(json.dumps([r for r in records if r["order_id"] != order_id]))
    outcomes: dict[str, object] = {}

    def load(name: str, source: str, path: Path, partition: str) -> None:
        try:
            outcomes[name] = _load_file(warehouse_url, contract, root, source, path, partition)
        except Exception as error:  # reported by the assertions below
            outcomes[name] = error

    waiting = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with psycopg.connect(warehouse_url) as holder:
        # Holds the tickets load after it has proven its keys, before it writes.
        holder.execute("LOCK TABLE fact_ticket IN SHARE MODE")
        tickets_load = threading.Thread(
            target=load, args=("tickets", "tickets", tickets, f"{day}-11:00")
        )
        tickets_load.start()
        _wait_until(warehouse_url, waiting, 1)
        orders_load = threading.Thread(
            target=load, args=("orders", "orders", replaced, f"{day}-10:00")
        )
        orders_load.start()
        _wait_until(warehouse_url, waiting, 2)
    tickets_load.join(60)
    orders_load.join(60)

    assert isinstance(outcomes["tickets"], LoadReport), outcomes["tickets"]
    assert isinstance(outcomes["orders"], LoadReport), outcomes["orders"]
    assert outcomes["tickets"].rows_loaded == 1
    assert outcomes["orders"].removed == 0  # the order is referenced now, so it stays
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute(
            "SELECT t.order_id FROM fact_ticket t JOIN fact_order o USING (order_id)"
        ).fetchall() == [(order_id,)]
