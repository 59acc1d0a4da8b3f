"""The JSON log formatter: one valid object per line, whatever Dagster attaches to a record."""

from __future__ import annotations

import json
import logging

import dagster as dg

from fastfeast_dagster.logs import JsonFormatter


def test_extras_dagster_attaches_are_written_as_text() -> None:
    record = logging.makeLogRecord(
        {
            "name": "fastfeast_dagster.warehouse.load",
            "levelname": "INFO",
            "msg": "loaded %d rows",
            "args": (3,),
            # Dagster metadata values are NamedTuples that forbid iteration.
            "dagster_meta": {"files": dg.MetadataValue.text("orders.json")},
            "metadata_value": dg.MetadataValue.text("orders.json"),
            "rows": 3,
        }
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "loaded 3 rows"
    assert entry["rows"] == 3
    assert "orders.json" in entry["metadata_value"]
    assert entry["level"] == "INFO" and entry["logger"] == "fastfeast_dagster.warehouse.load"
