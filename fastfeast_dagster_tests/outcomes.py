"""What a loaded generated day must look like in the warehouse, by the generator's manifest.

Shared by the runs through `fastfeast ingest` and through the daemon under `fastfeast dev`:
the same files must give the same warehouse, whichever way they were loaded.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import psycopg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.synthetic import Manifest


def _query(url: str, text: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(text).fetchall()


def assert_files_load_as_expected(url: str, root: Path, manifest: Manifest) -> None:
    """Per file: read, loaded, quarantined and repaired counts and every reject and repair rule
    equal the manifest's; per table, the row count."""
    logged = {
        str(Path(path).relative_to(root)): (total, loaded, quarantined, repaired)
        for path, total, loaded, quarantined, repaired in _query(
            url,
            "SELECT file_path, total_records, valid_records, quarantined, repaired"
            " FROM pipeline_file_log WHERE superseded_at IS NULL",
        )
    }
    expected = {
        path: (e["rows"], e["expected_loaded"], e["expected_quarantined"], e["expected_repaired"])
        for path, e in manifest.files.items()
    }
    assert logged == expected
    for total, loaded, quarantined, repaired in logged.values():
        assert total == loaded + quarantined and repaired <= loaded
    outcomes = {
        "quarantine": (
            "SELECT source_path, rejection_stage, rejection_rule, rejection_column, count(*)"
            " FROM quarantine WHERE superseded_at IS NULL AND resolved_at IS NULL"
            " GROUP BY 1, 2, 3, 4",
            "expected_rejects",
        ),
        "value_repair": (
            "SELECT source_path, repair_stage, repair_rule, repair_column, count(*)"
            " FROM value_repair WHERE superseded_at IS NULL GROUP BY 1, 2, 3, 4",
            "expected_repairs",
        ),
    }
    for table, (query, key) in outcomes.items():
        found = Counter(
            {(p, f"{stage}/{rule}/{column}"): n for p, stage, rule, column, n in _query(url, query)}
        )
        wanted = Counter(
            {(p, rule): n for p, e in manifest.files.items() for rule, n in e[key].items()}
        )
        assert found == wanted, table
    for table, counts in manifest.tables.items():
        assert _query(url, f"SELECT count(*) FROM {table}") == [(counts["expected_rows"],)], table


def assert_orphans_reference_no_delivered_key(url: str, root: Path, contract: Contract) -> None:
    """Every orphan row ever written (superseded and resolved ones included) misses a parent
    that no delivered file holds (a dimension) or that did not load (an order or a ticket)."""
    delivered = _delivered_keys(root, contract)
    orphans = _query(
        url,
        "SELECT q.source_table, r ->> 'column', q.raw_data ->> (r ->> 'column')"
        " FROM quarantine q, jsonb_array_elements(q.reasons) AS r WHERE r ->> 'stage' = 'orphan'",
    )
    assert orphans, "the generator plants orphans"
    parents = {
        (ref.child_table, ref.column): ref.parent_table
        for ref in contract.relations.references
        if not ref.to_calendar
    }
    for table, column, key in orphans:
        parent = parents[(table, column)]
        if parent.startswith("dim_"):
            assert key not in delivered[parent], (table, column, key)
        else:
            found = _query(url, f"SELECT 1 FROM {parent} WHERE {column} = '{key}'")
            assert not found, (table, column, key)


def _delivered_keys(root: Path, contract: Contract) -> dict[str, set[str]]:
    """Every key value of every dimension file delivered, as text."""
    keys: dict[str, set[str]] = {}
    for spec in contract.dimensions.values():
        found = keys.setdefault(spec.table, set())
        for path in root.rglob("*"):
            if path.name not in spec.files.values():
                continue
            if path.suffix == ".csv":
                with path.open(newline="") as handle:
                    found |= {row[spec.primary_key].strip() for row in csv.DictReader(handle)}
            else:
                found |= {
                    str(row[spec.primary_key]).strip() for row in json.loads(path.read_text())
                }
    return keys
