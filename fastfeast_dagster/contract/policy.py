"""What a bad value does to its row: rejects it, or is repaired and the row loads.

A dimensional model keeps the member and flags the bad value; dropping a customer for a
malformed email would orphan every order that references it. So a row is rejected only when its
key, a foreign key or an *essential* column is bad. By default essential are the columns that
drive a date or time key (the fact's place in the calendar) and the money (float) columns of a
fact. Every other column is repaired: it becomes NULL, or for a required text column the
contract's placeholder, and the repair is recorded (`value_repair`).

A column declares `essential` and `on_invalid` to differ from the defaults; nonsense (a repair
of a key, a placeholder on a number, a repair of an essential column) is a contract error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastfeast_dagster.contract.model import ColumnSpec, SourceSpec

# Derived kinds whose source column places a row in the calendar.
_CALENDAR_KINDS = ("date_key", "time_key")


@dataclass(frozen=True)
class ValuePolicy:
    reject: bool  # a bad value rejects the row
    placeholder: str | None = None  # what a repaired value becomes; None: NULL

    @property
    def keeps_not_null(self) -> bool:
        """Whether a required column stays NOT NULL in the warehouse under this policy."""
        return self.reject or self.placeholder is not None


def value_policies(spec: SourceSpec, default_placeholder: str) -> dict[str, ValuePolicy]:
    """Each column's policy, and each derived column's (that of the column it derives from)."""
    policies = {
        name: _resolve(spec, name, column, default_placeholder)[0]
        for name, column in spec.columns.items()
    }
    return policies | {name: policies[derived.source] for name, derived in spec.derived.items()}


def policy_problems(spec: SourceSpec, at: str) -> Iterator[str]:
    """The contract errors of `spec`'s policies, each naming its key path."""
    for name, column in spec.columns.items():
        problem = _resolve(spec, name, column, "placeholder")[1]
        if problem is not None:
            yield f"{at}.columns.{name}.on_invalid: {problem}"


def _resolve(
    spec: SourceSpec, name: str, column: ColumnSpec, default_placeholder: str
) -> tuple[ValuePolicy, str | None]:
    """The column's policy, and what is wrong with its declaration (None when nothing is)."""
    asked = column.on_invalid
    placeholder = None if asked in (None, "reject_row", "set_null") else asked.placeholder  # type: ignore[union-attr]
    key = _key_role(spec, name)
    if key is not None:
        problem = None if asked in (None, "reject_row") else f"the {key} cannot be repaired"
        return ValuePolicy(reject=True), problem
    essential, why = _essential(spec, name, column)
    if asked == "reject_row":
        return ValuePolicy(reject=True), None
    if essential:
        problem = None
        if asked is not None:
            problem = f"{why}, so a bad value rejects its row; set essential: false to repair it"
        return ValuePolicy(reject=True), problem
    if placeholder is not None and column.type != "text":
        return ValuePolicy(reject=True), f"a placeholder applies to text columns, not {column.type}"
    if asked is None and not column.nullable and column.type == "text":
        placeholder = default_placeholder
    return ValuePolicy(reject=False, placeholder=placeholder), None


def _key_role(spec: SourceSpec, name: str) -> str | None:
    if name == spec.primary_key:
        return "primary key"
    if any(fk.column == name for fk in spec.foreign_keys):
        return "foreign key"
    return None


def _essential(spec: SourceSpec, name: str, column: ColumnSpec) -> tuple[bool, str]:
    if column.essential is not None:
        return column.essential, "it is declared essential"
    for derived_name, derived in spec.derived.items():
        if derived.source == name and derived.kind in _CALENDAR_KINDS:
            return True, f"it is essential by default (it drives {derived_name})"
    if spec.kind == "fact" and column.type == "float":
        return True, "it is essential by default (a money column of a fact)"
    return False, ""
