"""Alert sensors: a mail when a run fails, and when an asset check fails.

Both are off unless the contract enables alerts (they then start RUNNING by default). The mails,
their rate limit and de-duplication live in `fastfeast_dagster.alerts`.
"""

import dagster as dg

from fastfeast_dagster.alerts import check_failure_alert, deliver, run_failure_alert
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.resources.warehouse import Warehouse

_DISABLED = "alerts are off: set alerts.enabled in config/pipeline.yaml and FASTFEAST_SMTP_*"
# Check evaluations read per tick; the rest wait for the next tick, nothing is skipped.
_CHECK_EVENTS_PER_TICK = 500


def _status(contract: Contract) -> dg.DefaultSensorStatus:
    if contract.alerts.enabled:
        return dg.DefaultSensorStatus.RUNNING
    return dg.DefaultSensorStatus.STOPPED


def build_alert_sensors(contract: Contract) -> list[dg.SensorDefinition]:
    ui_url = contract.alerts.ui_url

    # Both tick like the folder sensors, and run only once alerts are on.
    timing = {
        "minimum_interval_seconds": contract.sensors.minimum_interval_seconds,
        "default_status": _status(contract),
    }

    @dg.run_failure_sensor(
        name="alert_on_run_failure",
        description="Mails the on-call address when a run fails (one mail per asset + partition "
        "+ error kind within alerts.rate_limit_minutes).",
        **timing,
    )
    def alert_on_run_failure(context: dg.RunFailureSensorContext, warehouse: Warehouse) -> None:
        if not contract.alerts.enabled:
            context.log.info(_DISABLED)
            return
        alert = run_failure_alert(
            context.dagster_run,
            context.get_step_failure_events(),
            context.failure_event.message or "run failed",
            ui_url,
        )
        deliver(contract, warehouse, alert)

    @dg.sensor(
        name="alert_on_check_failure",
        description="Mails the on-call address when an asset check fails, WARN or ERROR (one "
        "mail per asset + partition + check within alerts.rate_limit_minutes).",
        **timing,
    )
    def alert_on_check_failure(
        context: dg.SensorEvaluationContext, warehouse: Warehouse
    ) -> dg.SensorResult:
        if not contract.alerts.enabled:
            return dg.SensorResult(skip_reason=_DISABLED)
        storage = context.instance.event_log_storage
        if context.cursor is None:
            # First tick: start from now; checks that failed before alerts were on are history.
            newest = storage.get_event_records(
                dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
                limit=1,
            )
            cursor = newest[0].storage_id if newest else 0
            return dg.SensorResult(skip_reason="watching from now on", cursor=str(cursor))
        records = storage.get_event_records(
            dg.EventRecordsFilter(
                event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                after_cursor=int(context.cursor),
            ),
            limit=_CHECK_EVENTS_PER_TICK,
            ascending=True,
        )
        sent = 0
        for record in records:
            event = record.event_log_entry.dagster_event
            evaluation = event.asset_check_evaluation_data if event else None
            if evaluation is None or evaluation.passed:
                continue
            run = context.instance.get_run_by_id(record.run_id)
            sent += deliver(contract, warehouse, check_failure_alert(evaluation, run, ui_url))
        cursor = str(records[-1].storage_id) if records else context.cursor
        skip = None if records else "no check evaluated since the last tick"
        if records:
            context.log.info(f"{len(records)} check evaluations read, {sent} alert(s) mailed")
        return dg.SensorResult(skip_reason=skip, cursor=cursor)

    return [alert_on_run_failure, alert_on_check_failure]
