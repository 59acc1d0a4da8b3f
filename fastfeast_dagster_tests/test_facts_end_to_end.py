"""A generated day (master, batch, 24 hours) through the sensors and ingest, checked."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.tags import SCHEDULED_EXECUTION_TIME_TAG

from fastfeast_dagster.assets.sla import day_of_key
from fastfeast_dagster.contract import Contract, load_contract
from fastfeast_dagster.ingest import CURSOR_KEY_PREFIX, IngestSummary, ingest
from fastfeast_dagster.sensors.derived import DERIVED_SENSOR
from fastfeast_dagster.sensors.folders import FOLDER_SENSOR_NAMES, Cursor
from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database
from fastfeast_dagster.warehouse.orphans import promote_true_orphans

DAY = dt.date(2026, 3, 2)
FACTS = ["fact_order", "fact_ticket", "fact_ticket_event"]


@dataclass
class Day:
    url: str
    root: Path
    manifest: Manifest
    instance: dg.DagsterInstance
    summaries: list[IngestSummary]

    def materialize(
        self, tables: list[str], partition_key: str | None
    ) -> dg.ExecuteInProcessResult:
        from fastfeast_dagster.definitions import defs

        keys = [dg.AssetKey(table) for table in tables]
        job = defs.resolve_implicit_job_def_def_for_assets(keys)
        assert job is not None
        result = job.execute_in_process(
            instance=self.instance, partition_key=partition_key, asset_selection=keys
        )
        assert result.success
        return result


@pytest.fixture(scope="module")
def day(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    """The day's files delivered through the sensors, the late hour after all the others."""
    from fastfeast_dagster.definitions import defs

    root = tmp_path_factory.mktemp("data")
    create_database(pg_server.url("postgres"), "facts_e2e")
    url = pg_server.url("facts_e2e")
    manifest = generate(root, DAY)
    late_folder = root / Path(manifest.late_files[0]).parent
    held_back = root.parent / "held_back"
    shutil.move(late_folder, held_back)
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("FASTFEAST_DATA_DIR", str(root))
        patch.setenv("FASTFEAST_DATABASE_URL", url)
        patch.setenv("FASTFEAST_PII_KEY", "e2e-key")
        first = ingest(defs, instance, log_level="WARNING")
        shutil.move(held_back, late_folder)
        second = ingest(defs, instance, log_level="WARNING")
        yield Day(url, root, manifest, instance, [first, second])


def _query(url: str, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params or None).fetchall()  # type: ignore[arg-type]


def _loads(summary: IngestSummary) -> list[str | None]:
    folders = set(FOLDER_SENSOR_NAMES.values())
    return [run.partition_key for run in summary.runs if run.sensor in folders]


def test_the_sensors_ran_every_partition_once_and_the_late_hour_last(day: Day) -> None:
    first, second = day.summaries
    assert not first.failed and not second.failed
    first_keys = _loads(first)
    assert len(first_keys) == len(set(first_keys)) == 2 + 23  # master, the day, 23 hours
    late_hour = Path(day.manifest.late_files[0]).parent.name
    assert _loads(second) == [f"{DAY}-{late_hour}:00"]


def test_ingest_leaves_the_sla_rows_marts_and_promotions_done(day: Day) -> None:
    first, second = day.summaries
    derived = [
        [(run.partition_key, run.assets) for run in summary.runs if run.sensor == DERIVED_SENSOR]
        for summary in day.summaries
    ]
    day_run = (str(DAY), ["ticket_sla", "mart_orders_daily", "mart_tickets_daily"])
    calendar = (None, ["dim_date", "dim_time"])
    # A ticket of a late-evening order is created after midnight: its day's mart follows.
    ticket_days = {key for (key,) in _query(day.url, "SELECT DISTINCT date_key FROM fact_ticket")}
    later = sorted({day_of_key(key) for key in ticket_days} - {str(DAY)})
    assert later == [str(DAY + dt.timedelta(days=1))]
    # All 23 hours in one run of their day; the late hour brought the day up to date again.
    assert derived[0] == [calendar, day_run, *((d, ["mart_tickets_daily"]) for d in later)]
    assert derived[1][0] == day_run
    assert all(run == (run[0], ["mart_tickets_daily"]) for run in derived[1][1:])
    assert _query(day.url, "SELECT count(*) FROM ticket_sla") == _query(
        day.url, "SELECT count(*) FROM fact_ticket"
    )
    key = int(str(DAY).replace("-", ""))
    assert _query(day.url, "SELECT DISTINCT date_key FROM mart_orders_daily") == [(key,)]
    in_mart = _query(day.url, "SELECT DISTINCT date_key FROM mart_tickets_daily")
    assert {key for (key,) in in_mart} == ticket_days
    # The orphan promotion's latest tick, once (a second call within the hour skips it).
    promotions = [run for run in first.runs + second.runs if run.sensor == "true_orphan_promotion"]
    assert [run.success for run in first.runs if run in promotions] == [True]
    ticks = {
        day.instance.get_run_by_id(run.run_id).tags[SCHEDULED_EXECUTION_TIME_TAG]
        for run in promotions
    }
    assert len(ticks) == len(promotions)


def test_ingest_keeps_its_cursors_so_a_quiet_call_requests_nothing(day: Day) -> None:
    from fastfeast_dagster.definitions import defs

    names = list(FOLDER_SENSOR_NAMES.values())
    stored = day.instance.daemon_cursor_storage.get_cursor_values(
        {CURSOR_KEY_PREFIX + name for name in names}
    )
    for name in names:
        cursor = stored[CURSOR_KEY_PREFIX + name]
        assert Cursor.loads(cursor).watermark_ns > 0, name
        with dg.build_sensor_context(
            instance=day.instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            tick = defs.resolve_sensor_def(name).evaluate_tick(context)
        assert tick.run_requests == [], name


def test_fact_tables_hold_exactly_the_expected_rows(day: Day) -> None:
    for table in FACTS:
        (count,) = _query(day.url, f"SELECT count(*) FROM {table}")[0]
        assert count == day.manifest.tables[table]["expected_rows"], table


def test_every_stream_file_reconciles_with_its_rejects(day: Day) -> None:
    log = _query(
        day.url,
        "SELECT file_path, total_records, valid_records, quarantined, orphan_count, status"
        " FROM pipeline_file_log WHERE superseded_at IS NULL AND file_type = 'stream'",
    )
    assert len(log) == 24 * 3
    rejects: dict[str, Counter[str]] = {}
    for path, stage, rule, column in _query(
        day.url,
        "SELECT source_path, rejection_stage, rejection_rule, rejection_column FROM quarantine"
        " WHERE superseded_at IS NULL AND resolved_at IS NULL"
        " AND source_path LIKE 'input/stream/%'",
    ):
        rejects.setdefault(path, Counter())[f"{stage}/{rule}/{column}"] += 1
    for path, total, valid, quarantined, orphans, status in log:
        relative = str(Path(path).relative_to(day.root))
        expected = day.manifest.files[relative]
        assert status == "success"
        assert total == valid + quarantined == expected["rows"], relative
        assert (valid, quarantined) == (
            expected["expected_loaded"],
            expected["expected_quarantined"],
        )
        assert dict(rejects.get(relative, Counter())) == expected["expected_rejects"], relative
        expected_orphans = sum(
            n for key, n in expected["expected_rejects"].items() if "orphan/" in key
        )
        assert orphans == expected_orphans


def test_cancelled_orders_and_open_tickets_load(day: Day) -> None:
    (cancelled,) = _query(
        day.url,
        "SELECT count(*) FROM fact_order WHERE order_status IN ('Cancelled', 'Refunded')"
        " AND delivered_at IS NULL",
    )[0]
    (still_open,) = _query(
        day.url,
        "SELECT count(*) FROM fact_ticket WHERE status IN ('Open', 'InProgress')"
        " AND resolved_at IS NULL",
    )[0]
    assert cancelled > 0
    assert still_open > 0


def test_no_null_token_is_stored_as_text(day: Day, contract: Contract) -> None:
    tokens = {token.lower() for token in contract.null_tokens} | {"nan", "none"}
    for spec in contract.sources.values():
        for name, column in spec.columns.items():
            if column.type != "text":
                continue
            rows = _query(
                day.url,
                f"SELECT count(*) FROM {spec.table} WHERE lower(btrim({name})) = ANY(%s)",
                list(tokens),
            )
            assert rows == [(0,)], f"{spec.table}.{name}"


def test_updates_win_and_replaying_an_earlier_hour_does_not_undo_them(day: Day) -> None:
    updates = day.manifest.order_updates
    assert updates
    statuses = dict(
        _query(
            day.url,
            "SELECT order_id, order_status FROM fact_order WHERE order_id = ANY(%s)",
            [update["order_id"] for update in updates],
        )
    )
    assert statuses == {update["order_id"]: update["final_status"] for update in updates}
    tickets = {
        update["ticket_id"]: update["final_status"] for update in day.manifest.ticket_updates
    }
    assert (
        dict(
            _query(
                day.url,
                "SELECT ticket_id, status FROM fact_ticket WHERE ticket_id = ANY(%s)",
                list(tickets),
            )
        )
        == tickets
    )

    dumps = {
        "fact_order": "order_id",
        "fact_ticket": "ticket_id",
        "fact_ticket_event": "event_id",
        "quarantine": "quarantine_id",
        "pipeline_file_log": "log_id",
    }
    before = {t: _query(day.url, f"SELECT * FROM {t} ORDER BY {k}") for t, k in dumps.items()}
    earlier = f"{DAY}-{updates[0]['first_hour']:02d}:00"
    day.materialize(FACTS, earlier)
    day.materialize(FACTS, earlier)
    after = {t: _query(day.url, f"SELECT * FROM {t} ORDER BY {k}") for t, k in dumps.items()}
    for table in dumps:
        assert after[table] == before[table], table


def test_kpi_marts_match_the_facts_and_rebuild_idempotently(day: Day) -> None:
    marts = ["mart_orders_daily", "mart_tickets_daily"]
    columns = "date_key, region_id, orders, delivered, revenue, cancellation_rate"
    built = _query(day.url, f"SELECT {columns} FROM mart_orders_daily ORDER BY region_id")
    # What ingest built is what a rebuild gives.
    result = day.materialize(marts, str(DAY))
    assert _query(day.url, f"SELECT {columns} FROM mart_orders_daily ORDER BY region_id") == built
    kpis = {
        event.asset_key.to_user_string(): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    key = int(str(DAY).replace("-", ""))
    orders = _query(
        day.url,
        "SELECT region_id, order_status, total_amount::float8 FROM fact_order WHERE date_key = %s",
        key,
    )
    mart = {
        region: (count, float(revenue), float(cancelled or 0))
        for region, count, revenue, cancelled in _query(
            day.url,
            "SELECT region_id, orders, revenue, cancellation_rate FROM mart_orders_daily"
            " WHERE date_key = %s",
            key,
        )
    }
    by_region: dict[object, list[tuple[str, float]]] = {}
    for region, status, total in orders:
        by_region.setdefault(region, []).append((status, total))
    assert set(mart) == set(by_region)
    for region, rows in by_region.items():
        delivered = sum(total or 0 for status, total in rows if status == "Delivered")
        cancelled = sum(status == "Cancelled" for status, _ in rows) / len(rows)
        assert mart[region][0] == len(rows)
        assert mart[region][1] == pytest.approx(delivered, abs=0.01)
        assert mart[region][2] == pytest.approx(cancelled, abs=1e-4)
    (tickets,) = _query(
        day.url, "SELECT sum(tickets) FROM mart_tickets_daily WHERE date_key = %s", key
    )[0]
    (in_view,) = _query(day.url, "SELECT count(*) FROM ticket_sla WHERE date_key = %s", key)[0]
    assert tickets == in_view > 0
    # The day's headline numbers the UI charts across partitions.
    headline = kpis["mart_orders_daily"]
    assert headline["kpi/orders"].value == len(orders)
    delivered_revenue = sum(total or 0 for _, status, total in orders if status == "Delivered")
    assert headline["kpi/revenue"].value == pytest.approx(delivered_revenue, abs=0.01)
    cancelled = sum(status == "Cancelled" for _, status, _ in orders) / len(orders)
    assert headline["kpi/cancellation_rate"].value == pytest.approx(cancelled, abs=1e-4)
    assert kpis["mart_tickets_daily"]["kpi/tickets"].value == in_view
    # A rebuild with nothing new rewrites no row: refreshed_at stays, so a replay changes no byte.
    stamped = f"SELECT {columns}, refreshed_at FROM mart_orders_daily ORDER BY region_id"
    before = _query(day.url, stamped)
    day.materialize(marts, str(DAY))
    assert _query(day.url, stamped) == before
    # One order moves to Cancelled: only its region's row is rewritten.
    ((order, region),) = _query(
        day.url,
        "SELECT order_id, region_id FROM fact_order WHERE date_key = %s"
        " AND order_status = 'Delivered' ORDER BY order_id LIMIT 1",
        key,
    )
    update = "UPDATE fact_order SET order_status = %s WHERE order_id = %s RETURNING order_id"
    _query(day.url, update, "Cancelled", order)
    try:
        day.materialize(["mart_orders_daily"], str(DAY))
        after = _query(day.url, stamped)
    finally:
        _query(day.url, update, "Delivered", order)
        day.materialize(["mart_orders_daily"], str(DAY))
    rewritten = {new[1] for old, new in zip(before, after, strict=True) if old != new}
    assert rewritten == {region}


def test_derived_keys_point_into_the_calendar(day: Day) -> None:
    rows = _query(
        day.url,
        "SELECT count(*) FILTER (WHERE date_key = to_char(order_created_at, 'YYYYMMDD')::int"
        " AND time_key = to_char(order_created_at, 'HH24MI')::int), count(*) FROM fact_order",
    )
    matching, total = rows[0]
    assert matching == total > 0


def test_orphans_resolve_when_their_parents_arrive_and_the_rest_become_true_orphans(
    pipeline_env: str, data_dir: Path
) -> None:
    from fastfeast_dagster.definitions import defs

    contract = load_contract()
    url = pipeline_env
    manifest = generate(data_dir, DAY, hours=[10, 11])
    late = manifest.late_parent_orders
    assert late
    with dg.instance_for_test() as instance:
        ingest(defs, instance, log_level="WARNING")
        waiting = _query(
            url,
            "SELECT raw_data ->> 'order_id', rejection_column FROM quarantine"
            " WHERE rejection_stage = 'orphan' AND resolved_at IS NULL AND superseded_at IS NULL"
            " AND raw_data ->> 'order_id' = ANY(%s)",
            late,
        )
        assert sorted(waiting) == sorted((order, "customer_id") for order in late)

        # The next day's batch brings the customers; the retry sensor re-runs the hours.
        generate(data_dir, DAY + dt.timedelta(days=1), hours=[])
        summary = ingest(defs, instance, log_level="WARNING")
        retried = [run for run in summary.runs if run.sensor == "orphan_retry_sensor"]
        assert retried and all(run.success for run in retried)

        loaded = _query(url, "SELECT order_id FROM fact_order WHERE order_id = ANY(%s)", late)
        assert sorted(row[0] for row in loaded) == sorted(late)
        resolved = _query(
            url,
            "SELECT count(*) FROM quarantine WHERE resolved_at IS NOT NULL"
            " AND raw_data ->> 'order_id' = ANY(%s)",
            late,
        )
        assert resolved == [(len(late),)]

        time.sleep(1.1)
        with psycopg.connect(url) as conn:
            promoted, waiting_after = promote_true_orphans(conn, contract, window_hours=1 / 3600)
            again, _ = promote_true_orphans(conn, contract, window_hours=1 / 3600)
        open_orphans = _query(
            url,
            "SELECT count(*) FROM quarantine WHERE rejection_stage = 'orphan'"
            " AND resolved_at IS NULL AND superseded_at IS NULL",
        )[0][0]
        assert promoted == open_orphans > 0
        assert (again, waiting_after) == (0, 0)
        mismatched = _query(
            url,
            "SELECT count(*) FROM true_orphan t JOIN quarantine q USING (quarantine_id)"
            " WHERE t.first_seen_at <> q.quarantined_at OR t.unresolved_fk <> q.rejection_column",
        )
        assert mismatched == [(0,)]

        # A re-delivery of an hour, rows in another order: its orphans are quarantined again
        # under new source rows, but a true orphan is a record, promoted once.
        orders = data_dir / "input" / "stream" / str(DAY) / "10" / "orders.json"
        records = json.loads(orders.read_text())
        orders.write_text(json.dumps(records[::-1]))
        time.sleep(contract.sensors.settle_seconds + 0.5)
        redelivered = ingest(defs, instance, log_level="WARNING")
        assert _loads(redelivered) == [f"{DAY}-10:00"]
        time.sleep(1.1)
        with psycopg.connect(url) as conn:
            assert promote_true_orphans(conn, contract, window_hours=1 / 3600) == (0, 0)
        assert _query(url, "SELECT count(*) FROM true_orphan") == [(promoted,)]


def test_a_range_of_hours_reloads_in_one_run_and_one_transaction(
    pipeline_env: str, data_dir: Path
) -> None:
    from fastfeast_dagster.definitions import defs

    contract = load_contract()
    url = pipeline_env
    manifest = generate(data_dir, DAY, hours=[10, 11, 12])
    dimensions = [dg.AssetKey(spec.table) for spec in contract.dimensions.values()]
    facts = [dg.AssetKey(table) for table in FACTS]
    with dg.instance_for_test() as instance:
        for partition in (contract.partitions.batch_start_date.isoformat(), str(DAY)):
            job = defs.resolve_implicit_job_def_def_for_assets(dimensions)
            assert job.execute_in_process(
                instance=instance, partition_key=partition, asset_selection=dimensions
            ).success
        # What a UI backfill or `--partition-range` launches under BackfillPolicy.single_run().
        job = defs.resolve_implicit_job_def_def_for_assets(facts)
        range_tags = {
            "dagster/asset_partition_range_start": f"{DAY}-10:00",
            "dagster/asset_partition_range_end": f"{DAY}-12:00",
        }
        dumps = []
        for _ in range(2):
            result = job.execute_in_process(
                instance=instance, asset_selection=facts, tags=range_tags
            )
            assert result.success
            dumps.append(_query(url, "SELECT * FROM fact_order ORDER BY order_id"))
        materialized = {
            (event.asset_key.to_user_string(), event.partition)
            for event in result.get_asset_materialization_events()
        }
    assert materialized == {(t, f"{DAY}-{h}:00") for t in FACTS for h in (10, 11, 12)}
    assert dumps[0] == dumps[1]
    assert len(dumps[0]) == manifest.tables["fact_order"]["expected_rows"]
    runs = _query(
        url, "SELECT count(DISTINCT run_id) FROM pipeline_file_log WHERE file_type = 'stream'"
    )
    assert runs == [(1,)]  # the replay changed nothing, so its file-log rows are the first run's
