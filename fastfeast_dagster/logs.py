"""The log file under the state dir: one JSON object per line, everything a process logged.

Wired in dagster.yaml for every run (Dagster's events and the project's loggers), wherever it
runs: a run worker of the daemon, `fastfeast ingest`, a `dagster` command. `fastfeast dev` adds
the output of Dagster's own processes (`dev_console.py`). The terminal shows one line per run
instead (`run_report.py`). Messages never carry row values, so no PII can reach a log line;
keys and secrets are never logged at all.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
from pathlib import Path

from fastfeast_dagster.contract import default_contract, state_root

LOG_FILE = Path("logs") / "fastfeast.jsonl"


def log_file_path() -> Path:
    """`<state dir>/logs/fastfeast.jsonl`."""
    return state_root(default_contract()) / LOG_FILE


def state_log_handler() -> logging.Handler:
    """Appends to the log file (dagster.yaml's handler factory).

    Several processes append to it at once (the daemon's run workers, `fastfeast dev`): each
    record is one write to a file opened for appending, so lines do not interleave; a file moved
    away by logrotate is reopened.
    """
    path = log_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return logging.handlers.WatchedFileHandler(path, delay=True, encoding="utf-8")


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
