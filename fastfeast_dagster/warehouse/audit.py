"""The audit trail of a load: its quarantine rows, its repairs, one file-log row per file, and
its schema drift (one `schema_drift` row per file and drifted column).

All four keep history: rows of earlier runs of the same partitions are marked superseded, never
deleted, and a replay that finds exactly what is already there adds nothing (one shared
supersede-and-insert). The file log's counts are those of the quarantine and repair rows this
load writes, so they always agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import pandas as pd
import psycopg
from psycopg import sql

from fastfeast_dagster.batch import (
    DRIFT_ROW_COLUMNS,
    QUARANTINE_ROW_COLUMNS,
    REPAIR_ROW_COLUMNS,
    FileCounts,
    LoadBatch,
    LoadReport,
)
from fastfeast_dagster.warehouse.scope import QUARANTINE_STAGE, REPAIR_STAGE, STAGE, LoadScope

_FILE_LOG = "pipeline_file_log"
_FILE_LOG_STAGE = sql.Identifier("_file_log_new")
_FILE_LOG_COLUMNS = [
    "file_path",
    "file_name",
    "file_hash",
    "file_size",
    "file_mtime",
    "file_type",
    "source_table",
    "status",
    "rejection_stage",
    "error_message",
    "total_records",
    "valid_records",
    "quarantined",
    "duplicate_count",
    "orphan_count",
    "repaired",
    "asset_key",
    "partition_key",
    "run_id",
]


def stage_verdict(cur: psycopg.Cursor, scope: LoadScope, batch: LoadBatch) -> None:
    """The verdict's quarantine and repair rows into the load's stages (orphans join later)."""
    for table, stage, columns, rows in (
        ("quarantine", QUARANTINE_STAGE, QUARANTINE_ROW_COLUMNS, batch.quarantine),
        ("value_repair", REPAIR_STAGE, REPAIR_ROW_COLUMNS, batch.repairs),
    ):
        _stage_rows(cur, scope, table, stage, columns, rows)


def _stage_rows(
    cur: psycopg.Cursor,
    scope: LoadScope,
    table: str,
    stage: sql.Identifier,
    columns: Sequence[str],
    rows: pd.DataFrame,
) -> None:
    """`rows` into a new stage shaped like `table`, with this load's asset key and run."""
    _create_stage(cur, scope, table, stage)
    for name, value in (("asset_key", scope.asset_key), ("run_id", scope.run_id)):
        cur.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                stage, sql.Identifier(name), sql.Literal(value)
            )
        )
    _copy_rows(cur, stage, columns, rows[columns].itertuples(index=False, name=None))


def write_quarantine(cur: psycopg.Cursor, scope: LoadScope) -> None:
    """Resolve orphans that loaded, supersede what changed, insert what is new.

    A replay that rejects exactly the same rows for the same reasons leaves quarantine untouched.
    """
    quarantine = scope.relation("quarantine")
    # Staging holds the rows that loaded: an orphan of an earlier run among them has resolved.
    cur.execute(
        sql.SQL(
            "UPDATE {q} q SET resolved_at = now(), resolved_by_run = %s"
            " WHERE q.asset_key = %s AND q.partition_key = ANY(%s) AND q.rejection_stage = 'orphan'"
            " AND q.superseded_at IS NULL AND q.resolved_at IS NULL AND EXISTS (SELECT 1 FROM"
            " {stage} s WHERE s._source_file = q.source_path AND s._source_row = q.source_row)"
        ).format(q=quarantine, stage=STAGE),
        (scope.run_id, scope.asset_key, scope.partition_keys),
    )
    _supersede_and_insert(
        cur,
        scope,
        target=quarantine,
        stage=QUARANTINE_STAGE,
        columns=[*QUARANTINE_ROW_COLUMNS, "asset_key", "run_id"],
        same=["source_path", "source_row", "reasons", "raw_data"],
        current=sql.SQL("{row}.superseded_at IS NULL AND {row}.resolved_at IS NULL"),
        superseded=sql.SQL("superseded_at = now(), superseded_by_run = {}").format(
            sql.Literal(scope.run_id)
        ),
    )


def write_repairs(cur: psycopg.Cursor, scope: LoadScope) -> None:
    """The repairs of rows that loaded; a row that turned out an orphan did not load."""
    cur.execute(
        sql.SQL(
            "DELETE FROM {repairs} r USING {quarantine} q WHERE q.rejection_stage = 'orphan'"
            " AND q.source_path = r.source_path AND q.source_row = r.source_row"
        ).format(repairs=REPAIR_STAGE, quarantine=QUARANTINE_STAGE)
    )
    _supersede_and_insert(
        cur,
        scope,
        target=scope.relation("value_repair"),
        stage=REPAIR_STAGE,
        columns=[*REPAIR_ROW_COLUMNS, "asset_key", "run_id"],
        same=[
            "source_path",
            "source_row",
            "repair_column",
            "repair_rule",
            "raw_value",
            "repaired_to",
        ],
        current=sql.SQL("{row}.superseded_at IS NULL"),
        superseded=sql.SQL("superseded_at = now(), superseded_by_run = {}").format(
            sql.Literal(scope.run_id)
        ),
    )


def report(
    cur: psycopg.Cursor,
    scope: LoadScope,
    batch: LoadBatch,
    *,
    inserted: int,
    updated: int,
    removed: int,
) -> LoadReport:
    """The load's counts, per file and in all, from the quarantine and repair rows it writes."""
    cur.execute(
        sql.SQL(
            "SELECT source_path, count(source_row),"
            " count(*) FILTER (WHERE rejection_rule = 'duplicate'),"
            " count(*) FILTER (WHERE rejection_stage = 'orphan') FROM {} GROUP BY source_path"
        ).format(QUARANTINE_STAGE)
    )
    per_file = {path: (int(q), int(d), int(o)) for path, q, d, o in cur.fetchall()}
    cur.execute(
        sql.SQL("SELECT rejection_stage, count(*) FROM {} GROUP BY 1").format(QUARANTINE_STAGE)
    )
    by_stage = {str(stage): int(count) for stage, count in cur.fetchall()}
    cur.execute(
        sql.SQL("SELECT source_path, count(DISTINCT source_row) FROM {} GROUP BY 1").format(
            REPAIR_STAGE
        )
    )
    repaired = {path: int(count) for path, count in cur.fetchall()}
    cur.execute(
        sql.SQL("SELECT repair_column, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(REPAIR_STAGE)
    )
    by_column = {str(column): int(count) for column, count in cur.fetchall()}
    files: dict[str, FileCounts] = {}
    for outcome in batch.files:
        path = outcome.file.relative_path
        quarantined, duplicates, orphans = per_file.get(path, (0, 0, 0))
        files[path] = FileCounts(
            total=outcome.rows_read,
            loaded=outcome.rows_read - quarantined,
            quarantined=quarantined,
            repaired=repaired.get(path, 0),
            duplicates=duplicates,
            orphans=orphans,
            status="failed" if outcome.rejection else "success",
            md5=outcome.file.md5,
            error=outcome.rejection.message if outcome.rejection else None,
        )
    return LoadReport(
        table=scope.spec.table,
        rows_read=batch.rows_read,
        rows_loaded=sum(counts.loaded for counts in files.values()),
        rows_quarantined=sum(counts.quarantined for counts in files.values()),
        rows_repaired=sum(counts.repaired for counts in files.values()),
        inserted=inserted,
        updated=updated,
        removed=removed,
        duplicates=sum(counts.duplicates for counts in files.values()),
        orphans=sum(counts.orphans for counts in files.values()),
        rejects_by_stage=by_stage,
        repairs_by_column=by_column,
        files=files,
    )


def write_file_log(
    cur: psycopg.Cursor, scope: LoadScope, batch: LoadBatch, load: LoadReport
) -> None:
    """One row per file; a replay of identical files with identical outcomes adds nothing."""
    entries = []
    for outcome in batch.files:
        counts = load.files[outcome.file.relative_path]
        entries.append(
            (
                str(outcome.file.path),
                outcome.file.name,
                outcome.file.md5,
                outcome.file.size,
                dt.datetime.fromtimestamp(outcome.file.mtime_ns / 1e9, tz=dt.UTC),
                outcome.folder_kind,
                scope.spec.table,
                counts.status,
                "file" if outcome.rejection else None,
                counts.error,
                counts.total,
                counts.loaded,
                counts.quarantined,
                counts.duplicates,
                counts.orphans,
                counts.repaired,
                scope.asset_key,
                outcome.partition_key,
                scope.run_id,
            )
        )
    _create_stage(cur, scope, _FILE_LOG, _FILE_LOG_STAGE)
    _copy_rows(cur, _FILE_LOG_STAGE, _FILE_LOG_COLUMNS, entries)
    _supersede_and_insert(
        cur,
        scope,
        target=scope.relation(_FILE_LOG),
        stage=_FILE_LOG_STAGE,
        columns=_FILE_LOG_COLUMNS,
        same=[
            "file_name",
            "file_hash",
            "status",
            "total_records",
            "valid_records",
            "quarantined",
            "orphan_count",
            "duplicate_count",
            "repaired",
        ],
        current=sql.SQL("{row}.superseded_at IS NULL"),
        superseded=sql.SQL("superseded_at = now()"),
    )


_DRIFT_STAGE = sql.Identifier("_drift_new")


def write_drift(cur: psycopg.Cursor, scope: LoadScope, batch: LoadBatch) -> None:
    """The files' drifted columns. A replay that finds the same drift counts nothing again: it
    only moves `last_seen_at`; a changed file's rows supersede the earlier ones and keep the
    `first_seen_at` of the file and column."""
    _stage_rows(cur, scope, "schema_drift", _DRIFT_STAGE, DRIFT_ROW_COLUMNS, batch.drift)
    target = scope.relation("schema_drift")
    cur.execute(
        sql.SQL(
            "UPDATE {stage} n SET first_seen_at = p.first_seen_at FROM (SELECT source_path,"
            " column_name, drift_kind, min(first_seen_at) AS first_seen_at FROM {target}"
            " WHERE asset_key = %s GROUP BY 1, 2, 3) p WHERE p.source_path = n.source_path"
            " AND p.column_name = n.column_name AND p.drift_kind = n.drift_kind"
        ).format(stage=_DRIFT_STAGE, target=target),
        (scope.asset_key,),
    )
    same = ["source_path", "column_name", "drift_kind", "row_count"]
    _supersede_and_insert(
        cur,
        scope,
        target=target,
        stage=_DRIFT_STAGE,
        columns=[*DRIFT_ROW_COLUMNS, "asset_key", "run_id", "first_seen_at"],
        same=same,
        current=sql.SQL("{row}.superseded_at IS NULL"),
        superseded=sql.SQL("superseded_at = now(), superseded_by_run = {}").format(
            sql.Literal(scope.run_id)
        ),
    )
    cur.execute(
        sql.SQL(
            "UPDATE {target} t SET last_seen_at = now() WHERE t.asset_key = %s"
            " AND t.partition_key = ANY(%s) AND t.superseded_at IS NULL"
            " AND EXISTS (SELECT 1 FROM {stage} n"
            " WHERE n.partition_key = t.partition_key AND {same})"
        ).format(
            target=target,
            stage=_DRIFT_STAGE,
            same=sql.SQL(" AND ").join(
                sql.SQL("n.{0} = t.{0}").format(sql.Identifier(name)) for name in same
            ),
        ),
        (scope.asset_key, scope.partition_keys),
    )


def _create_stage(cur: psycopg.Cursor, scope: LoadScope, table: str, stage: sql.Identifier) -> None:
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            stage, scope.relation(table)
        )
    )


def _copy_rows(
    cur: psycopg.Cursor, stage: sql.Identifier, columns: Sequence[str], rows: Iterable[tuple]
) -> None:
    names = sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, names)) as copy:
        for row in rows:
            copy.write_row([None if pd.isna(value) else value for value in row])


def _supersede_and_insert(
    cur: psycopg.Cursor,
    scope: LoadScope,
    *,
    target: sql.Identifier,
    stage: sql.Identifier,
    columns: Sequence[str],
    same: Sequence[str],
    current: sql.SQL,
    superseded: sql.Composable,
) -> None:
    """Mark this asset's current rows of these partitions superseded unless the new rows repeat
    them (`same` columns equal), then insert the new rows that do not repeat a current one.

    Both statements compare against these partitions' rows only, through the (asset_key,
    partition_key) index: `IS NOT DISTINCT FROM` can be neither hashed nor looked up in an
    index, so a comparison left to it alone would visit every current row of the asset for each
    new row, a cost that grows with the asset's history (partition_key is never NULL).
    """

    def equal(left: str, right: str) -> sql.Composable:
        return sql.SQL(" AND ").join(
            [
                sql.SQL("{0}.partition_key = {1}.partition_key").format(
                    sql.Identifier(left), sql.Identifier(right)
                ),
                *(
                    sql.SQL("{}.{} IS NOT DISTINCT FROM {}.{}").format(
                        sql.Identifier(left),
                        sql.Identifier(name),
                        sql.Identifier(right),
                        sql.Identifier(name),
                    )
                    for name in same
                ),
            ]
        )

    names = sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    cur.execute(
        sql.SQL(
            "UPDATE {target} t SET {superseded} WHERE t.asset_key = %s"
            " AND t.partition_key = ANY(%s) AND {current}"
            " AND NOT EXISTS (SELECT 1 FROM {stage} n WHERE {same})"
        ).format(
            target=target,
            superseded=superseded,
            current=current.format(row=sql.Identifier("t")),
            stage=stage,
            same=equal("n", "t"),
        ),
        (scope.asset_key, scope.partition_keys),
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {target} ({names}) SELECT {names} FROM {stage} n WHERE NOT EXISTS"
            " (SELECT 1 FROM {target} t WHERE t.asset_key = %s AND t.partition_key = ANY(%s)"
            " AND {current} AND {same})"
        ).format(
            target=target,
            names=names,
            stage=stage,
            current=current.format(row=sql.Identifier("t")),
            same=equal("n", "t"),
        ),
        (scope.asset_key, scope.partition_keys),
    )
