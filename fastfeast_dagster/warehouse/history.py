"""Dimension history (SCD type 2): a day's snapshot becomes versions in `<table>_history`.

A version holds a member's tracked attributes from `valid_from` (the day of the snapshot that
showed them) until `valid_to` (exclusive; NULL while current). For each member of day D's
snapshot, in the load's transaction, after the current-state upsert, when the version covering
D holds other attributes:
- the snapshot's version runs from D to the version's end, or to the next snapshot loaded after
  D if that comes first: that snapshot saw the old attributes (or not the member), so they go on
  from there in a version of their own;
- the covering version ends on D; or, when it began on D (a corrected re-delivery of D), it
  takes the snapshot's attributes.
A member no version covers on D (new, or first seen later) gets a version from D to its next
version's start. A version covering D with the same attributes is left as it is, so replaying a
day changes nothing, and a late snapshot of a past day only splits the version it falls in:
versions that begin after D are never rewritten. Versions stay contiguous per member.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg
from psycopg import sql

from fastfeast_dagster.batch import FILE_COLUMN, PARTITION_COLUMN, ROW_COLUMN, RUN_COLUMN
from fastfeast_dagster.warehouse.scope import STAGE, LoadScope

_LINEAGE = [FILE_COLUMN, ROW_COLUMN, PARTITION_COLUMN, RUN_COLUMN]


@dataclass(frozen=True)
class HistoryChange:
    opened: int  # versions that begin with this load
    corrected: int  # versions of the same day whose attributes a re-delivery changed


def write_versions(cur: psycopg.Cursor, scope: LoadScope) -> HistoryChange:
    """The versions of each partition's snapshot, day by day in date order."""
    spec = scope.spec
    assert spec.history is not None
    opened = corrected = 0
    for day in sorted(scope.partition_keys):
        day_opened, day_corrected = _write_day(cur, scope, day)
        opened += day_opened
        corrected += day_corrected
    return HistoryChange(opened, corrected)


def _write_day(cur: psycopg.Cursor, scope: LoadScope, day: str) -> tuple[int, int]:
    spec = scope.spec
    assert spec.history is not None
    key = sql.Identifier(spec.primary_key)
    tracked = [sql.Identifier(name) for name in spec.history.track]
    lineage = [sql.Identifier(name) for name in _LINEAGE]

    def columns(alias: str, names: list[sql.Identifier]) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), c) for c in names)

    names = {
        "history": scope.relation(spec.history_table),
        "file_log": scope.relation("pipeline_file_log"),
        "stage": STAGE,
        "key": key,
        "written": sql.SQL(", ").join([key, *tracked, *lineage]),
        "s_all": columns("s", [key, *tracked, *lineage]),
        "c_all": columns("c", [key, *tracked, *lineage]),
        "h_row": columns("h", tracked),
        "s_row": columns("s", tracked),
        "set_s": sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(c) for c in [*tracked, *lineage]),
    }
    params = {"day": day, "date": dt.date.fromisoformat(day), "asset": scope.asset_key}

    def run(statement: str) -> int:
        cur.execute(sql.SQL(statement).format(**names), params)  # type: ignore[arg-type]
        return cur.rowcount

    # The versions covering the day whose attributes the snapshot contradicts, and where the
    # snapshot's version ends: at the version's own end, or at the next snapshot loaded after
    # this day, which saw the old attributes (or did not see the member) when it was loaded.
    run(
        "CREATE TEMP TABLE _changing ON COMMIT DROP AS"
        " SELECT h.*, CASE WHEN n.day IS NOT NULL AND (h.valid_to IS NULL OR n.day < h.valid_to)"
        "  THEN n.day ELSE h.valid_to END AS snapshot_end"
        " FROM {history} h"
        " JOIN {stage} s ON s.{key} = h.{key} AND s._partition_key = %(day)s"
        " CROSS JOIN (SELECT min(partition_key)::date AS day FROM {file_log}"
        "  WHERE asset_key = %(asset)s AND partition_key > %(day)s AND status = 'success'"
        "  AND superseded_at IS NULL) n"
        " WHERE h.valid_from <= %(date)s AND (h.valid_to IS NULL OR h.valid_to > %(date)s)"
        " AND ({h_row}) IS DISTINCT FROM ({s_row})"
    )
    # A re-delivered day corrects the version it began; an earlier one ends where this day starts.
    corrected = run(
        "UPDATE {history} h SET {set_s}, valid_to = c.snapshot_end, _loaded_at = now()"
        " FROM _changing c JOIN {stage} s ON s.{key} = c.{key} AND s._partition_key = %(day)s"
        " WHERE h.{key} = c.{key} AND h.valid_from = c.valid_from AND c.valid_from = %(date)s"
    )
    run(
        "UPDATE {history} h SET valid_to = %(date)s FROM _changing c"
        " WHERE h.{key} = c.{key} AND h.valid_from = c.valid_from AND c.valid_from < %(date)s"
    )
    opened = run(
        "INSERT INTO {history} ({written}, valid_from, valid_to)"
        " SELECT {s_all}, %(date)s, c.snapshot_end FROM _changing c"
        " JOIN {stage} s ON s.{key} = c.{key} AND s._partition_key = %(day)s"
        " WHERE c.valid_from < %(date)s"
    )
    # What a later snapshot saw goes on after this day's version, as it was.
    opened += run(
        "INSERT INTO {history} ({written}, valid_from, valid_to)"
        " SELECT {c_all}, c.snapshot_end, c.valid_to FROM _changing c"
        " WHERE c.snapshot_end IS NOT NULL AND c.snapshot_end IS DISTINCT FROM c.valid_to"
    )
    # A member no version covers on this day: new, or seen first on a later day.
    opened += run(
        "INSERT INTO {history} ({written}, valid_from, valid_to)"
        " SELECT {s_all}, %(date)s, (SELECT min(n.valid_from) FROM {history} n"
        "  WHERE n.{key} = s.{key} AND n.valid_from > %(date)s)"
        " FROM {stage} s WHERE s._partition_key = %(day)s AND NOT EXISTS"
        " (SELECT 1 FROM {history} h WHERE h.{key} = s.{key} AND h.valid_from <= %(date)s"
        "  AND (h.valid_to IS NULL OR h.valid_to > %(date)s))"
    )
    run("DROP TABLE _changing")
    return opened, corrected
