"""The orphan-retry sensor on a real instance and warehouse: what makes it look again.

A child load that runs beside its parent's can commit its orphans after a tick has seen the
parent's materialization and found nothing to resolve. The sensor must then look again when the
child materializes, not wait for the parent's next load; a retry run's own materialization is no
reason to look again, or an orphan the retry cannot resolve would ask for a run every tick.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.sensors.orphans import ORPHAN_RETRY_SENSOR
from fastfeast_dagster_tests.sensing import Pipeline
from fastfeast_dagster_tests.sla_hour import (
    DAY,
    HOUR,
    hour_folder,
    load_master,
    status_event,
    write_hour,
)

NEXT_HOUR = f"{DAY}-11:00"


@pytest.fixture
def pipeline(pipeline_env: str) -> Iterator[Pipeline]:
    with dg.instance_for_test() as instance:
        yield Pipeline(instance, ORPHAN_RETRY_SENSOR)


def _open_orphans(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT partition_key, source_table FROM quarantine WHERE rejection_stage = 'orphan'"
        " AND superseded_at IS NULL AND resolved_at IS NULL ORDER BY 1, 2"
    ).fetchall()


def test_a_childs_materialization_after_its_parents_brings_a_retry_and_a_retry_does_not(
    pipeline: Pipeline, data_dir: Path, contract: Contract, conn: psycopg.Connection
) -> None:
    load_master(data_dir, pipeline.materialize, contract)
    write_hour(data_dir, [None, None])
    # The events load before their tickets: orphans.
    pipeline.materialize(["fact_ticket_event"], HOUR)
    assert set(_open_orphans(conn)) == {(HOUR, "fact_ticket_event")}
    pipeline.materialize(["fact_order", "fact_ticket"], HOUR)
    (first,) = pipeline.tick()
    assert first.partition_key == HOUR
    assert [key.to_user_string() for key in first.asset_selection or []] == ["fact_ticket_event"]
    # Where the daemon stands after a tick that saw the parents and found nothing yet: the
    # orphans of a child load beside theirs commit after it, and only the child materializes.
    assert pipeline.tick() == []
    late = status_event("pending", 0, None, "Open", f"{DAY} 11:05:00", None)
    (hour_folder(data_dir, DAY, 11) / "ticket_events.json").write_text(json.dumps([late]))
    pipeline.materialize(["fact_ticket_event"], NEXT_HOUR)
    (again,) = pipeline.tick()
    assert (again.partition_key, again.tags) == (HOUR, first.tags)
    assert again.run_key != first.run_key, "a new look is a new request, not a duplicate"

    pipeline.run(again)
    assert _open_orphans(conn) == []
    # The retry's own materialization of the child: nothing to look at.
    assert pipeline.tick() == []
