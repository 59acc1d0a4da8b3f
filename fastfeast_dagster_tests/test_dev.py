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
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg
import pytest
from playwright.sync_api import expect

from fastfeast_dagster.assets.partitions import daily_partitions, hourly_partitions
from fastfeast_dagster.assets.sla import day_of_key
from fastfeast_dagster.checks.rates import rate_evidence
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.logs import LOG_FILE
from fastfeast_dagster.synthetic import Manifest, generate
from fastfeast_dagster_tests.browser import UI, open_ui, settle
from fastfeast_dagster_tests.commands import (
    BIN,
    RUN_LINE,
    dagster_exports,
    dagster_materialize,
    dagster_run_ids,
    free_port,
    fresh_environment,
    holds_dagster_storage,
    run_command,
)
from fastfeast_dagster_tests.derived_checks import (
    analyst_mismatches,
    mart_mismatches,
    sla_mismatches,
)
from fastfeast_dagster_tests.outcomes import (
    assert_files_load_as_expected,
    assert_orphans_reference_no_delivered_key,
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
        # A whole day, the defect catalogue included, so that the daemon's ordering of a day's
        # dimensions and its 24 hours of facts is what is tested.
        manifest = generate(state / "incoming", DAY)
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


def test_the_daemon_loads_the_day_exactly_as_ingest_does(dev: Dev, contract: Contract) -> None:
    # Hours wait for their day's dimensions, so no orphan was ever written for a member that
    # was delivered: not even one later resolved by a retry.
    root = dev.state / "data"
    assert_files_load_as_expected(dev.url, root, dev.manifest)
    assert_orphans_reference_no_delivered_key(dev.url, root, contract)


def _derived_mismatches(dev: Dev) -> list[str]:
    return sla_mismatches(dev.url) + mart_mismatches(dev.url, DAY_KEY)


def test_the_days_sla_rows_and_marts_follow_the_load(dev: Dev) -> None:
    # No schedule involved: the derived-tables sensor's day run, one tick after the loads.
    _wait_for(lambda: not _derived_mismatches(dev), 240, "the SLA rows and the marts of the day")
    assert dev.query("SELECT count(*) FROM ticket_sla") == dev.query(
        "SELECT count(*) FROM fact_ticket"
    )
    _wait_for(dev.idle, 300, "the derived runs to finish")


FINISHED_RUNS = (
    "{ runsOrError(filter: {statuses: [SUCCESS, FAILURE, CANCELED]})"
    " { ... on Runs { results { runId } } } }"
)


def _terminal(dev: Dev) -> list[str]:
    return (dev.state / "dev.log").read_text().splitlines()


def test_the_terminal_shows_a_line_per_run_and_nothing_else(dev: Dev) -> None:
    finished = {run["runId"][:8] for run in dev.graphql(FINISHED_RUNS)["runsOrError"]["results"]}
    assert len(finished) >= 26, "a day: the master, the batch day and 24 hours at least"

    def printed() -> list[str]:
        return [m["run"] for line in _terminal(dev) if (m := RUN_LINE.match(line))]

    _wait_for(lambda: finished <= set(printed()), 30, "a line for every finished run")
    lines = _terminal(dev)
    root = dev.state / "data"
    assert lines[:3] == [
        f"watching {root}/master, {root}/input/batch and {root}/input/stream",
        f"log: {dev.state / LOG_FILE} (everything, as JSON); one line per run here, --verbose"
        " for Dagster's own output",
        f"Dagster UI: http://127.0.0.1:{dev.port}  (Ctrl-C stops everything)",
    ]
    runs = [m for line in lines[3:] if (m := RUN_LINE.match(line))]
    assert len(printed()) == len(set(printed())), "each run once"
    assert len(lines) - 3 <= 2 * len(runs), lines
    assert {m["outcome"] for m in runs} == {"ok"}
    # What a run's line says it loaded is what its loads committed.
    for match in (m for m in runs if m["loaded"]):
        ((committed,),) = dev.query(
            f"SELECT sum(valid_records) FROM pipeline_file_log WHERE run_id LIKE '{match['run']}%'"
        )
        assert int(match["loaded"].replace(",", "")) == committed, match.group(0)


def test_the_log_file_keeps_everything_as_json_and_no_notice_or_pii(dev: Dev) -> None:
    text = (dev.state / LOG_FILE).read_text()
    records = [json.loads(line) for line in text.splitlines()]
    loggers = {record.get("logger") for record in records}
    # The daemon's own records, the runs' Dagster events and the project's loggers.
    assert {"dagster.daemon.SensorDaemon", "dagster", "fastfeast_dagster.warehouse.load"} <= loggers
    # The pinned APIs' notices are silenced in the code servers and run workers too.
    assert "is currently in beta" not in text
    assert "is currently in preview" not in text
    clear = {
        str(value)
        for columns in dev.manifest.pii_clear_values.values()
        for values in columns.values()
        for value in values
    }
    assert clear and not [value for value in clear if value in text]


def test_a_shell_with_the_exports_sees_the_daemons_runs(dev: Dev, contract: Contract) -> None:
    # `eval "$(fastfeast db env)"`, then `fastfeast ingest`: the same instance as the daemon, so
    # nothing is loaded twice, and Dagster's storage stays out of the warehouse database.
    exported = dev.env | dagster_exports(dev.env)
    result = run_command(exported, "fastfeast", "ingest")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    # It loads no file again; at most a tick the daemon has not reached yet (an orphan promotion,
    # a ticket mart whose due time just passed) may run.
    runs = [m for line in result.stdout.splitlines() if (m := RUN_LINE.match(line))]
    sources = {spec.table for spec in contract.sources.values()}
    assert not [m for m in runs if set(m["assets"].split(", ")) & sources], result.stdout
    daemon_runs = {run["runId"] for run in dev.graphql(FINISHED_RUNS)["runsOrError"]["results"]}
    assert daemon_runs <= dagster_run_ids(dev.url)
    loads = {run for (run,) in dev.query("SELECT DISTINCT run_id FROM pipeline_file_log")}
    assert loads <= daemon_runs
    assert not holds_dagster_storage(dev.url)


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


def test_the_facts_show_their_freshness_policy_in_the_ui(dev: Dev, contract: Contract) -> None:
    # The daemon evaluates it; a fact hour just loaded, so every fact is fresh.
    for spec in contract.facts.values():
        node = dev.graphql(
            "query Fresh($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {"
            " ... on AssetNode { freshnessStatusInfo { freshnessStatus }"
            " internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy {"
            " failWindowSeconds warnWindowSeconds } } } } }",
            path=[spec.table],
        )["assetNodeOrError"]
        assert node["internalFreshnessPolicy"] == {
            "failWindowSeconds": contract.sensors.freshness_fail_minutes * 60,
            "warnWindowSeconds": contract.sensors.freshness_lag_minutes * 60,
        }
        assert node["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY", spec.table


def test_partition_counts_in_the_ui_match_the_file_log(dev: Dev, contract: Contract) -> None:
    loaded = dict(
        dev.query(
            "SELECT asset_key, count(DISTINCT partition_key) FROM pipeline_file_log"
            " WHERE superseded_at IS NULL AND status = 'success' GROUP BY asset_key"
        )
    )
    assert loaded["dim_customer"] == 2, "the master snapshot and the batch day"
    assert loaded["fact_order"] == 24
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


def test_check_results_in_the_ui_match_the_warehouse(dev: Dev, contract: Contract) -> None:
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
        evidence = rate_evidence(quarantined, total, contract.quarantine.confidence)
        assert shown["quarantine_rate_at_least"] == pytest.approx(evidence.lower_bound)
        failed = evidence.above(contract.quarantine.warn_rate)
        assert rate["status"] == ("FAILED" if failed else "SUCCEEDED")


RATE_CHECKS = {"quarantine_rate": "quarantined", "repair_rate": "repaired"}


def test_the_rate_checks_read_the_same_in_the_checks_list_and_their_latest_execution(
    dev: Dev, contract: Contract
) -> None:
    # The Checks tab lists a partitioned check failed when any partition's latest execution
    # failed, and shows one execution beside it: on a generated day every rate is within the
    # contract at its confidence, so both must say passed, for every partition the file log has.
    logged = dev.query(
        "SELECT asset_key, partition_key, sum(total_records)::int, sum(quarantined)::int,"
        " sum(repaired)::int FROM pipeline_file_log WHERE superseded_at IS NULL GROUP BY 1, 2"
    )
    for table, partition, total, quarantined, repaired in logged:
        counts = {"quarantine_rate": quarantined, "repair_rate": repaired}
        for check, limits in (
            ("quarantine_rate", contract.quarantine),
            ("repair_rate", contract.repair),
        ):
            evidence = rate_evidence(counts[check], total, limits.confidence)
            assert not evidence.above(limits.warn_rate), (table, partition, check, evidence)
    for spec in contract.sources.values():
        checks = dev.graphql(
            "query Checks($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {"
            " ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name"
            "  executionForLatestMaterialization { status }"
            "  partitionStatuses { ... on AssetCheckTimePartitionStatuses { ranges { status } } }"
            " } } } } } }",
            path=[spec.table],
        )["assetNodeOrError"]["assetChecksOrError"]["checks"]
        for check in checks:
            if check["name"] not in RATE_CHECKS:
                continue
            ranges = {r["status"] for r in check["partitionStatuses"]["ranges"]}
            assert ranges <= {"SUCCEEDED"}, (spec.table, check)
            if ranges:
                assert check["executionForLatestMaterialization"]["status"] == "SUCCEEDED"


def test_every_check_evaluation_judges_the_materialization_its_run_committed(
    dev: Dev, contract: Contract
) -> None:
    # Evaluated after the load committed, on that load: never on an earlier materialization.
    for spec in contract.sources.values():
        for check in ("great_expectations", *RATE_CHECKS):
            executions = dev.graphql(
                "query History($path: [String!]!, $check: String!) {"
                " assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: 200) {"
                "  runId evaluation { timestamp targetMaterialization { runId timestamp } } } }",
                path=[spec.table],
                check=check,
            )["assetCheckExecutions"]
            assert executions, (spec.table, check)
            for execution in executions:
                evaluation = execution["evaluation"]
                target = evaluation["targetMaterialization"]
                assert target["runId"] == execution["runId"], (spec.table, check)
                assert evaluation["timestamp"] >= target["timestamp"], (spec.table, check)


def test_a_late_hour_and_a_late_reopen_update_the_day(dev: Dev) -> None:
    agents = [
        agent
        for (agent,) in dev.query(
            "SELECT agent_id FROM dim_agent WHERE team_id IS NOT NULL ORDER BY 1 LIMIT 2"
        )
    ]
    # Hour 12 of the same day is delivered again, later, with four more tickets of known SLA
    # outcome (and their orders and events) than its first delivery had.
    write_hour(dev.state / "data", agents, hour=12, append=True)
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
    # Dagster plots them by partition only for the newest 120 days before now; the mart's own
    # chart shows the days it holds (assets/mart_chart.py), in the browser test below.
    entries = dev.graphql(
        '{ assetNodeOrError(assetKey: {path: ["mart_orders_daily"]}) { ... on AssetNode {'
        " assetMaterializations(limit: 1) { metadataEntries { label"
        " ... on MarkdownMetadataEntry { mdStr } } } } } }"
    )["assetNodeOrError"]["assetMaterializations"][0]["metadataEntries"]
    (chart,) = [entry["mdStr"] for entry in entries if entry["label"] == "kpi_chart"]
    assert f"| {DAY} | {orders:,} |" in chart
    # Every mart materialization is of a day with data (tickets of late-evening orders are
    # created the next day): no empty wall-clock today.
    for mart, facts in (("mart_orders_daily", "fact_order"), ("mart_tickets_daily", "fact_ticket")):
        built = dev.graphql(
            "query All($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {"
            " ... on AssetNode { assetMaterializations(limit: 100) { partition } } } }",
            path=[mart],
        )["assetNodeOrError"]["assetMaterializations"]
        days = {day_of_key(key) for (key,) in dev.query(f"SELECT DISTINCT date_key FROM {facts}")}
        assert {m["partition"] for m in built} == days, mart


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
        "run_retry_sensor": "RUNNING",
        "derived_tables_sensor": "RUNNING",
        "alert_on_run_failure": "STOPPED",
        "alert_on_check_failure": "STOPPED",
    }
    schedules = data["schedulesOrError"]["results"]
    assert {s["name"]: s["scheduleState"]["status"] for s in schedules} == {
        "true_orphan_promotion": "RUNNING",
    }


# The real UI in Chromium, on the same server and data as the GraphQL tests above; these run
# after them (the last one launches a run) and before the Ctrl-C test stops the server.


@pytest.fixture(scope="module")
def ui(dev: Dev) -> Iterator[UI]:
    with open_ui(f"http://127.0.0.1:{dev.port}") as ui:
        yield ui


def _loaded_hours(dev: Dev) -> dict[str, int]:
    """fact_order's loaded hours and their rows, from the file log."""
    return dict(
        dev.query(
            "SELECT partition_key, sum(valid_records)::int FROM pipeline_file_log"
            " WHERE asset_key = 'fact_order' AND status = 'success' AND superseded_at IS NULL"
            " GROUP BY partition_key ORDER BY partition_key"
        )
    )


def test_the_ui_lineage_draws_every_asset_group(dev: Dev, ui: UI) -> None:
    nodes = dev.graphql("{ assetNodes { groupName } }")["assetNodes"]
    groups = Counter(node["groupName"] for node in nodes)
    assert set(groups) == {"dimensions", "facts", "calendar", "analytics", "audit"}
    with ui.view("01-global-lineage", "/asset-groups") as page:
        graph = page.locator("svg foreignObject")  # the graph's nodes; the sidebar lists names too
        for group, count in groups.items():
            # A collapsed group is drawn as its name and its assets counted by status.
            node = graph.filter(has=page.get_by_text(group, exact=True))
            expect(node).to_have_count(1)
            counts = node.get_by_text(re.compile(r"^\d+$"))
            expect(counts.first).to_be_visible()
            assert sum(map(int, counts.all_text_contents())) == count, group


def test_the_ui_shows_the_loaded_hours_materialized(dev: Dev, ui: UI) -> None:
    hours = _loaded_hours(dev)
    assert len(hours) == 24, "the load test loaded a day of orders"
    # The first and the last hour: every one's status is counted in the filter labels.
    sample = {hour: hours[hour] for hour in (min(hours), max(hours))}
    for index, (hour, rows) in enumerate(sample.items()):
        path = f"/assets/fact_order?view=partitions&partition={quote(hour)}"
        with ui.view(f"02-fact_order-partitions-{index}", path) as page:
            # The status filters' labels count the partitions (their checkboxes are hidden).
            for label in (f"Materialized ({len(hours)})", "Failed (0)"):
                expect(page.get_by_text(label, exact=True)).to_be_visible()
            # The selected partition's panel: its key with its status tag (the innermost
            # element holding both; the list shows the key too), the rows it loaded.
            header = (
                page.locator("div")
                .filter(has=page.get_by_title(hour, exact=True))
                .filter(has=page.get_by_text("Materialized", exact=True))
                .last
            )
            expect(header).to_have_text(re.compile(rf"^({re.escape(hour)})+Materialized$"))
            expect(page.get_by_role("row", name=f"rows_loaded {rows}", exact=True)).to_be_visible()


def test_the_ui_shows_the_great_expectations_check_passed(dev: Dev, ui: UI) -> None:
    hours = _loaded_hours(dev)
    path = "/assets/fact_order?view=checks&checkDetail=great_expectations"
    with ui.view("03-fact_order-check-partitions", path) as page:
        # The checks list (first on the page): the suite's latest result under its name.
        item = page.get_by_title("great_expectations", exact=True).first.locator("xpath=..")
        expect(item).to_have_text(re.compile(r"Succeeded$"))
        # Its latest execution: passed, on the hour loaded last (the late hour re-delivered by
        # the test above, not the day's latest), no expectation failed.
        ((latest,),) = dev.query(
            "SELECT partition_key FROM pipeline_file_log WHERE asset_key = 'fact_order'"
            " AND superseded_at IS NULL ORDER BY processed_at DESC LIMIT 1"
        )
        expect(page.get_by_text("Passed", exact=True)).to_be_visible()
        expect(page.get_by_text(latest, exact=True)).to_be_visible()
        expect(page.get_by_role("row", name="expectations_failed 0", exact=True)).to_be_visible()
        ui.screenshot(page, "03-fact_order-checks")
        # Per partition: every loaded hour passed, none failed.
        page.locator("button[role=tab]", has_text="Partitions").click()
        for label in (f"Passed ({len(hours)})", "Failed (0)", "Execution Failed (0)"):
            expect(page.get_by_text(label, exact=True)).to_be_visible()
        settle(page)


def test_the_ui_shows_a_dimensions_columns_with_their_pii_notes(ui: UI, contract: Contract) -> None:
    (spec,) = [spec for spec in contract.sources.values() if spec.table == "dim_customer"]
    assert spec.pii_columns, "dim_customer has PII columns to show"
    with ui.view("04-dim_customer-overview", "/assets/dim_customer") as page:
        expect(page.get_by_text(spec.description, exact=True)).to_be_visible()
        for name, column in spec.columns.items():
            row = page.get_by_role("row").filter(
                has=page.get_by_role("cell", name=name, exact=True)
            )
            expect(row).to_be_visible()
            # The descriptions come from the asset's dagster/column_schema (assets/tables.py).
            if column.pii:
                expect(row).to_contain_text(f"PII, HMAC-masked as {column.pii}")
            else:
                expect(row).not_to_contain_text("PII")


def test_the_ui_lists_the_folder_sensors_running(ui: UI) -> None:
    states = {
        "batch_files_sensor": True,
        "stream_files_sensor": True,
        "orphan_retry_sensor": True,
        "derived_tables_sensor": True,
        # Stopped while alerts are off: shows that the toggle read is each sensor's own.
        "alert_on_run_failure": False,
    }
    with ui.view("05-automation", "/automation") as page:
        for sensor, running in states.items():
            link = page.get_by_role("link", name=re.compile(rf"\b{sensor}\b"))
            expect(link).to_be_visible()
            # A row is the link's parent: a selection checkbox, the link, the on/off toggle.
            checkboxes = link.locator("xpath=..").get_by_role("checkbox")
            expect(checkboxes).to_have_count(2)
            if running:
                expect(checkboxes.last).to_be_checked()
            else:
                expect(checkboxes.last).not_to_be_checked()


def test_the_ui_shows_the_marts_own_chart_of_the_days_it_holds(dev: Dev, ui: UI) -> None:
    # The mart of a day long before today (the CLI test above materialized it): its chart and
    # table show the day, where Dagster's by-partition plot shows only the last 120 days.
    ((orders,),) = dev.query("SELECT sum(orders)::int FROM mart_orders_daily")
    with ui.view("07-mart_orders_daily-kpi-chart", "/assets/mart_orders_daily") as page:
        row = page.get_by_role("row").filter(has=page.get_by_text("kpi_chart", exact=True))
        row.get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog")
        chart = dialog.get_by_role("img", name=re.compile(r"^KPIs by day, \d+ days?, "))
        expect(chart).to_be_visible()
        # Drawn: the browser decoded the SVG, not a broken-image icon.
        assert chart.evaluate("image => image.complete && image.naturalWidth > 0")
        expect(dialog.get_by_role("row", name=re.compile(rf"^{DAY} {orders:,} "))).to_be_visible()


def test_a_partition_run_launched_from_the_ui_succeeds(dev: Dev, ui: UI) -> None:
    hour = max(_loaded_hours(dev))
    ((orders,),) = dev.query("SELECT count(*) FROM fact_order")
    with ui.view("06-fact_order-launch", "/assets/fact_order") as page:
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog")
        partitions = dialog.get_by_role("textbox").first
        expect(partitions).to_be_visible()
        # Only the last 90 days before the wall clock are offered until asked for all; an older
        # day must have the banner's button (a click waits for it), a recent one may not.
        show_all = dialog.get_by_role("button", name="Show all partitions")
        if dt.date.today() - DAY > dt.timedelta(days=91) or show_all.is_visible():
            show_all.click()
        partitions.fill(hour)
        partitions.press("Enter")
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
        ui.screenshot(page, "06-fact_order-launch-dialog")
        dialog.get_by_role("button", name="Launch 1 run").click()
        toast = page.get_by_role("region", name=re.compile("Notifications"))
        view = toast.get_by_role("link", name="View")
        expect(view).to_be_visible()
        run_id = (view.get_attribute("href") or "").rsplit("/", 1)[-1]
        view.click()
        page.wait_for_url(f"**/runs/{run_id}*")
        # The run page's status tag, once the run has ended.
        status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
        expect(status).to_be_visible(timeout=300_000)
        expect(status).to_have_text("Success")
        expect(page.get_by_text(f"partition: {hour}", exact=True)).to_be_visible()
    run = dev.graphql(
        "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status"
        " tags { key value } } } }",
        id=run_id,
    )["runOrError"]
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert (run["status"], tags["dagster/partition"], tags["dagster/from_ui"]) == (
        "SUCCESS",
        hour,
        "true",
    )
    # Replaying the hour's own files changes nothing.
    assert dev.query("SELECT count(*) FROM fact_order") == [(orders,)]


def test_ctrl_c_stops_everything(dev: Dev) -> None:
    assert dev.family, "the load test recorded dagster dev's processes"
    dev.process.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
    dev.process.wait(timeout=150)
    alive = [p for p in dev.family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], (alive, (dev.state / "dev.log").read_text()[-3000:])
    terminal = _terminal(dev)
    assert terminal[-1] == "fastfeast dev stopped"
    assert not [line for line in terminal if "Traceback" in line or "Warning" in line]
