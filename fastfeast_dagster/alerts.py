"""Alert mails for failed runs and failed asset checks: what they say, and sending them once.

An alert is identified by asset + partition + reason; the warehouse's `alert_log` lets one of each
through per rate-limit window (see `warehouse/alert_log.py`). Mails carry names, counts and
links only: never row values, which could be PII.
"""

import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

import dagster as dg
import psycopg

from fastfeast_dagster.assets.partitions import run_partition
from fastfeast_dagster.contract import Contract, SmtpSettings
from fastfeast_dagster.resources.warehouse import Warehouse
from fastfeast_dagster.warehouse.alert_log import claim_alert

logger = logging.getLogger(__name__)

# More assets than this in one run are summarised as a count in the alert's identity.
_MAX_NAMED_ASSETS = 3


@dataclass(frozen=True)
class Alert:
    asset: str
    partition: str | None
    reason: str
    details: tuple[str, ...]
    link: str

    @property
    def key(self) -> str:
        return f"{self.asset}|{self.partition or '-'}|{self.reason}"

    @property
    def subject(self) -> str:
        where = f" [{self.partition}]" if self.partition else ""
        return f"[FastFeast] {self.reason}: {self.asset}{where}"

    def body(self) -> str:
        return "\n".join(
            [self.subject.removeprefix("[FastFeast] "), "", *self.details, "", self.link]
        )


def _asset_label(keys: Sequence[dg.AssetKey]) -> str:
    names = sorted(key.to_user_string() for key in keys)
    if len(names) > _MAX_NAMED_ASSETS:
        return f"{len(names)} assets"
    return ", ".join(names)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def run_failure_alert(
    run: dg.DagsterRun, step_failures: Sequence[dg.DagsterEvent], failure_message: str, ui_url: str
) -> Alert:
    """A failed run: its assets (or job), partition and the kind of error that stopped it."""
    errors = [
        (event.step_key, event.step_failure_data.error)
        for event in step_failures
        if event.step_failure_data.error is not None
    ]
    kinds = sorted({error.cls_name for _, error in errors if error.cls_name})
    reason = f"run failed ({', '.join(kinds)})" if kinds else "run failed"
    details = [
        f"run:       {run.run_id}",
        f"job:       {run.job_name}",
        f"sensor:    {run.tags.get('dagster/sensor_name', '-')}",
        f"status:    {failure_message}",
        # The first line only: later lines of a database error can quote a failing row.
        *(
            f"step {step}: {error.cls_name}: {error.message.splitlines()[0]}"
            for step, error in errors
        ),
    ]
    return Alert(
        asset=_asset_label(list(run.asset_selection or [])) or run.job_name,
        partition=run_partition(run.tags),
        reason=reason,
        details=tuple(details),
        link=f"{ui_url.rstrip('/')}/runs/{run.run_id}",
    )


def check_failure_alert(
    evaluation: dg.AssetCheckEvaluation, run: dg.DagsterRun | None, ui_url: str
) -> Alert:
    """A failed asset check: which check, how severe, and its numeric metadata."""
    partition = evaluation.partition or (run_partition(run.tags) if run else None)
    details = [f"check:     {evaluation.check_name} ({evaluation.severity.value})"]
    if evaluation.description:
        details.append(f"about:     {evaluation.description}")
    # Numbers only: the GE check's failing examples are masked, but a mail needs no row values.
    details += [
        f"{name}: {entry.value}"
        for name, entry in sorted(evaluation.metadata.items())
        if isinstance(entry.value, int | float) and not isinstance(entry.value, bool)
    ]
    if run is not None:
        details.append(f"run:       {run.run_id}")
    asset = evaluation.asset_key.to_user_string()
    return Alert(
        asset=asset,
        partition=partition,
        reason=f"check {evaluation.check_name} failed ({evaluation.severity.value})",
        details=tuple(details),
        link=f"{ui_url.rstrip('/')}/assets/{asset}?view=checks",
    )


def send_mail(settings: SmtpSettings, alert: Alert) -> None:
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message.set_content(alert.body())
    with smtplib.SMTP(settings.host, settings.port, timeout=30) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(message)


def deliver(contract: Contract, warehouse: Warehouse, alert: Alert) -> bool:
    """Mail the alert unless the same one went out within the window; True when it was sent.

    With the warehouse unreachable, the alert is sent without de-duplication: an outage of the
    database is exactly what must not go unnoticed.
    """
    settings = contract.smtp_settings()
    try:
        with (
            warehouse.connect() as conn,
            claim_alert(
                conn,
                contract.warehouse.schema_name,
                key=alert.key,
                asset=alert.asset,
                partition=alert.partition,
                reason=alert.reason,
                window_minutes=contract.alerts.rate_limit_minutes,
            ) as claimed,
        ):
            if claimed:
                send_mail(settings, alert)
    except psycopg.OperationalError as error:
        logger.warning("alert log unavailable (%s); sending without de-duplication", error)
        send_mail(settings, alert)
        claimed = True
    logger.info("alert %s: %s", "sent" if claimed else "held back (rate limit)", alert.subject)
    return claimed
