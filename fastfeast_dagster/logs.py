"""One JSON object per log line, for the project's own loggers (wired in dagster.yaml).

Messages never carry row values, so no PII can reach a log line; keys and secrets are never
logged at all.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

# Attributes every LogRecord has; anything else on a record was passed as `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {
            key: _plain(value)
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _plain(value: object) -> object:
    # Extras Dagster attaches are often NamedTuples (metadata values) that refuse iteration, which
    # json.dumps would attempt: anything but a JSON scalar goes out as its text.
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
