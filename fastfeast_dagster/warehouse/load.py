"""The load algorithm: one transaction per batch, clean rows + quarantine + file log together.

1. COPY the clean rows (Arrow-serialised CSV) into a temporary staging table.
2. Orphan stage: every foreign key is checked by an anti-join of staging against its parent
   table (an index lookup per row, independent of the parent's size); orphans leave staging.
   Where the role may, the parent tables are locked against writes first, so that proof holds
   until commit and the upsert skips the FK triggers' per-row re-check of it.
3. Facts only: partition replace, rows of these partitions that the new files no longer carry
   are removed.
4. Upsert by natural key. A row is updated only by a batch of the same or a newer partition and
   only when its content differs: replaying an old day or hour never regresses newer data, and
   replaying the same one changes nothing.
5. Earlier quarantine and file-log rows of these partitions are marked superseded (orphans that
   now loaded are marked resolved); the new ones are inserted.
Either all of it commits or none of it does.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from fastfeast_dagster.settings import Contract, SourceSpec
from fastfeast_dagster.sources.reading import ROW_COLUMN
from fastfeast_dagster.stopwatch import Stopwatch
from fastfeast_dagster.warehouse.batch import FILE_COLUMN, PARTITION_COLUMN, LoadBatch
from fastfeast_dagster.warehouse.ddl import CALENDAR_TABLES, source_columns

log = logging.getLogger(__name__)

RUN_COLUMN = "_run_id"
_COPY_ROWS = 65_536


@dataclass(frozen=True)
class _KeyCheck:
    column: str
    parent_table: str
    parent_column: str
    stage: str
    rule: str


@dataclass
class FileCounts:
    total: int
    loaded: int
    quarantined: int
    duplicates: int
    orphans: int
    status: str
    md5: str
    error: str | None = None


@dataclass
class LoadReport:
    table: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    inserted: int
    updated: int
    removed: int
    duplicates: int
    orphans: int
    rejects_by_stage: dict[str, int]
    files: dict[str, FileCounts] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Whether the upsert left the keys' proof to the orphan stage (see `_may_skip_fk_triggers`).
    fk_triggers_skipped: bool = False


def load_batch(
    conn: psycopg.Connection,
    contract: Contract,
    batch: LoadBatch,
    *,
    asset_key: str,
    run_id: str,
) -> LoadReport:
    spec = contract.sources[batch.source]
    schema = contract.warehouse.schema_name
    columns = [column.name for column in source_columns(spec)]
    watch = Stopwatch()
    with conn.transaction(), conn.cursor() as cur:
        # Two runs of the same partition (a sensor run and an orphan retry, say) take turns, so
        # neither sees the other's half-written quarantine and both stay idempotent.
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s || '|' || key, 0))"
            " FROM unnest(%s::text[]) AS key ORDER BY key",
            (asset_key, sorted(batch.partition_keys)),
        )
        # Sorting a million staging rows for the ordered insert, and hashing them for the orphan
        # anti-joins, stays in memory instead of spilling to disk (4 MB default).
        cur.execute("SET LOCAL work_mem = '256MB'")
        with watch.stage("copy to staging"):
            stage = _create_staging(cur, schema, spec)
            _copy_clean_rows(cur, stage, batch.clean, columns, run_id)
        checks = _key_checks(contract, spec)
        skip_fk_triggers = _may_skip_fk_triggers(cur, schema, spec.table, checks)
        with watch.stage("orphan anti-join"):
            if skip_fk_triggers:
                _lock_parents(cur, schema, checks)
            orphan_rejects = _orphan_stage(cur, schema, stage, checks)
        # The quarantine rows are built in Python while the server replaces and upserts (the
        # driver releases the GIL while it waits), using the machine's other core.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_quarantine_rows, batch, orphan_rejects)
            with watch.stage("partition replace"):
                removed = (
                    _replace_partitions(cur, contract, spec, stage, batch)
                    if spec.kind == "fact"
                    else 0
                )
            with watch.stage("upsert"):
                several_files = len(batch.files) > 1
                order = _insert_order(cur, contract, spec)
                with _fk_triggers_off(cur, skip_fk_triggers):
                    inserted, updated = _upsert(
                        cur, schema, spec, stage, columns, several_files, order
                    )
            with watch.stage("quarantine"):
                quarantine = pending.result()
        with watch.stage("quarantine"):
            _write_quarantine(cur, schema, stage, quarantine, batch, spec.table, asset_key, run_id)
        with watch.stage("file log"):
            report = _report(spec, batch, quarantine, inserted, updated, removed)
            _write_file_log(cur, schema, spec, batch, report, asset_key, run_id)
        commit_started = time.perf_counter()
    watch.seconds["commit"] = time.perf_counter() - commit_started
    report.stage_seconds = watch.seconds
    report.fk_triggers_skipped = skip_fk_triggers
    log.info(
        "loaded %s %s: read %d, loaded %d, quarantined %d (orphans %d, duplicates %d)",
        spec.table,
        ",".join(batch.partition_keys),
        report.rows_read,
        report.rows_loaded,
        report.rows_quarantined,
        report.orphans,
        report.duplicates,
        extra={"table": spec.table, "partitions": batch.partition_keys, "run_id": run_id},
    )
    return report


def _create_staging(cur: psycopg.Cursor, schema: str, spec: SourceSpec) -> sql.Identifier:
    stage = sql.Identifier(f"_stage_{spec.table}")
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            stage, sql.Identifier(schema, spec.table)
        )
    )
    return stage


def _copy_clean_rows(
    cur: psycopg.Cursor, stage: sql.Identifier, clean: pd.DataFrame, columns: list[str], run_id: str
) -> None:
    if clean.empty:
        return
    frame = clean[[*columns, FILE_COLUMN, ROW_COLUMN, PARTITION_COLUMN]]
    # Lineage that is the same on every row (the run; the file and partition of a one-file
    # batch) becomes the staging column's default instead of being sent and parsed per row.
    constants = {RUN_COLUMN: run_id} | {
        name: str(frame[name].iloc[0])
        for name in (FILE_COLUMN, PARTITION_COLUMN)
        if frame[name].nunique(dropna=False) == 1
    }
    for name, value in constants.items():
        cur.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                stage, sql.Identifier(name), sql.Literal(value)
            )
        )
    table = pa.Table.from_pandas(
        frame.drop(columns=[name for name in constants if name in frame.columns]),
        preserve_index=False,
    )
    target = sql.SQL(", ").join(sql.Identifier(name) for name in table.column_names)
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(stage, target)
    # Arrow's CSV writer is ~7x faster than DataFrame.to_csv (notes/perf_baselines.md). Slices
    # go to a sending thread, so the server parses one while the next is serialised.
    with cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
        for rows in table.to_batches(max_chunksize=_COPY_ROWS):
            buffer = io.BytesIO()
            pa_csv.write_csv(rows, buffer, pa_csv.WriteOptions(include_header=False))
            copy.write(buffer.getvalue())


def _key_checks(contract: Contract, spec: SourceSpec) -> list[_KeyCheck]:
    checks = [
        _KeyCheck(
            fk.column,
            contract.sources[fk.references].table,
            contract.sources[fk.references].primary_key,
            "orphan",
            "foreign_key",
        )
        for fk in spec.foreign_keys
    ]
    # A date outside the calendar is a bad value, not a parent that may still arrive.
    checks += [
        _KeyCheck(name, *CALENDAR_TABLES[derived.kind], "records", "calendar_range")
        for name, derived in spec.derived.items()
        if derived.kind in CALENDAR_TABLES
    ]
    return checks


def _lock_parents(cur: psycopg.Cursor, schema: str, checks: list[_KeyCheck]) -> None:
    """Hold off writers of the parent tables until commit, so no parent goes under the batch.

    An FK trigger locks each parent row it finds; a million-row hour would lock most of the
    customers that way (10 s measured, one WAL record each). One SHARE lock per parent table
    costs nothing and makes the orphan anti-join's proof hold until commit. It waits for, and
    then holds off, loads of those tables (other loads of the same table run alongside), and
    it is taken before this batch writes anything, so loads cannot deadlock on it.
    """
    parents = sorted({check.parent_table for check in checks})
    if parents:
        cur.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                sql.SQL(", ").join(sql.Identifier(schema, parent) for parent in parents)
            )
        )


def _orphan_stage(
    cur: psycopg.Cursor, schema: str, stage: sql.Identifier, checks: list[_KeyCheck]
) -> pd.DataFrame:
    """Rows whose keys have no parent, one line per failed key; they are removed from staging."""
    found: list[tuple[str, int, str, str, str]] = []
    for check in checks:
        cur.execute(
            sql.SQL(
                "SELECT s._source_file, s._source_row FROM {stage} s WHERE s.{column} IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{parent_column} = s.{column})"
            ).format(
                stage=stage,
                column=sql.Identifier(check.column),
                parent=sql.Identifier(schema, check.parent_table),
                parent_column=sql.Identifier(check.parent_column),
            )
        )
        found += [(file, row, check.stage, check.rule, check.column) for file, row in cur]
    rejects = pd.DataFrame(found, columns=[FILE_COLUMN, ROW_COLUMN, "stage", "rule", "column"])
    if not rejects.empty:
        keys = rejects[[FILE_COLUMN, ROW_COLUMN]].drop_duplicates()
        cur.execute(
            sql.SQL(
                "DELETE FROM {} s USING unnest(%s::text[], %s::int[]) AS o(f, r)"
                " WHERE s._source_file = o.f AND s._source_row = o.r"
            ).format(stage),
            (keys[FILE_COLUMN].tolist(), keys[ROW_COLUMN].astype(int).tolist()),
        )
    rejects["reason"] = [
        f"{column}: no matching {'parent row' if stage_ == 'orphan' else 'calendar day or minute'}"
        for column, stage_ in zip(rejects["column"], rejects["stage"], strict=True)
    ]
    return rejects


def _replace_partitions(
    cur: psycopg.Cursor,
    contract: Contract,
    spec: SourceSpec,
    stage: sql.Identifier,
    batch: LoadBatch,
) -> int:
    """Remove rows of these partitions that the new files no longer carry.

    A row another table still references (an order with tickets) stays: removing it would break
    the child's foreign key, and the child's own file is what decides the child's fate.
    """
    schema = contract.warehouse.schema_name
    table = sql.Identifier(schema, spec.table)
    pk = sql.Identifier(spec.primary_key)
    referenced = [
        sql.SQL("NOT EXISTS (SELECT 1 FROM {child} c WHERE c.{column} = t.{pk})").format(
            child=sql.Identifier(schema, child.table), column=sql.Identifier(fk.column), pk=pk
        )
        for child in contract.sources.values()
        for fk in child.foreign_keys
        if contract.sources[fk.references] is spec
    ]
    cur.execute(
        sql.SQL(
            "DELETE FROM {table} t WHERE t._partition_key = ANY(%s)"
            " AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.{pk} = t.{pk}){referenced}"
        ).format(
            table=table,
            stage=stage,
            pk=pk,
            referenced=sql.SQL("").join(sql.SQL(" AND ") + clause for clause in referenced),
        ),
        # A partition whose file was rejected keeps its rows: no file is not "no rows".
        ([key for key in batch.partition_keys if key not in rejected_partitions(batch)],),
    )
    return cur.rowcount


def rejected_partitions(batch: LoadBatch) -> set[str]:
    return {outcome.partition_key for outcome in batch.files if outcome.rejection is not None}


def _upsert(
    cur: psycopg.Cursor,
    schema: str,
    spec: SourceSpec,
    stage: sql.Identifier,
    columns: list[str],
    several_versions: bool,
    order: str | None,
) -> tuple[int, int]:
    """Newest-partition-wins upsert in `order`; returns (inserted, updated)."""
    table = sql.Identifier(schema, spec.table)
    pk = sql.Identifier(spec.primary_key)
    written = [*columns, FILE_COLUMN, ROW_COLUMN, PARTITION_COLUMN, RUN_COLUMN]
    content = [name for name in columns if name != spec.primary_key]
    updates = [
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
        for name in [*content, FILE_COLUMN, ROW_COLUMN, PARTITION_COLUMN, RUN_COLUMN]
    ]
    updates.append(sql.SQL("_loaded_at = now()"))
    changed = (
        sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in content),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in content),
        )
        if content
        else sql.SQL("false")
    )
    target = sql.SQL(", ").join(sql.Identifier(name) for name in written)
    # Validation leaves one row per key and file; a batch of several files (a range) may carry
    # several versions of a key, and the newest partition's wins.
    rows = (
        sql.SQL(
            "SELECT DISTINCT ON ({pk}) {target} FROM {stage}"
            " ORDER BY {pk}, _partition_key DESC, _source_row DESC"
        )
        if several_versions
        else sql.SQL("SELECT {target} FROM {stage}")
    ).format(pk=pk, target=target, stage=stage)
    if order is not None:
        rows = sql.SQL("SELECT * FROM ({}) AS r ORDER BY {}").format(rows, sql.Identifier(order))
    cur.execute(
        sql.SQL(
            "WITH upserted AS ("
            " INSERT INTO {table} AS t ({target}) {rows}"
            " ON CONFLICT ({pk}) DO UPDATE SET {updates}"
            " WHERE EXCLUDED._partition_key >= t._partition_key AND ({changed}{newer})"
            " RETURNING (xmax = 0) AS inserted)"
            " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)"
            " FROM upserted"
        ).format(
            table=table,
            target=target,
            pk=pk,
            rows=rows,
            updates=sql.SQL(", ").join(updates),
            changed=changed,
            # A fact row belongs to the newest hour that carries it, changed or not, so that
            # replacing an older hour never removes it; dimensions move only on a real change.
            newer=sql.SQL(
                " OR EXCLUDED._partition_key > t._partition_key" if spec.kind == "fact" else ""
            ),
        )
    )
    inserted, updated = cur.fetchone() or (0, 0)
    return int(inserted), int(updated)


def _may_skip_fk_triggers(
    cur: psycopg.Cursor, schema: str, table: str, checks: list[_KeyCheck]
) -> bool:
    """Whether this load may leave its keys' proof to the orphan stage instead of FK triggers.

    The triggers re-prove every key the anti-join has just proven, one index lookup at a time:
    half of a 1 M-row fact load and of a 1 M-row dimension upsert. `session_replication_role =
    replica` turns them off for the upsert statement only; every other session, and this
    load's partition replace, still enforce every FK. Only when the proof is complete and holds:
    - the table's FKs in the database are exactly the ones the orphan stage checks (one added by
      hand, or dropped from the contract but still declared, would go unchecked);
    - no FK refers to the table itself (its parents would be the rows being written);
    - READ COMMITTED, so the anti-join sees the database as of after the parent locks;
    - the role may lock the parents in SHARE mode (UPDATE, DELETE or TRUNCATE on them) and set
      the parameter (a superuser, or from PostgreSQL 15 `GRANT SET ON PARAMETER
      session_replication_role`);
    - the table has no triggers of its own, which replica mode would turn off as well.
    Otherwise the triggers run as usual: slower, same result.
    """
    cur.execute(
        "WITH target AS (SELECT format('%%I.%%I', %s::text, %s::text)::regclass AS oid)"
        " SELECT current_setting('transaction_isolation') = 'read committed',"
        " EXISTS (SELECT FROM pg_trigger, target WHERE tgrelid = target.oid AND NOT tgisinternal),"
        " coalesce((SELECT array_agg(a.attname || '>' || p.relname || '.' || pa.attname)"
        " FROM target, pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)"
        " JOIN pg_class p ON p.oid = c.confrelid"
        " JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = ANY (c.confkey)"
        " WHERE c.conrelid = target.oid AND c.contype = 'f'), '{}')",
        (schema, table),
    )
    row = cur.fetchone()
    assert row is not None
    read_committed, own_triggers, declared = row
    proven = {f"{c.column}>{c.parent_table}.{c.parent_column}" for c in checks}
    parents = sorted({check.parent_table for check in checks})
    reason = None
    if set(declared) != proven:
        reason = "its declared foreign keys differ from the contract's"
    elif table in parents:
        reason = "it refers to itself"
    elif not read_committed:
        reason = "the transaction is not READ COMMITTED"
    elif own_triggers:
        reason = "it has triggers of its own"
    elif not _may_lock(cur, schema, parents):
        reason = "the role may not lock its parent tables"
    else:
        # Only a try can tell whether the role may set it (superuser, or a PostgreSQL 15+ grant);
        # it goes back to the default at once, for the partition replace still ahead.
        try:
            with cur.connection.transaction():
                cur.execute("SET LOCAL session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            reason = (
                "the role may not set session_replication_role"
                " (GRANT SET ON PARAMETER session_replication_role speeds loads up)"
            )
        else:
            cur.execute("SET LOCAL session_replication_role TO DEFAULT")
            return True
    log.info("%s's FK triggers run per row: %s", table, reason)
    return False


def _may_lock(cur: psycopg.Cursor, schema: str, tables: list[str]) -> bool:
    """Whether the role may take SHARE locks on these tables (it needs to be able to write them)."""
    row = cur.execute(
        "SELECT coalesce(bool_and(has_table_privilege(format('%%I.%%I', %s::text, name),"
        " 'UPDATE, DELETE, TRUNCATE')), true) FROM unnest(%s::text[]) AS name",
        (schema, tables),
    ).fetchone()
    return bool(row and row[0])


@contextmanager
def _fk_triggers_off(cur: psycopg.Cursor, off: bool) -> Iterator[None]:
    if not off:
        yield
        return
    cur.execute("SET LOCAL session_replication_role = replica")
    yield
    # Not in a `finally`: after an error the transaction is aborted, and its rollback resets it.
    cur.execute("SET LOCAL session_replication_role TO DEFAULT")


# A parent heap below this stays in cache however its rows are visited.
_ORDERED_PARENT_BYTES = 64 << 20


def _insert_order(cur: psycopg.Cursor, contract: Contract, spec: SourceSpec) -> str | None:
    """The foreign key to insert in order of, when one parent table is large.

    The child's index on that key, as large as the batch, is then filled in order instead of
    at random (measured with the FK triggers off: 33 s -> 17 s for 1 M orders). When the
    triggers run, their lookups of the large parent (1.8 M customers behind fact_order) walk
    it in order too instead of thrashing the buffer cache (64 s -> 40 s).
    """
    parents = {
        fk.column: contract.sources[fk.references].table
        for fk in spec.foreign_keys
        if contract.sources[fk.references] is not spec
    }
    if not parents:
        return None
    cur.execute(
        "SELECT pg_relation_size(format('%%I.%%I', %s::text, parent)::regclass)"
        " FROM unnest(%s::text[]) AS parent",
        (contract.warehouse.schema_name, list(parents.values())),
    )
    sizes = [int(row[0]) for row in cur.fetchall()]
    size, column = max(zip(sizes, parents, strict=True))
    return column if size >= _ORDERED_PARENT_BYTES else None


def _quarantine_rows(batch: LoadBatch, orphans: pd.DataFrame) -> pd.DataFrame:
    """One line per rejected source row: its first reason, all reasons, and its masked raw data."""
    file_level = [
        {
            FILE_COLUMN: outcome.file.relative_path,
            PARTITION_COLUMN: outcome.partition_key,
            "stage": "file",
            "rule": outcome.rejection.rule,
            "column": None,
            "reason": outcome.rejection.message,
        }
        for outcome in batch.files
        if outcome.rejection is not None
    ]
    lines = pd.concat(
        [
            batch.rejects,
            orphans.assign(**{PARTITION_COLUMN: _partition_of(batch, orphans)}),
            _expand_file_rejections(batch, pd.DataFrame(file_level)),
        ],
        ignore_index=True,
    )
    if lines.empty:
        return lines
    lines[ROW_COLUMN] = lines[ROW_COLUMN].astype("Int64")
    key = [FILE_COLUMN, ROW_COLUMN]
    reasons = (
        lines[["stage", "rule", "column", "reason"]]
        .astype(object)
        .where(lines[["stage", "rule", "column", "reason"]].notna(), None)
        .to_dict("records")
    )
    lines["reason_json"] = [json.dumps(reason, ensure_ascii=False) for reason in reasons]
    # Grouped by hand: a groupby with a Python aggregate per row took seconds for 50k rows.
    group = lines.groupby(key, sort=True, dropna=False).ngroup().to_numpy()
    lines = lines.iloc[np.argsort(group, kind="stable")].reset_index(drop=True)
    starts = np.flatnonzero(np.r_[True, np.diff(np.sort(group)) != 0])
    ends = np.r_[starts[1:], len(lines)]
    grouped = pd.DataFrame({name: lines[name].iloc[starts].to_numpy() for name in key})
    grouped[ROW_COLUMN] = grouped[ROW_COLUMN].astype("Int64")
    for name, source in [("partition_key", PARTITION_COLUMN), *((n, n) for n in _REASON_PARTS)]:
        grouped[name] = _first_present(lines[source], starts)
    reason_json = lines["reason_json"].tolist()
    grouped["reasons"] = [
        "[" + ",".join(reason_json[start:end]) + "]"
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    raw_columns = [
        name for name in batch.raw.columns if name not in (FILE_COLUMN, PARTITION_COLUMN)
    ]
    raw = batch.raw.set_index(key)[[c for c in raw_columns if c != ROW_COLUMN]]
    index = pd.MultiIndex.from_frame(grouped[key].astype(object))
    present = index.isin(raw.index)
    raw_json = pd.Series("{}", index=grouped.index, dtype=object)
    if present.any():
        rows = raw.loc[index[present]]
        raw_json[present] = rows.to_json(orient="records", lines=True).splitlines()
    errors = grouped["stage"].eq("file") & ~present
    raw_json[errors] = [json.dumps({"file_error": reason}) for reason in grouped["reason"][errors]]
    grouped["raw_data"] = raw_json
    grouped["duplicate"] = grouped["rule"].eq("duplicate")
    grouped["orphan"] = np.logical_or.reduceat(lines["stage"].eq("orphan").to_numpy(), starts)
    return grouped


_REASON_PARTS = ["stage", "rule", "column", "reason"]


def _first_present(values: pd.Series, starts: np.ndarray) -> np.ndarray:
    """Per group (rows `starts[i]` up to the next start), its first non-missing value, as
    groupby's "first" gives it; None where a group has none."""
    count = len(values)
    positions = np.where(values.notna().to_numpy(), np.arange(count), count)
    first = np.minimum.reduceat(positions, starts)
    picked = values.to_numpy(dtype=object)[np.minimum(first, count - 1)]
    picked[first == count] = None
    return picked


def _partition_of(batch: LoadBatch, frame: pd.DataFrame) -> pd.Series:
    partitions = {outcome.file.relative_path: outcome.partition_key for outcome in batch.files}
    return frame[FILE_COLUMN].map(partitions) if not frame.empty else pd.Series(dtype=object)


def _expand_file_rejections(batch: LoadBatch, file_level: pd.DataFrame) -> pd.DataFrame:
    """A rejected file quarantines each of its parsed rows (or one line when nothing parsed)."""
    if file_level.empty:
        return file_level
    rows = batch.raw[[FILE_COLUMN, ROW_COLUMN]]
    expanded = file_level.merge(rows, on=FILE_COLUMN, how="left")
    return expanded


_QUARANTINE_COLUMNS = [
    "source_file",
    "source_path",
    "source_table",
    "source_row",
    "rejection_stage",
    "rejection_rule",
    "rejection_column",
    "rejection_reason",
    "reasons",
    "raw_data",
    "asset_key",
    "partition_key",
    "run_id",
]


def _write_quarantine(
    cur: psycopg.Cursor,
    schema: str,
    stage: sql.Identifier,
    quarantine: pd.DataFrame,
    batch: LoadBatch,
    table: str,
    asset_key: str,
    run_id: str,
) -> None:
    """Resolve orphans that loaded, supersede what changed, insert what is new.

    A replay that rejects exactly the same rows for the same reasons leaves quarantine untouched.
    """
    target = sql.Identifier(schema, "quarantine")
    scope = (asset_key, batch.partition_keys)
    cur.execute(
        sql.SQL(
            "UPDATE {q} q SET resolved_at = now(), resolved_by_run = %s"
            " WHERE q.asset_key = %s AND q.partition_key = ANY(%s) AND q.rejection_stage = 'orphan'"
            " AND q.superseded_at IS NULL AND q.resolved_at IS NULL AND EXISTS (SELECT 1 FROM"
            " {stage} s WHERE s._source_file = q.source_path AND s._source_row = q.source_row)"
        ).format(q=target, stage=stage),
        (run_id, *scope),
    )
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _quarantine_new (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP"
        ).format(target)
    )
    if not quarantine.empty:
        rows = pd.DataFrame(
            {
                "source_file": quarantine[FILE_COLUMN].map(lambda path: path.rsplit("/", 1)[-1]),
                "source_path": quarantine[FILE_COLUMN],
                "source_table": table,
                "source_row": quarantine[ROW_COLUMN],
                "rejection_stage": quarantine["stage"],
                "rejection_rule": quarantine["rule"],
                "rejection_column": quarantine["column"],
                "rejection_reason": quarantine["reason"],
                "reasons": quarantine["reasons"],
                "raw_data": quarantine["raw_data"],
                "asset_key": asset_key,
                "partition_key": quarantine["partition_key"],
                "run_id": run_id,
            }
        )
        columns = sql.SQL(", ").join(sql.Identifier(name) for name in _QUARANTINE_COLUMNS)
        query = sql.SQL("COPY _quarantine_new ({}) FROM STDIN").format(columns)
        with cur.copy(query) as copy:
            for record in rows.itertuples(index=False, name=None):
                copy.write_row([None if pd.isna(value) else value for value in record])
    same = sql.SQL(
        "n.source_path = q.source_path AND n.source_row IS NOT DISTINCT FROM q.source_row"
        " AND n.reasons = q.reasons AND n.raw_data = q.raw_data"
    )
    cur.execute(
        sql.SQL(
            "UPDATE {q} q SET superseded_at = now(), superseded_by_run = %s"
            " WHERE q.asset_key = %s AND q.partition_key = ANY(%s)"
            " AND q.superseded_at IS NULL AND q.resolved_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM _quarantine_new n WHERE {same})"
        ).format(q=target, same=same),
        (run_id, *scope),
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {q} ({columns}) SELECT {columns} FROM _quarantine_new n"
            " WHERE NOT EXISTS (SELECT 1 FROM {q} q WHERE q.asset_key = %s"
            " AND q.superseded_at IS NULL AND q.resolved_at IS NULL AND {same})"
        ).format(
            q=target,
            columns=sql.SQL(", ").join(sql.Identifier(name) for name in _QUARANTINE_COLUMNS),
            same=same,
        ),
        (asset_key,),
    )


def _report(
    spec: SourceSpec,
    batch: LoadBatch,
    quarantine: pd.DataFrame,
    inserted: int,
    updated: int,
    removed: int,
) -> LoadReport:
    files: dict[str, FileCounts] = {}
    for outcome in batch.files:
        path = outcome.file.relative_path
        mine = quarantine[quarantine[FILE_COLUMN] == path] if not quarantine.empty else quarantine
        rows_rejected = int(mine[ROW_COLUMN].notna().sum()) if not mine.empty else 0
        files[path] = FileCounts(
            total=outcome.rows_read,
            loaded=outcome.rows_read - rows_rejected,
            quarantined=rows_rejected,
            duplicates=int(mine["duplicate"].sum()) if not mine.empty else 0,
            orphans=int(mine["orphan"].sum()) if not mine.empty else 0,
            status="failed" if outcome.rejection else "success",
            md5=outcome.file.md5,
            error=outcome.rejection.message if outcome.rejection else None,
        )
    by_stage = quarantine["stage"].value_counts().to_dict() if not quarantine.empty else {}
    return LoadReport(
        table=spec.table,
        rows_read=batch.rows_read,
        rows_loaded=sum(counts.loaded for counts in files.values()),
        rows_quarantined=sum(counts.quarantined for counts in files.values()),
        inserted=inserted,
        updated=updated,
        removed=removed,
        duplicates=sum(counts.duplicates for counts in files.values()),
        orphans=sum(counts.orphans for counts in files.values()),
        rejects_by_stage={str(stage): int(count) for stage, count in by_stage.items()},
        files=files,
    )


def _write_file_log(
    cur: psycopg.Cursor,
    schema: str,
    spec: SourceSpec,
    batch: LoadBatch,
    report: LoadReport,
    asset_key: str,
    run_id: str,
) -> None:
    """One row per file; a replay of identical files with identical outcomes adds nothing."""
    log = sql.Identifier(schema, "pipeline_file_log")
    entries = []
    for outcome in batch.files:
        counts = report.files[outcome.file.relative_path]
        entries.append(
            (
                str(outcome.file.path),
                outcome.file.name,
                outcome.file.md5,
                outcome.file.size,
                dt.datetime.fromtimestamp(outcome.file.mtime_ns / 1e9, tz=dt.UTC),
                outcome.folder_kind,
                spec.table,
                counts.status,
                "file" if outcome.rejection else None,
                counts.error,
                counts.total,
                counts.loaded,
                counts.quarantined,
                counts.duplicates,
                counts.orphans,
                asset_key,
                outcome.partition_key,
                run_id,
            )
        )
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _file_log_new (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP"
        ).format(log)
    )
    columns = [
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
        "asset_key",
        "partition_key",
        "run_id",
    ]
    names = sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    with cur.copy(sql.SQL("COPY _file_log_new ({}) FROM STDIN").format(names)) as copy:
        for entry in entries:
            copy.write_row(entry)
    same = sql.SQL(
        "n.file_name = l.file_name AND n.file_hash IS NOT DISTINCT FROM l.file_hash"
        " AND n.status = l.status AND n.total_records = l.total_records"
        " AND n.valid_records = l.valid_records AND n.quarantined = l.quarantined"
        " AND n.orphan_count = l.orphan_count AND n.duplicate_count = l.duplicate_count"
    )
    cur.execute(
        sql.SQL(
            "UPDATE {log} l SET superseded_at = now() WHERE l.asset_key = %s"
            " AND l.partition_key = ANY(%s) AND l.superseded_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM _file_log_new n WHERE {same})"
        ).format(log=log, same=same),
        (asset_key, batch.partition_keys),
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {log} ({names}) SELECT {names} FROM _file_log_new n WHERE NOT EXISTS"
            " (SELECT 1 FROM {log} l WHERE l.asset_key = n.asset_key"
            " AND l.partition_key = n.partition_key AND l.superseded_at IS NULL AND {same})"
        ).format(log=log, names=names, same=same),
    )
