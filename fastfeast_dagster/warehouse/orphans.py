"""Orphans after the fact: which quarantined rows now resolve, and promotion of those that never do.

A row quarantined at the orphan stage waits for its parent. When parents arrive, the partitions
holding rows whose every foreign key now resolves are re-loaded through the normal path (the
retry sensor asks for them; the load marks the rows resolved). Rows still unresolved after the
retry window become true orphans: recorded once, with their first quarantine time and the
foreign keys that never resolved, and never deleted from quarantine.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from fastfeast_dagster.contract import Contract, SourceSpec

_OPEN_ORPHANS = (
    "q.source_table = %(table)s AND q.rejection_stage = 'orphan'"
    " AND q.superseded_at IS NULL AND q.resolved_at IS NULL"
)


def _raw_key(
    spec: SourceSpec, column: str, null_tokens: list[str], alias: str = "q"
) -> sql.Composable:
    """The raw text of a key as the parent's type; NULL for any null token."""
    raw = sql.SQL("nullif(btrim({}.raw_data ->> {}), '')").format(
        sql.Identifier(alias), sql.Literal(column)
    )
    tokens = sql.SQL(", ").join(sql.Literal(token) for token in null_tokens if token)
    present = sql.SQL("CASE WHEN lower({raw}) IN ({tokens}) THEN NULL ELSE {raw} END").format(
        raw=raw, tokens=tokens
    )
    if spec.columns[column].type == "int":
        # The row passed typing before it became an orphan, so its text casts cleanly.
        return sql.SQL(
            "CASE WHEN {0} ~ '^[+-]?[0-9]+([.]0*)?$' THEN ({0})::numeric::integer END"
        ).format(present)
    return present


def resolvable_partitions(conn: psycopg.Connection, contract: Contract) -> dict[str, list[str]]:
    """Per table, the partitions holding open orphans whose every foreign key now resolves."""
    schema = contract.warehouse.schema_name
    found: dict[str, list[str]] = {}
    for name, spec in contract.sources.items():
        references = [ref for ref in contract.relations.parents_of(name) if not ref.to_calendar]
        if not references:
            continue
        conditions = [
            sql.SQL(
                "({key} IS NULL OR EXISTS (SELECT 1 FROM {parent} p WHERE p.{parent_key} = {key}))"
            ).format(
                key=_raw_key(spec, ref.column, contract.null_tokens),
                parent=sql.Identifier(schema, ref.parent_table),
                parent_key=sql.Identifier(ref.parent_column),
            )
            for ref in references
        ]
        query = sql.SQL(
            "SELECT DISTINCT q.partition_key FROM {quarantine} q WHERE {open} AND {resolved}"
            " ORDER BY 1"
        ).format(
            quarantine=sql.Identifier(schema, "quarantine"),
            open=sql.SQL(_OPEN_ORPHANS),
            resolved=sql.SQL(" AND ").join(conditions),
        )
        partitions = [row[0] for row in conn.execute(query, {"table": spec.table})]
        if partitions:
            found[spec.table] = partitions
    return found


def open_orphan_partitions(conn: psycopg.Connection, contract: Contract) -> set[tuple[str, str]]:
    """(table, partition) pairs that hold open orphans, resolvable or not."""
    query = sql.SQL(
        "SELECT DISTINCT source_table, partition_key FROM {} WHERE rejection_stage = 'orphan'"
        " AND superseded_at IS NULL AND resolved_at IS NULL"
    ).format(sql.Identifier(contract.warehouse.schema_name, "quarantine"))
    return {(table, partition) for table, partition in conn.execute(query)}


def promote_true_orphans(
    conn: psycopg.Connection, contract: Contract, window_hours: float
) -> tuple[int, int]:
    """Record orphans older than the window as true orphans; returns (promoted, waiting).

    A true orphan is a source record (table + primary key), recorded once: a re-delivered hour
    quarantines its orphans again under new quarantine rows, which must not promote them twice.
    """
    schema = contract.warehouse.schema_name
    promoted = waiting = 0
    with conn.transaction():
        for name, spec in contract.sources.items():
            if not contract.relations.parent_sources(name):
                continue
            names = {
                "true_orphan": sql.Identifier(schema, "true_orphan"),
                "quarantine": sql.Identifier(schema, "quarantine"),
                "open": sql.SQL(_OPEN_ORPHANS),
                "key": _raw_key(spec, spec.primary_key, contract.null_tokens),
                "first_key": _raw_key(spec, spec.primary_key, contract.null_tokens, "first"),
                "promoted_key": _raw_key(spec, spec.primary_key, contract.null_tokens, "t"),
            }
            not_promoted = sql.SQL(
                "NOT EXISTS (SELECT 1 FROM {true_orphan} t"
                " WHERE t.source_table = q.source_table AND {promoted_key} = {key})"
            ).format(**names)
            params = {"table": spec.table, "window": window_hours * 3600}
            promoted += conn.execute(
                sql.SQL(
                    """
                    INSERT INTO {true_orphan} (quarantine_id, source_file, source_table,
                        partition_key, unresolved_fk, raw_data, first_seen_at)
                    -- One per record, should two open partitions quarantine the same one.
                    SELECT DISTINCT ON ({key})
                        q.quarantine_id, q.source_file, q.source_table, q.partition_key,
                        (SELECT string_agg(DISTINCT r ->> 'column', ',')
                           FROM jsonb_array_elements(q.reasons) AS r
                          WHERE r ->> 'stage' = 'orphan'),
                        q.raw_data,
                        -- A re-delivered record keeps its first quarantine time.
                        (SELECT min(first.quarantined_at) FROM {quarantine} first
                          WHERE first.source_table = q.source_table
                            AND first.rejection_stage = 'orphan' AND {first_key} = {key})
                    FROM {quarantine} q
                    WHERE {open} AND {not_promoted}
                      AND q.quarantined_at < now() - make_interval(secs => %(window)s)
                    ORDER BY {key}, q.quarantined_at DESC
                    ON CONFLICT (quarantine_id) DO NOTHING
                    """
                ).format(not_promoted=not_promoted, **names),
                params,
            ).rowcount
            (count,) = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {quarantine} q WHERE {open} AND {not_promoted}"
                ).format(not_promoted=not_promoted, **names),
                params,
            ).fetchone() or (0,)
            waiting += int(count)
    return promoted, waiting
