"""Great Expectations suites, one per warehouse table, generated from the pipeline contract.

Each `config/expectations/<table>.json` is GE 1.x suite JSON, one per source table and one per
dimension history table. Expectations with `meta.source == "contract"` are generated from
`config/pipeline.yaml` and rewritten by `write_suites`; those with `meta.source ==
"hand-written"` are kept verbatim, after the generated ones. Any other `meta.source` is refused,
so an expectation can never vanish on regeneration.

`meta.severity` is "error" (default) or "warn"; `meta.skip_when_empty: true` makes the runner skip
an expectation on a partition that read back zero rows.

`expect_table_columns_to_match_set` uses `exact_match: false` with the contract and derived
columns: the warehouse tables also carry lineage columns (`_source_file`, …), and whether the
read-back query selects them is the caller's choice; the expectation guards that every contract
column is present.

Great Expectations is imported lazily (4-5 s): only `load_suite` needs it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastfeast_dagster.contract import Contract, SourceSpec

if TYPE_CHECKING:
    import great_expectations as gx

GENERATED = "contract"
HAND_WRITTEN = "hand-written"
SEVERITIES = ("error", "warn")
# PII columns hold HMAC-SHA256 hex digests (`pii.mask`), never the raw value: the contract's format
# rule applied before masking, this one applies to what is stored.
PII_TOKEN_REGEX = "^[0-9a-f]{64}$"
SUITE_META = {"generated_from": "config/pipeline.yaml"}


class SuiteError(ValueError):
    """A suite file is missing, malformed, or has an expectation Great Expectations rejects."""


def _expectation(type_: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": type_, "kwargs": kwargs, "meta": {"source": GENERATED}}


def _number(value: float) -> int | float:
    # The contract models min/max as floats; `1` reads better than `1.0` in the suite file.
    return int(value) if float(value).is_integer() else value


def generated_expectations(spec: SourceSpec, contract: Contract) -> list[dict[str, Any]]:
    """The contract's expectations for one table, in a fixed order (table, columns, key)."""
    expectations = [
        _expectation(
            "expect_table_columns_to_match_set",
            column_set=[*spec.columns, *spec.derived],
            exact_match=False,
        )
    ]
    source = contract.table_sources[spec.table]
    policies = contract.value_policies(source)
    stored = {column.name: column for column in contract.table_columns(source)}
    for name, column in spec.columns.items():
        # What the warehouse holds: a repaired value is NULL or the placeholder, never the bad one.
        placeholder = policies[name].placeholder
        if not stored[name].nullable:
            expectations.append(_expectation("expect_column_values_to_not_be_null", column=name))
        if column.allowed is not None:
            allowed = [*column.allowed, *([placeholder] if placeholder else [])]
            expectations.append(
                _expectation("expect_column_values_to_be_in_set", column=name, value_set=allowed)
            )
        if column.min is not None or column.max is not None:
            bounds = {
                key: _number(value)
                for key, value in (("min_value", column.min), ("max_value", column.max))
                if value is not None
            }
            expectations.append(
                _expectation("expect_column_values_to_be_between", column=name, **bounds)
            )
        if column.pii is not None:
            expectations.append(
                _expectation(
                    "expect_column_values_to_match_regex", column=name, regex=PII_TOKEN_REGEX
                )
            )
        elif column.format is not None:
            regex = contract.formats[column.format]
            if placeholder:
                regex = f"(?:{regex})|^{re.escape(placeholder)}$"
            expectations.append(
                _expectation("expect_column_values_to_match_regex", column=name, regex=regex)
            )
    expectations.append(_expectation("expect_column_values_to_be_unique", column=spec.primary_key))
    return expectations


def history_expectations(spec: SourceSpec) -> list[dict[str, Any]]:
    """A history table's invariants, over the versions `read_history` reads back: per member,
    each version ends where the next begins (no overlap, no gap), the last one is the only
    current one, and no version ends before it starts."""
    assert spec.history is not None
    key = spec.primary_key
    return [
        _expectation(
            "expect_table_columns_to_match_set",
            column_set=[key, *spec.history.track, "valid_from", "valid_to", "is_current"],
            exact_match=False,
        ),
        _expectation("expect_column_values_to_not_be_null", column=key),
        _expectation("expect_column_values_to_not_be_null", column="valid_from"),
        _expectation("expect_compound_columns_to_be_unique", column_list=[key, "valid_from"]),
        _expectation(
            "expect_column_pair_values_to_be_equal",
            column_A="valid_to",
            column_B="next_valid_from",
            ignore_row_if="either_value_is_missing",
        ),
        _expectation(
            "expect_column_pair_values_to_be_equal", column_A="is_current", column_B="is_last"
        ),
        _expectation(
            "expect_column_pair_values_a_to_be_greater_than_b",
            column_A="valid_to",
            column_B="valid_from",
            ignore_row_if="either_value_is_missing",
        ),
    ]


def suite_targets(contract: Contract) -> dict[str, list[dict[str, Any]]]:
    """Every suite the contract generates, by its table: each source's, each history table's."""
    targets = {
        spec.table: generated_expectations(spec, contract) for spec in contract.sources.values()
    }
    targets |= {
        spec.history_table: history_expectations(spec)
        for spec in contract.sources.values()
        if spec.history is not None
    }
    return targets


def _split(suite: dict[str, Any], where: str) -> tuple[list[dict], list[dict]]:
    """(generated, hand-written) expectations of a suite dict; refuses unmarked ones."""
    expectations = suite.get("expectations")
    if not isinstance(expectations, list):
        raise SuiteError(f"{where}: 'expectations' must be a list")
    generated: list[dict] = []
    hand_written: list[dict] = []
    for index, item in enumerate(expectations):
        meta = item.get("meta") if isinstance(item, dict) else None
        source = meta.get("source") if isinstance(meta, dict) else None
        if source == GENERATED:
            generated.append(item)
        elif source == HAND_WRITTEN:
            hand_written.append(item)
        else:
            raise SuiteError(
                f"{where}: expectation #{index} {_label(item)} has meta.source {source!r}; "
                f"use {HAND_WRITTEN!r} for expectations written by hand"
            )
    return generated, hand_written


def build_suite(
    table: str, generated: list[dict[str, Any]], existing: dict[str, Any] | None
) -> dict[str, Any]:
    """The suite for `table`: fresh generated expectations, then `existing`'s hand-written."""
    hand_written = _split(existing, table)[1] if existing is not None else []
    return {
        "name": table,
        "expectations": [*generated, *hand_written],
        "meta": dict(SUITE_META),
    }


def suite_path(directory: Path, table: str) -> Path:
    return directory / f"{table}.json"


def dumps(suite: dict[str, Any]) -> str:
    return json.dumps(suite, indent=2, sort_keys=True) + "\n"


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SuiteError(f"{path}: cannot read file: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise SuiteError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite must be a JSON object")
    return raw


def write_suites(contract: Contract, directory: Path) -> list[Path]:
    """Regenerate every table's suite, keeping hand-written expectations; returns changed files.

    Unchanged files are not rewritten, so a rebuild is a no-op for git and for file watchers.
    """
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for table, generated in suite_targets(contract).items():
        path = suite_path(directory, table)
        existing = _read(path) if path.exists() else None
        text = dumps(build_suite(table, generated, existing))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def _label(item: Any) -> str:
    if not isinstance(item, dict):
        return repr(item)
    kwargs = item.get("kwargs") or {}
    columns = kwargs.get("column") or ", ".join(
        str(kwargs[key]) for key in ("column_A", "column_B") if key in kwargs
    )
    return f"{item.get('type')}({columns})"


def suite_drift(contract: Contract, directory: Path) -> list[str]:
    """One message per suite file whose generated part no longer matches the contract."""
    messages: list[str] = []
    tables = set()
    for table, expected in suite_targets(contract).items():
        path = suite_path(directory, table)
        tables.add(path.name)
        if not path.exists():
            messages.append(f"{path}: missing")
            continue
        try:
            existing = _read(path)
            generated = _split(existing, str(path))[0]
        except SuiteError as error:
            messages.append(str(error))
            continue
        problems = []
        if existing.get("name") != table:
            problems.append(f"name {existing.get('name')!r} is not {table!r}")
        missing = [_label(item) for item in expected if item not in generated]
        stale = [_label(item) for item in generated if item not in expected]
        if missing:
            problems.append(f"not in file: {', '.join(missing)}")
        if stale:
            problems.append(f"no longer generated: {', '.join(stale)}")
        if generated != expected and not missing and not stale:
            problems.append("generated expectations are out of order")
        if problems:
            messages.append(f"{path}: differs from the contract ({'; '.join(problems)})")
    messages += [
        f"{path}: no source in the contract loads table {path.stem!r}"
        for path in sorted(directory.glob("*.json"))
        if path.name not in tables
    ]
    return messages


def import_gx() -> Any:
    """Import Great Expectations once, with usage analytics off unless explicitly configured."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


def load_suite(path: Path) -> gx.ExpectationSuite:
    """Build the GE suite of a file, refusing any expectation GE would reject or silently drop."""
    gx = import_gx()
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    raw = _read(path)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SuiteError(f"{path}: 'name' must be a non-empty string")
    _split(raw, str(path))
    expectations = []
    for index, item in enumerate(raw["expectations"]):
        where = f"{path}: expectation #{index} {_label(item)}"
        severity = item["meta"].get("severity", "error")
        if severity not in SEVERITIES:
            raise SuiteError(f"{where}: meta.severity {severity!r} is not one of {SEVERITIES}")
        try:
            with warnings.catch_warnings():
                # The string row_condition (total_amount check) is deprecated in GX 1.9 but only
                # removed in 2.0, which pyproject excludes; the warning would repeat on every load.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                expectations.append(ExpectationConfiguration(**item).to_domain_obj())
        # GE reports an unknown type, bad kwargs and unknown keys with unrelated exception types.
        except Exception as error:
            raise SuiteError(f"{where} is rejected by Great Expectations: {error}") from None

    # Building each expectation above makes GE name the offending one. ExpectationSuite() itself
    # only logs and drops what it cannot add (an unknown type, say), so what it kept is compared.
    suite = gx.ExpectationSuite(name=name, expectations=expectations, meta=raw.get("meta"))
    kept = [expectation.expectation_type for expectation in suite.expectations]
    wanted = [item["type"] for item in raw["expectations"]]
    if kept != wanted:
        dropped = next(
            (index for index, (a, b) in enumerate(zip(kept, wanted, strict=False)) if a != b),
            len(kept),
        )
        raise SuiteError(
            f"{path}: Great Expectations dropped expectation #{dropped} "
            f"{_label(raw['expectations'][dropped])} ({len(kept)} of {len(wanted)} kept)"
        )
    return suite


def expectations_command(action: str, contract: Contract, directory: Path) -> int:
    """`fastfeast expectations build|check`: regenerate the suites, or report drift (exit 1)."""
    if action == "build":
        changed = write_suites(contract, directory)
        for path in changed:
            print(f"wrote {path}")
        print(f"{len(changed)} of {len(suite_targets(contract))} suite(s) changed")
        return 0
    if action == "check":
        drift = suite_drift(contract, directory)
        for message in drift:
            print(message)
        if drift:
            print("run `fastfeast expectations build` and review the diff")
            return 1
        print(f"{len(suite_targets(contract))} suite(s) match the contract")
        return 0
    raise ValueError(f"unknown expectations action {action!r} (build or check)")
