"""De-duplication of alert mails: one per asset + partition + reason within the rate-limit window.

The decision is a row lock in the warehouse, so the run-failure and check-failure sensors (and
several daemons, should there be more than one) agree on it, and the log doubles as an audit of
what was sent and what was held back.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

_CLAIM = """
INSERT INTO {log} AS sent (alert_key, asset_key, partition_key, reason)
VALUES (%(key)s, %(asset)s, %(partition)s, %(reason)s)
ON CONFLICT (alert_key) DO UPDATE
    SET last_sent_at = now(), sent_count = sent.sent_count + 1
    WHERE sent.last_sent_at <= now() - make_interval(mins => %(window)s)
RETURNING alert_key
"""
_SUPPRESS = """
UPDATE {log} SET suppressed_count = suppressed_count + 1, last_suppressed_at = now()
WHERE alert_key = %(key)s
"""


@contextmanager
def claim_alert(
    conn: psycopg.Connection,
    schema: str,
    *,
    key: str,
    asset: str,
    partition: str | None,
    reason: str,
    window_minutes: int,
) -> Iterator[bool]:
    """Yields True when this alert may be sent now; the claim commits only if the body succeeds.

    Sending happens inside the block, holding the row lock: a mail that fails to go out rolls the
    claim back, so the next occurrence tries again instead of being suppressed.
    """
    params = {
        "key": key,
        "asset": asset,
        "partition": partition,
        "reason": reason,
        "window": window_minutes,
    }
    log = sql.Identifier(schema, "alert_log")
    with conn.transaction():
        claimed = conn.execute(sql.SQL(_CLAIM).format(log=log), params).fetchone() is not None
        if not claimed:
            conn.execute(sql.SQL(_SUPPRESS).format(log=log), params)
        yield claimed
