"""Alert mails, received by a real SMTP server on loopback, for a run that really failed.

A planted expectation fails `dim_team`'s blocking suite: the run fails, the check fails, and the
sensors evaluated against the same Dagster instance mail both, once per window.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from aiosmtpd.controller import Controller

from fastfeast_dagster.alerts import Alert, deliver
from fastfeast_dagster.contract import (
    DEFAULT_CONFIG_PATH,
    Contract,
    load_contract,
)
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.sensors.alerts import build_alert_sensors
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.embedded import EmbeddedPostgres, create_database, drop_database
from fastfeast_dagster_tests.commands import free_port

DAY = "2026-03-02"
TEAMS = "team_id,team_name\n1,Refunds\n2,VIP Support\n"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )  # type: ignore[attr-defined]
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        return [str(message["Subject"]).strip() for message in self.messages]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def instance(pg_server: EmbeddedPostgres) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance on PostgreSQL storage, as deployed: the check sensor reads its event log
    by storage id, which SQLite's run-sharded test storage cannot serve."""
    name = f"d_{uuid.uuid4().hex[:12]}"
    create_database(pg_server.url("postgres"), name)
    storage = {"postgres": {"postgres_url": pg_server.url(name, driver="psycopg2")}}
    with dg.instance_for_test(overrides={"storage": storage}) as dagster_instance:
        yield dagster_instance
    drop_database(pg_server.url("postgres"), name)


def _alerting_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int, enabled: bool = True
) -> Contract:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["alerts"]["enabled"] = enabled
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    for name, value in {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STARTTLS": "false",
        "SENDER": "fastfeast@localhost",
        "RECIPIENTS": "oncall@localhost, data@localhost",
    }.items():
        monkeypatch.setenv(f"FASTFEAST_SMTP_{name}", value)
    return load_contract(path)


def _deliver_teams(data_dir: Path) -> None:
    folder = data_dir / "input" / "batch" / DAY
    folder.mkdir(parents=True)
    (folder / "teams.csv").write_text(TEAMS)


def _failing_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    from fastfeast_dagster.definitions import defs

    keys = [dg.AssetKey("dim_team")]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    assert job is not None
    result = job.execute_in_process(
        instance=instance, partition_key=DAY, asset_selection=keys, raise_on_error=False
    )
    assert not result.success
    return result


def _run_failure_alert(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"warehouse": Warehouse()},
    ).for_run_failure()
    sensor(context)  # type: ignore[operator]


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None) -> str:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"warehouse": Warehouse()}
    ) as context:
        result = sensor.evaluate_tick(context)
    assert result.cursor is not None
    return result.cursor


@pytest.mark.usefixtures("failing_team_suite")
def test_failed_run_and_failed_check_are_mailed_once_per_window(
    inbox: tuple[Inbox, int],
    instance: dg.DagsterInstance,
    pipeline_env: str,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mails, port = inbox
    contract = _alerting_contract(tmp_path, monkeypatch, port)
    run_sensor, check_sensor = build_alert_sensors(contract)
    _deliver_teams(data_dir)

    cursor = _tick(check_sensor, instance, None)  # the sensor was running before the failure
    first = _failing_run(instance)
    cursor = _tick(check_sensor, instance, cursor)
    _run_failure_alert(run_sensor, instance, first)

    assert sorted(mails.subjects()) == [
        f"[FastFeast] check great_expectations failed (ERROR): dim_team [{DAY}]",
        f"[FastFeast] run failed (DagsterAssetCheckFailedError): dim_team [{DAY}]",
    ]
    check_mail = next(m for m in mails.messages if "check" in str(m["Subject"]))
    assert check_mail["To"] == "oncall@localhost, data@localhost"
    body = check_mail.get_content()
    assert "expectations_failed: 1" in body
    assert "/assets/dim_team?view=checks" in body
    run_mail = next(m for m in mails.messages if "run failed" in str(m["Subject"]))
    assert f"/runs/{first.run_id}" in run_mail.get_content()

    # The same failure again within the window: counted in the alert log, not mailed.
    second = _failing_run(instance)
    cursor = _tick(check_sensor, instance, cursor)
    _run_failure_alert(run_sensor, instance, second)
    assert len(mails.messages) == 2
    with psycopg.connect(pipeline_env) as conn:
        log = conn.execute(
            "SELECT reason, sent_count, suppressed_count FROM alert_log ORDER BY reason"
        ).fetchall()
        assert log == [
            ("check great_expectations failed (ERROR)", 1, 1),
            ("run failed (DagsterAssetCheckFailedError)", 1, 1),
        ]
        # Once the window has passed, the next occurrence is mailed again.
        conn.execute("UPDATE alert_log SET last_sent_at = now() - interval '61 minutes'")
        conn.commit()
    _failing_run(instance)
    _tick(check_sensor, instance, cursor)
    assert len(mails.messages) == 3


def test_a_mail_that_cannot_be_sent_is_retried_not_suppressed(
    inbox: tuple[Inbox, int],
    pipeline_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mails, port = inbox
    alert = Alert("fact_order", "2026-03-02-10:00", "run failed", ("run: x",), "http://ui/runs/x")
    unreachable = _alerting_contract(tmp_path, monkeypatch, free_port())
    with psycopg.connect(pipeline_env) as conn:
        apply_schema(conn, unreachable)  # what a run's warehouse resource does when it starts
    with pytest.raises(ConnectionRefusedError):
        deliver(unreachable, Warehouse(), alert)
    with psycopg.connect(pipeline_env) as conn:
        assert conn.execute("SELECT count(*) FROM alert_log").fetchone() == (0,)

    assert deliver(_alerting_contract(tmp_path, monkeypatch, port), Warehouse(), alert)
    assert mails.subjects() == ["[FastFeast] run failed: fact_order [2026-03-02-10:00]"]


@pytest.mark.usefixtures("failing_team_suite")
def test_sensors_stay_quiet_while_alerts_are_off(
    inbox: tuple[Inbox, int],
    instance: dg.DagsterInstance,
    pipeline_env: str,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mails, port = inbox
    contract = _alerting_contract(tmp_path, monkeypatch, port, enabled=False)
    run_sensor, check_sensor = build_alert_sensors(contract)
    _deliver_teams(data_dir)
    failed = _failing_run(instance)
    with dg.build_sensor_context(
        instance=instance, cursor="0", resources={"warehouse": Warehouse()}
    ) as context:
        tick = check_sensor.evaluate_tick(context)
    assert tick.skip_message is not None and "alerts are off" in tick.skip_message
    _run_failure_alert(run_sensor, instance, failed)
    assert mails.messages == []
