"""The foreign-key proof of a load: every key of the batch is proven once, set-wise.

The orphan stage anti-joins the staged rows against each parent table; a row whose parent is
missing leaves staging and becomes a quarantine row of this load (stage `orphan`), where the
retry finds it once the parent arrives. Dates and minutes are proven by validation: it rejects a
date outside the contract's calendar, and the calendar tables hold exactly that range.

Where the proof is complete and holds until commit, the upsert skips the FK triggers' per-row
re-check of the same keys (`may_skip_fk_triggers`); every FK stays declared and enforced for
every other statement and session.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from fastfeast_dagster.batch import RESCUED_COLUMN
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.warehouse.scope import QUARANTINE_STAGE, STAGE, LoadScope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyProof:
    skip_triggers: bool  # the upsert may leave the keys to this proof
    orphans: int  # rows moved from staging to the load's quarantine rows


def prove_keys(cur: psycopg.Cursor, scope: LoadScope) -> KeyProof:
    """Lock the parents where the triggers can be skipped, then move orphans to quarantine."""
    skip = may_skip_fk_triggers(cur, scope)
    if skip:
        lock_parents(cur, scope.contract, scope.source)
        # Read under the lock: validation proved the dates against the contract's range.
        if any(ref.to_calendar for ref in scope.parents) and not _calendar_complete(cur, scope):
            log.info(
                "%s's FK triggers run per row: the calendar tables do not hold the contract's"
                " range",
                scope.spec.table,
            )
            skip = False
    return KeyProof(skip, _quarantine_orphans(cur, scope))


def lock_parents(cur: psycopg.Cursor, contract: Contract, source: str) -> None:
    """Hold off writers of `source`'s parent tables until commit, so no parent goes under it.

    An FK trigger locks each parent row it finds; a million-row hour would lock most of the
    customers that way (10 s measured, one WAL record each). One SHARE lock per parent table
    costs nothing and makes the orphan anti-join's proof hold until commit. It waits for, and
    then holds off, loads of those tables (other loads of the same table run alongside), and
    it is taken before this batch writes anything, so loads cannot deadlock on it.
    """
    schema = contract.warehouse.schema_name
    parents = sorted({ref.parent_table for ref in contract.relations.parents_of(source)})
    if parents:
        cur.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                sql.SQL(", ").join(sql.Identifier(schema, parent) for parent in parents)
            )
        )


def _quarantine_orphans(cur: psycopg.Cursor, scope: LoadScope) -> int:
    """Rows with a key that no parent row holds: out of staging, into the load's quarantine rows.

    One statement: the anti-join per foreign key, the rows' reasons in the contract's order, and
    their values as text (they passed validation, so these are the values that would have
    loaded; PII is already masked), with the values they rescued (`_rescued`, masked too).
    """
    checks = [ref for ref in scope.parents if not ref.to_calendar]
    if not checks:
        return 0
    missing = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT s.ctid AS id, {position} AS position, {name} AS column_name FROM {stage} s"
            " WHERE s.{column} IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM {parent} p WHERE p.{parent_column} = s.{column})"
        ).format(
            position=sql.Literal(position),
            name=sql.Literal(ref.column),
            stage=STAGE,
            column=sql.Identifier(ref.column),
            parent=scope.relation(ref.parent_table),
            parent_column=sql.Identifier(ref.parent_column),
        )
        for position, ref in enumerate(checks)
    )
    values = sql.SQL(", ").join(
        sql.SQL("{}, m.{}::text").format(sql.Literal(name), sql.Identifier(name))
        for name in scope.spec.columns
    )
    reason = sql.SQL("column_name || ': no matching parent row'")
    cur.execute(
        sql.SQL(
            "WITH missing AS ({missing}),"
            " found AS (SELECT id, array_agg(column_name ORDER BY position) AS columns,"
            "  jsonb_agg(jsonb_build_object('stage', 'orphan', 'rule', 'foreign_key',"
            "   'column', column_name, 'reason', {reason}) ORDER BY position) AS reasons"
            "  FROM missing GROUP BY id),"
            " moved AS (DELETE FROM {stage} s USING found f WHERE s.ctid = f.id"
            "  RETURNING s.*, f.columns, f.reasons)"
            " INSERT INTO {quarantine} (source_file, source_path, source_table, source_row,"
            " rejection_stage, rejection_rule, rejection_column, rejection_reason, reasons,"
            " raw_data, partition_key)"
            " SELECT regexp_replace(m._source_file, '^.*/', ''), m._source_file, {table},"
            " m._source_row, 'orphan', 'foreign_key', m.columns[1],"
            " m.columns[1] || ': no matching parent row', m.reasons,"
            " jsonb_build_object({values}) || coalesce(m.{rescued}, '{{}}'), m._partition_key"
            " FROM moved m"
        ).format(
            missing=missing,
            reason=reason,
            stage=STAGE,
            quarantine=QUARANTINE_STAGE,
            table=sql.Literal(scope.spec.table),
            values=values,
            rescued=sql.Identifier(RESCUED_COLUMN),
        )
    )
    return cur.rowcount


def may_skip_fk_triggers(cur: psycopg.Cursor, scope: LoadScope) -> bool:
    """Whether this load may leave its keys' proof to the orphan stage instead of FK triggers.

    The triggers re-prove every key the anti-join has just proven, one index lookup at a time:
    half of a 1 M-row fact load and of a 1 M-row dimension upsert. `session_replication_role =
    replica` turns them off for the upsert statement only; every other session, and this
    load's partition replace, still enforce every FK. Only when the proof is complete and holds:
    - the table's FKs in the database are exactly the contract's (one added by hand, or dropped
      from the contract but still declared, would go unchecked);
    - no FK refers to the table itself (its parents would be the rows being written);
    - the calendar tables hold exactly the contract's range, which validation checked the
      dates against (read by `prove_keys` under the parent locks);
    - READ COMMITTED, so the anti-join sees the database as of after the parent locks;
    - the role may lock the parents in SHARE mode (UPDATE, DELETE or TRUNCATE on them) and set
      the parameter (a superuser, or from PostgreSQL 15 `GRANT SET ON PARAMETER
      session_replication_role`);
    - the table has no triggers of its own, which replica mode would turn off as well.
    Otherwise the triggers run as usual: slower, same result.
    """
    table = scope.spec.table
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
        (scope.schema, table),
    )
    row = cur.fetchone()
    assert row is not None
    read_committed, own_triggers, declared = row
    proven = {f"{ref.column}>{ref.parent_table}.{ref.parent_column}" for ref in scope.parents}
    parents = sorted({ref.parent_table for ref in scope.parents})
    reason = None
    if set(declared) != proven:
        reason = "its declared foreign keys differ from the contract's"
    elif table in parents:
        reason = "it refers to itself"
    elif not read_committed:
        reason = "the transaction is not READ COMMITTED"
    elif own_triggers:
        reason = "it has triggers of its own"
    elif not _may_lock(cur, scope.schema, parents):
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


def _calendar_complete(cur: psycopg.Cursor, scope: LoadScope) -> bool:
    """`dim_date` holds every day of the contract's range and `dim_time` every minute."""
    calendar = scope.contract.calendar
    days = (calendar.last_date - calendar.first_date).days + 1
    keys = [int(day.strftime("%Y%m%d")) for day in (calendar.first_date, calendar.last_date)]
    row = cur.execute(
        sql.SQL(
            "SELECT (SELECT count(*) = %s AND min(date_key) = %s AND max(date_key) = %s FROM {}),"
            " (SELECT count(*) = 1440 FROM {})"
        ).format(scope.relation("dim_date"), scope.relation("dim_time")),
        (days, *keys),
    ).fetchone()
    return bool(row and row[0] and row[1])


def _may_lock(cur: psycopg.Cursor, schema: str, tables: list[str]) -> bool:
    """Whether the role may take SHARE locks on these tables (it needs to be able to write them)."""
    row = cur.execute(
        "SELECT coalesce(bool_and(has_table_privilege(format('%%I.%%I', %s::text, name),"
        " 'UPDATE, DELETE, TRUNCATE')), true) FROM unnest(%s::text[]) AS name",
        (schema, tables),
    ).fetchone()
    return bool(row and row[0])


@contextmanager
def fk_triggers_off(cur: psycopg.Cursor, proof: KeyProof) -> Iterator[None]:
    """The FK triggers off for the statements inside, when the proof allows it."""
    if not proof.skip_triggers:
        yield
        return
    cur.execute("SET LOCAL session_replication_role = replica")
    yield
    # Not in a `finally`: after an error the transaction is aborted, and its rollback resets it.
    cur.execute("SET LOCAL session_replication_role TO DEFAULT")
