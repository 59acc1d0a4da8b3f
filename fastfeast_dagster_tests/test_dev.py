"""`fastfeast dev` as a user starts it: files dropped in the folders load with no manual action,
the day's SLA rows and marts follow (a late hour and a late reopen too), the UI's GraphQL API
shows the graph, partitions, checks and sensors the operator relies on, and Ctrl-C leaves no
process behind.

One server for the module (it takes a while to start); the tests run in file order and the last
one stops it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from fastfeast_dagster.assets.partitions import daily_partitions, hourly_partitions
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster_tests.commands import (
    BIN,
    dagster_exports,
    dagster_materialize,
    free_port,
    fresh_environment,
    run_command,
)
from fastfeast_dagster_tests.derived_checks import (
    analyst_mismatches,
    mart_mismatches,
    sla_mismatches,
)
from fastfeast_dagster_tests.sla_hour import IDS, hour_folder, status_event, write_hour

DAY = dt.date(2026, 3, 2)
DAY_KEY = int(DAY.strftime("%Y%m%d"))
HOUR = f"{DAY}-10:00"
REPOSITORY = {"repositoryLocationName": "fastfeast", "repositoryName": "__repository__"}
ACTIVE_RUNS = (
    "{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]})"
    " { ... on Runs { results { runId } } } }"
)


def _wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _responds(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    state: Path
    env: dict[str, str]
    port: int
    url: str
    manifest: Manifest
    family: list[psutil.Process] = field(default_factory=list)

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def query(self, text: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(text).fetchall()

    def idle(self) -> bool:
        return self.graphql(ACTIVE_RUNS)["runsOrError"]["results"] == []


@pytest.fixture(scope="module")
def dev() -> Iterator[Dev]:
    state = Path(tempfile.mkdtemp(prefix="ffdev", dir="/tmp"))
    env = fresh_environment(state)
    port = free_port()
    log = (state / "dev.log").open("w")
    process = subprocess.Popen(
        [BIN / "fastfeast", "dev", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _responds(f"http://127.0.0.1:{port}/server_info"), 180, "the UI")
        manifest = generate(state / "incoming", DAY, hours=[10])
        url = run_command(env, "fastfeast", "db", "url").stdout.strip()
        yield Dev(process, state, env, port, url, manifest)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=150)
        log.close()
        run_command(env, "fastfeast", "db", "stop")


def test_dropped_files_load_with_no_manual_action(dev: Dev) -> None:
    shutil.copytree(dev.state / "incoming", dev.state / "data")
    expected = dev.manifest.tables["fact_order"]["expected_rows"]
    _wait_for(
        lambda: dev.query("SELECT count(*) FROM fact_order") == [(expected,)],
        300,
        f"{expected} orders in the warehouse",
    )
    _wait_for(dev.idle, 300, "the sensor-launched runs to finish")
    events = dev.manifest.tables["fact_ticket_event"]["expected_rows"]
    assert dev.query("SELECT count(*) FROM fact_ticket_event") == [(events,)]
    dev.family = psutil.Process(dev.process.pid).children(recursive=True)
    assert dev.family, "dagster dev runs its webserver and daemon as children"


def _derived_mismatches(dev: Dev) -> list[str]:
    return sla_mismatches(dev.url) + mart_mismatches(dev.url, DAY_KEY)


def test_the_days_sla_rows_and_marts_follow_the_load(dev: Dev) -> None:
    # No schedule involved: the derived-tables sensor's day run, one tick after the loads.
    _wait_for(lambda: not _derived_mismatches(dev), 240, "the SLA rows and the marts of the day")
    assert dev.query("SELECT count(*) FROM ticket_sla") == dev.query(
        "SELECT count(*) FROM fact_ticket"
    )
    _wait_for(dev.idle, 300, "the derived runs to finish")


def test_the_asset_graph_in_the_ui_follows_the_contract(dev: Dev, contract: Contract) -> None:
    nodes = dev.graphql(
        "{ assetNodes { assetKey { path } dependencyKeys { path } groupName kinds description"
        " owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }"
        " partitionDefinition { type } } }"
    )["assetNodes"]
    by_name = {node["assetKey"]["path"][-1]: node for node in nodes}
    tables = {spec.table: spec for spec in contract.sources.values()}
    for table, spec in tables.items():
        node = by_name[table]
        parents = {key["path"][-1] for key in node["dependencyKeys"]}
        # Edges between tables are exactly the contract's foreign keys.
        assert parents & set(tables) == {
            contract.sources[fk.references].table for fk in spec.foreign_keys
        }, table
        assert node["groupName"] == {"dimension": "dimensions", "fact": "facts"}[spec.kind]
        assert set(node["kinds"]) == {"postgres", "pandas"}
        assert node["description"] == spec.description
        assert node["partitionDefinition"]["type"] == "TIME_WINDOW"
    for node in nodes:
        assert node["owners"] == [{"team": "data-platform"}], node["assetKey"]

    def parents(name: str) -> set[str]:
        return {key["path"][-1] for key in by_name[name]["dependencyKeys"]}

    # The audit trail is observed by every load, not an edge from every table.
    assert parents("quarantine") == set()
    assert parents("true_orphan") == {"quarantine"}
    for spec in contract.facts.values():
        assert {"dim_date", "dim_time"} <= parents(spec.table), spec.table
    assert parents("ticket_sla") == {"fact_ticket", "fact_ticket_event", "fact_order", "dim_agent"}
    assert parents("mart_tickets_daily") == {"ticket_sla"}
    assert parents("mart_orders_daily") == {"fact_order"}


def test_the_calendar_assets_show_as_materialized(dev: Dev) -> None:
    for table, rows in (("dim_date", 4383), ("dim_time", 1440)):
        (materialization,) = dev.graphql(
            "query Latest($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {"
            " ... on AssetNode { assetMaterializations(limit: 1) { metadataEntries { label"
            " ... on IntMetadataEntry { intValue } } } } } }",
            path=[table],
        )["assetNodeOrError"]["assetMaterializations"]
        shown = {
            entry["label"]: entry.get("intValue") for entry in materialization["metadataEntries"]
        }
        assert (
            shown["dagster/row_count"] == rows == dev.query(f"SELECT count(*) FROM {table}")[0][0]
        )
    observed = dev.graphql(
        '{ assetNodeOrError(assetKey: {path: ["quarantine"]}) { ... on AssetNode {'
        " assetObservations(limit: 100) { metadataEntries { label"
        " ... on TextMetadataEntry { text } } } } } }"
    )["assetNodeOrError"]["assetObservations"]
    tables = {
        entry["text"]
        for observation in observed
        for entry in observation["metadataEntries"]
        if entry["label"] == "source_table"
    }
    assert {"fact_order", "fact_ticket", "dim_customer"} <= tables


def test_partition_counts_in_the_ui_match_the_file_log(dev: Dev, contract: Contract) -> None:
    loaded = dict(
        dev.query(
            "SELECT asset_key, count(DISTINCT partition_key) FROM pipeline_file_log"
            " WHERE superseded_at IS NULL AND status = 'success' GROUP BY asset_key"
        )
    )
    assert loaded["dim_customer"] == 2, "the master snapshot and the batch day"
    assert loaded["fact_order"] == 1
    partitions = {
        "dimension": len(daily_partitions(contract).get_partition_keys()),
        "fact": len(hourly_partitions(contract).get_partition_keys()),
    }
    for spec in contract.sources.values():
        stats = dev.graphql(
            "query Stats($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {"
            " ... on AssetNode { partitionStats { numMaterialized numPartitions numFailed } } } }",
            path=[spec.table],
        )["assetNodeOrError"]["partitionStats"]
        assert stats["numMaterialized"] == loaded.get(spec.table, 0), spec.table
        assert stats["numFailed"] == 0, spec.table
        # An hour boundary may pass between the two counts.
        assert stats["numPartitions"] - partitions[spec.kind] in (0, 1), spec.table


def test_check_results_in_the_ui_match_the_warehouse(dev: Dev) -> None:
    def latest(table: str, check: str, partition: str) -> dict[str, Any]:
        (execution,) = dev.graphql(
            "query Checks($path: [String!]!, $check: String!, $partition: String) {"
            " assetCheckExecutions(assetKey: {path: $path}, checkName: $check,"
            "  partition: $partition, limit: 1) { status evaluation { partition"
            "  metadataEntries { label ... on FloatMetadataEntry { floatValue } } } } }",
            path=[table],
            check=check,
            partition=partition,
        )["assetCheckExecutions"]
        return execution

    for table, partition in [("dim_customer", str(DAY)), ("fact_order", HOUR)]:
        suite = latest(table, "great_expectations", partition)
        assert suite["status"] == "SUCCEEDED", (table, suite)
        assert suite["evaluation"]["partition"] == partition
        rate = latest(table, "quarantine_rate", partition)
        shown = {
            entry["label"]: entry.get("floatValue")
            for entry in rate["evaluation"]["metadataEntries"]
        }
        ((quarantined, total),) = dev.query(
            "SELECT sum(quarantined), sum(total_records) FROM pipeline_file_log"
            f" WHERE asset_key = '{table}' AND partition_key = '{partition}'"
            " AND superseded_at IS NULL"
        )
        assert shown["quarantine_rate"] == pytest.approx(quarantined / total)
        assert rate["status"] == ("SUCCEEDED" if quarantined / total <= 0.05 else "FAILED")


def test_a_late_hour_and_a_late_reopen_update_the_day(dev: Dev) -> None:
    agents = [
        agent
        for (agent,) in dev.query(
            "SELECT agent_id FROM dim_agent WHERE team_id IS NOT NULL ORDER BY 1 LIMIT 2"
        )
    ]
    # Hour 12 of the same day arrives afterwards, with four tickets of known SLA outcome.
    write_hour(dev.state / "data", agents, hour=12)
    _wait_for(
        lambda: (
            dev.query(
                f"SELECT count(*) FROM ticket_sla WHERE ticket_id = ANY(ARRAY{list(IDS.values())})"
            )
            == [(4,)]
            and not _derived_mismatches(dev)
        ),
        240,
        "the late hour's SLA rows and the day's marts",
    )
    # Fifteen hours later the resolved ticket is reopened; only the event arrives, next day.
    reopen = status_event("met", 7, "Resolved", "Reopened", "2026-03-03 01:10:00", agents[0])
    folder = hour_folder(dev.state / "data", "2026-03-03", 1)
    (folder / "ticket_events.json").write_text(json.dumps([reopen]))
    met = IDS["met"]
    _wait_for(
        lambda: (
            dev.query(f"SELECT reopen_count, status FROM ticket_sla WHERE ticket_id = '{met}'")
            == [(1, "Reopened")]
            and not _derived_mismatches(dev)
        ),
        240,
        "the reopened ticket's SLA row and its day's ticket mart",
    )
    assert analyst_mismatches(dev.url, DAY) == []
    _wait_for(dev.idle, 300, "the derived runs to finish")


def test_a_mart_materialized_from_the_cli_is_charted_in_the_ui(dev: Dev) -> None:
    # As an operator types it, after `eval "$(fastfeast db env)"`: the same instance as the UI.
    env = dev.env | dagster_exports(dev.env)
    result = dagster_materialize(env, ["mart_orders_daily"], str(DAY))
    assert result.returncode == 0, result.stderr[-2000:]
    (materialization,) = dev.graphql(
        '{ assetNodeOrError(assetKey: {path: ["mart_orders_daily"]}) { ... on AssetNode {'
        " assetMaterializations(limit: 1) { partition metadataEntries { label"
        " ... on FloatMetadataEntry { floatValue } } } } } }"
    )["assetNodeOrError"]["assetMaterializations"]
    assert materialization["partition"] == str(DAY)
    # The numeric entries are what the asset's Plots tab draws, one point per partition.
    kpis = {
        entry["label"]: entry["floatValue"]
        for entry in materialization["metadataEntries"]
        if entry["label"].startswith("kpi/")
    }
    ((orders,),) = dev.query("SELECT count(*) FROM fact_order")
    assert kpis["kpi/orders"] == orders
    assert {"kpi/revenue", "kpi/average_order_value", "kpi/cancellation_rate"} <= set(kpis)
    # Every mart materialization is of a day with data: no empty wall-clock today.
    for mart in ("mart_orders_daily", "mart_tickets_daily"):
        built = dev.graphql(
            "query All($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {"
            " ... on AssetNode { assetMaterializations(limit: 100) { partition } } } }",
            path=[mart],
        )["assetNodeOrError"]["assetMaterializations"]
        assert {m["partition"] for m in built} == {str(DAY)}, mart


def test_sensors_and_schedules_run_in_the_ui(dev: Dev) -> None:
    data = dev.graphql(
        "query State($repo: RepositorySelector!) {"
        " sensorsOrError(repositorySelector: $repo) { ... on Sensors { results {"
        "  name sensorState { status } } } }"
        " schedulesOrError(repositorySelector: $repo) { ... on Schedules { results {"
        "  name scheduleState { status } } } } }",
        repo=REPOSITORY,
    )
    sensors = {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}
    assert sensors == {
        "batch_files_sensor": "RUNNING",
        "stream_files_sensor": "RUNNING",
        "orphan_retry_sensor": "RUNNING",
        "derived_tables_sensor": "RUNNING",
        "freshness_checks_sensor": "RUNNING",
        "alert_on_run_failure": "STOPPED",
        "alert_on_check_failure": "STOPPED",
    }
    schedules = data["schedulesOrError"]["results"]
    assert {s["name"]: s["scheduleState"]["status"] for s in schedules} == {
        "true_orphan_promotion": "RUNNING",
    }


def test_ctrl_c_stops_everything(dev: Dev) -> None:
    assert dev.family, "the load test recorded dagster dev's processes"
    dev.process.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
    dev.process.wait(timeout=150)
    alive = [p for p in dev.family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], (alive, (dev.state / "dev.log").read_text()[-3000:])
