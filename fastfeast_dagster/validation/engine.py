"""The validation stages, as pure vectorised pandas driven by the contract.

Stages: **file** (the column set), **schema** (per-value typing with explicit accepted formats,
one null vocabulary, NOT NULL where the contract says so, allowed values) and **records** (format
rules, ranges, cross-field rules, dates inside the calendar, duplicate primary keys). Every rule is
evaluated on every row, so a row failing several rules records all of them; the orphan stage needs
the warehouse and runs in SQL at load time.

A reason never quotes the offending value: values can be PII, and the quarantine stores them
masked in `raw_data` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fastfeast_dagster.batch import ROW_COLUMN
from fastfeast_dagster.contract import (
    TEXT_DTYPE,
    ColumnSpec,
    Contract,
    NotBeforeRule,
    SourceSpec,
    SumEqualsRule,
    ValuePolicy,
)

REJECT_COLUMNS = [ROW_COLUMN, "stage", "rule", "column", "reason"]
INT32_MAX = 2**31 - 1

_INTEGER = r"[+-]?\d+(?:\.0*)?"
_DATE = r"\d{4}-\d{2}-\d{2}"
_TIMESTAMP = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
# An ISO-8601 UTC offset: `Z`, `+02`, `+0200` or `+02:00`.
_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


@dataclass
class ValidationResult:
    """Typed rows that load (repaired where a descriptive value was bad), one reject line per
    (rejected row, failed rule), and one repair line per (loaded row, repaired column)."""

    clean: pd.DataFrame
    rejects: pd.DataFrame
    repairs: pd.DataFrame
    duplicates: int = 0
    rejected_rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rejected_rows = int(self.rejects[ROW_COLUMN].nunique()) if len(self.rejects) else 0


@dataclass
class _Failures:
    """Collects (mask, stage, rule, column, reason) findings, and which rows they reject."""

    row_numbers: pd.Series
    policies: dict[str, ValuePolicy]
    rejected: np.ndarray  # per row: a failure on a column whose policy rejects
    parts: list[pd.DataFrame] = field(default_factory=list)

    def add(self, mask: pd.Series, stage: str, rule: str, column: str, reason: str) -> None:
        flags = mask.astype("boolean").to_numpy(dtype=bool, na_value=False)
        if not flags.any():
            return
        if self.policies[column].reject:
            self.rejected |= flags
        rows = self.row_numbers.to_numpy()[flags]
        self.parts.append(
            pd.DataFrame(
                {
                    ROW_COLUMN: rows,
                    "stage": stage,
                    "rule": rule,
                    "column": column,
                    "reason": reason,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in REJECT_COLUMNS})
        return pd.concat(self.parts, ignore_index=True).sort_values(ROW_COLUMN, kind="stable")


def parse_column(
    values: pd.Series, name: str, column: ColumnSpec, contract: Contract
) -> tuple[pd.Series, pd.Series]:
    """One column's text through the schema and records stages alone: its typed values (NA where
    null or bad) and a mask of the values that failed a rule of `column` (a missing value of a
    required one included).

    For text that reaches a column by another way than a file (`_rescued` values adopted into the
    contract, `warehouse/drift.py`; a rescued column's inferred type, `validation/drift.py`).
    """
    frame_rows = pd.Series(np.arange(1, len(values) + 1), index=values.index)
    failures = _Failures(frame_rows, {name: ValuePolicy(reject=True)}, np.zeros(len(values), bool))
    zone = contract.partitions.timezone
    typed = _schema_stage(values, name, column, contract.null_vocabulary, failures, zone)
    _records_stage(typed, name, column, contract, failures)
    rejected = pd.Series(failures.rejected, index=values.index)
    return typed.mask(rejected), rejected


def validate(frame: pd.DataFrame, spec: SourceSpec, contract: Contract) -> ValidationResult:
    """Schema and records stages over an all-text frame whose columns passed the column check
    (`drift.py`).

    A failure rejects its row when its column's policy says so (keys, foreign keys, essential
    columns); a row that only has failures of other columns loads, with those values repaired.
    """
    policies = contract.value_policies(contract.table_sources[spec.table])
    failures = _Failures(frame[ROW_COLUMN], policies, np.zeros(len(frame), dtype=bool))
    null_tokens = contract.null_vocabulary
    typed: dict[str, pd.Series] = {ROW_COLUMN: frame[ROW_COLUMN]}

    for name, column in spec.columns.items():
        typed[name] = _schema_stage(
            frame[name], name, column, null_tokens, failures, contract.partitions.timezone
        )
    for name, column in spec.columns.items():
        _records_stage(typed[name], name, column, contract, failures)
    for rule in spec.rules:
        _cross_field_rule(typed, rule, failures)
    _calendar_stage(typed, spec, contract, failures)

    typed_frame = pd.DataFrame(typed)
    # Duplicates among the rows that load: a rejected row does not occupy its key.
    loading = ~failures.rejected
    duplicate = np.zeros(len(frame), dtype=bool)
    duplicate[loading] = typed_frame.loc[loading, spec.primary_key].duplicated().to_numpy()
    failures.add(
        pd.Series(duplicate, index=frame.index),
        "records",
        "duplicate",
        spec.primary_key,
        "primary key repeats an earlier row",
    )
    lines = failures.frame()
    rejected = lines[ROW_COLUMN].isin(frame[ROW_COLUMN].to_numpy()[failures.rejected])
    repairs = _repair(typed_frame, lines[~rejected], spec, policies)
    clean = typed_frame.loc[~failures.rejected].reset_index(drop=True)
    return ValidationResult(clean, lines[rejected], repairs, int(duplicate.sum()))


def _repair(
    typed: pd.DataFrame, lines: pd.DataFrame, spec: SourceSpec, policies: dict[str, ValuePolicy]
) -> pd.DataFrame:
    """Give each bad value of a loading row its repaired value; one line per (row, column)."""
    # A derived column's failure (a date outside the calendar) repairs the column it comes from.
    columns = lines["column"].map(
        lambda name: spec.derived[name].source if name in spec.derived else name
    )
    repairs = lines.assign(column=columns).drop_duplicates([ROW_COLUMN, "column"])
    repairs["repaired_to"] = repairs["column"].map(lambda name: policies[name].placeholder)
    positions = pd.Index(typed[ROW_COLUMN]).get_indexer(repairs[ROW_COLUMN])
    for column, chosen in repairs.groupby("column", sort=False).groups.items():
        placeholder = policies[str(column)].placeholder
        rows = positions[repairs.index.get_indexer(chosen)]
        values = typed[column].copy()
        values.iloc[rows] = pd.NA if placeholder is None else placeholder
        typed[column] = values
    return repairs.reset_index(drop=True)[[*REJECT_COLUMNS, "repaired_to"]]


def _schema_stage(
    raw: pd.Series,
    name: str,
    column: ColumnSpec,
    null_tokens: frozenset[str],
    failures: _Failures,
    zone: str,
) -> pd.Series:
    text = raw.astype(TEXT_DTYPE).str.strip()
    is_null = text.isna() | text.str.lower().isin(null_tokens)
    present = text.mask(is_null)
    value, bad_type, expected = _parse(present, column, zone)
    failures.add(bad_type, "schema", "type", name, f"{name}: {expected}")
    if not column.nullable:
        failures.add(is_null, "schema", "not_null", name, f"{name}: required value is missing")
    if column.allowed is not None:
        outside = ~is_null & ~present.isin(column.allowed)
        allowed = ", ".join(column.allowed)
        failures.add(outside, "schema", "allowed_values", name, f"{name}: not one of {allowed}")
    return value.mask(bad_type.fillna(False).astype(bool))


def _parse(present: pd.Series, column: ColumnSpec, zone: str) -> tuple[pd.Series, pd.Series, str]:
    """Typed values, a mask of unparseable non-null values, and what was expected.

    A timestamp with a UTC offset is converted to the wall clock of `zone`, the contract's, in
    which the files' other timestamps are written.
    """
    if column.type == "text":
        return present, pd.Series(False, index=present.index), "text"
    if column.type == "int":
        value = _integers(present)
        return value, present.notna() & value.isna(), "not an integer in the 32-bit range"
    if column.type == "float":
        number = _floats(present)
        finite = number.notna() & np.isfinite(number.fillna(0).to_numpy(dtype=float))
        return number.where(finite), present.notna() & ~finite, "not a finite number"
    if column.type == "bool":
        value = present.str.lower().map(_BOOLEANS).astype("boolean")
        return value, present.notna() & value.isna(), "not a boolean (true/false/1/0)"
    if column.type == "date":
        shaped = present.where(present.str.fullmatch(_DATE).fillna(False))
        value = _datetimes(shaped, "%Y-%m-%d")
        return value, present.notna() & value.isna(), "not a date (YYYY-MM-DD)"
    shaped = present.where(
        present.str.fullmatch(f"{_TIMESTAMP}{_OFFSET}?").fillna(False)
    ).str.replace("T", " ", regex=False)
    value = _datetimes(shaped, "ISO8601", zone)
    return value, present.notna() & value.isna(), "not an ISO-8601 timestamp"


def _integers(present: pd.Series) -> pd.Series:
    """Values shaped like `370`, `-5`, `+007` or `370.0` that fit 32 bits; missing otherwise.

    Arrow parses the digits (pandas' to_numeric was the slowest step of validation); Arrow's
    integer parser refuses a sign of `+` and may overflow, so the sign and leading zeros come
    off first and more than ten digits is out of range before any parsing. (to_numeric read
    twenty leading zeros before a 5 as 0; this reads 5.)
    """
    text = pa.array(present.array, pa.large_string())
    shaped = pc.fill_null(pc.match_substring_regex(text, f"^{_INTEGER}$"), False)
    digits = pc.replace_substring_regex(pc.if_else(shaped, text, None), r"\.0*$", "")
    negative = pc.starts_with(digits, "-")
    unsigned = pc.if_else(
        pc.or_(negative, pc.starts_with(digits, "+")), pc.utf8_slice_codeunits(digits, 1), digits
    )
    magnitude = pc.utf8_ltrim(unsigned, "0")
    magnitude = pc.if_else(pc.equal(magnitude, ""), "0", magnitude)
    short = pc.if_else(pc.less_equal(pc.utf8_length(magnitude), 10), magnitude, None)
    number = pc.cast(short, pa.int64())
    number = pc.if_else(negative, pc.negate(number), number)
    fits = pc.and_(pc.greater_equal(number, -INT32_MAX - 1), pc.less_equal(number, INT32_MAX))
    value = pc.if_else(pc.fill_null(fits, False), number, None)
    return pd.Series(
        value.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), index=present.index
    )


# What a float may look like; anything else is not a number. `inf` and `nan` parse (and then
# fail the finite check, as pandas' reading of them did).
_FLOAT = r"^[+-]?(([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))$"


def _floats(present: pd.Series) -> pd.Series:
    """Numbers parsed by Arrow, after a shape check that leaves it nothing it could refuse.

    pandas' to_numeric is not used at all: an exponent like `7e029807059171` crashes the
    process inside it (segmentation fault); Arrow reads it as infinity, which fails the finite
    check like `1e400`.
    """
    text = pa.array(present.array, pa.large_string())
    shaped = pc.fill_null(pc.match_substring_regex(text, _FLOAT), False)
    parsed = pc.cast(pc.if_else(shaped, text, None), pa.float64())
    return pd.Series(
        pd.array(parsed.to_numpy(zero_copy_only=False), dtype="Float64"), index=present.index
    )


def _datetimes(shaped: pd.Series, pandas_format: str, zone: str | None = None) -> pd.Series:
    """Dates or timestamps already shaped by the regex; Arrow parses when it accepts them all.

    Arrow's ISO-8601 cast gives the same nanoseconds as pandas and refuses what pandas turns
    into NaT (Feb 30, hour 24, years outside 1677-2262); one such value sends the column to
    pandas, which marks it alone. Values with a UTC offset become `zone`'s wall clock.
    """
    if zone is not None:
        offset = shaped.str.contains(f"{_OFFSET}$").fillna(False).to_numpy(dtype=bool)
        if offset.any():
            moment = pd.to_datetime(shaped[offset], format=pandas_format, utc=True, errors="coerce")
            local = moment.dt.tz_convert(zone).dt.tz_localize(None)
            return _datetimes(shaped.mask(offset), pandas_format).mask(offset, local)
    try:
        parsed = pc.cast(pa.array(shaped.array, pa.large_string()), pa.timestamp("ns"))
    except pa.ArrowInvalid:
        return pd.to_datetime(shaped, format=pandas_format, errors="coerce")
    return pd.Series(parsed.to_pandas(), index=shaped.index)


def _records_stage(
    value: pd.Series, name: str, column: ColumnSpec, contract: Contract, failures: _Failures
) -> None:
    if column.format is not None:
        pattern = re.compile(contract.formats[column.format])
        matches = value.str.fullmatch(pattern.pattern)
        failures.add(
            value.notna() & ~matches.fillna(False),
            "records",
            "format",
            name,
            f"{name}: does not match the {column.format} format",
        )
    if column.min is not None:
        failures.add(value < column.min, "records", "range", name, f"{name}: below {column.min}")
    if column.max is not None:
        failures.add(value > column.max, "records", "range", name, f"{name}: above {column.max}")


def _cross_field_rule(
    typed: dict[str, pd.Series], rule: NotBeforeRule | SumEqualsRule, failures: _Failures
) -> None:
    if isinstance(rule, NotBeforeRule):
        broken = typed[rule.column] < typed[rule.reference]
        reason = f"{rule.column} is earlier than {rule.reference}"
    else:
        expected = sum((typed[name] for name in rule.plus), start=0) - sum(
            (typed[name] for name in rule.minus), start=0
        )
        broken = (typed[rule.column] - expected).abs() > rule.tolerance + 1e-9
        parts = " + ".join(rule.plus) + "".join(f" - {name}" for name in rule.minus)
        reason = f"{rule.column} differs from {parts} by more than {rule.tolerance}"
    failures.add(broken, "records", rule.name, rule.column, reason)


def _calendar_stage(
    typed: dict[str, pd.Series], spec: SourceSpec, contract: Contract, failures: _Failures
) -> None:
    """A date key must fall inside the contract's calendar, which `dim_date` holds; a timestamp
    always has its minute in `dim_time`. A date outside it is a bad value, not a missing parent."""
    first = pd.Timestamp(contract.calendar.first_date)
    after_last = pd.Timestamp(contract.calendar.last_date) + pd.Timedelta(days=1)
    for name, derived in spec.derived.items():
        if derived.kind != "date_key":
            continue
        moment = typed[derived.source]
        failures.add(
            (moment < first) | (moment >= after_last),
            "records",
            "calendar_range",
            name,
            f"{name}: {derived.source} is outside the calendar"
            f" ({contract.calendar.first_date} to {contract.calendar.last_date})",
        )
