"""What the generator wrote and what a correct pipeline must make of it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FileReport:
    """Per-file expectations; every defective row carries exactly one defect, so counts are exact.

    A defect of a key, a foreign key or an essential column rejects its row (`rejects`); a
    defect of any other column is repaired and the row loads (`repairs`: one value per row).
    """

    rows: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)
    defects: Counter[str] = field(default_factory=Counter)

    def note(self, kind: str, count: int, rule: str | None = None, *, repair: bool = False) -> None:
        """Record `count` rows carrying defect `kind`; `rule` is the reject (or, with `repair`,
        the repair) key `stage/rule/column` they must hit."""
        if count <= 0:
            return
        self.defects[kind] += count
        if rule is not None:
            (self.repairs if repair else self.rejects)[rule] += count

    def copy(self) -> FileReport:
        return FileReport(
            self.rows, Counter(self.rejects), Counter(self.repairs), Counter(self.defects)
        )

    def to_json(self) -> dict[str, Any]:
        quarantined = sum(self.rejects.values())
        return {
            "rows": self.rows,
            "expected_loaded": self.rows - quarantined,
            "expected_quarantined": quarantined,
            "expected_rejects": dict(sorted(self.rejects.items())),
            "expected_repaired": sum(self.repairs.values()),
            "expected_repairs": dict(sorted(self.repairs.items())),
            "defects": dict(sorted(self.defects.items())),
        }


@dataclass
class Manifest:
    """The content of `manifest.json`: plain JSON types only, so it round-trips exactly."""

    seed: int
    day: str
    hours: list[int]
    scale: float
    files: dict[str, dict[str, Any]]
    tables: dict[str, dict[str, int]]
    pii_clear_values: dict[str, dict[str, list[str]]]
    changes: dict[str, dict[str, list[int]]]
    changed_values: dict[str, dict[str, dict[str, str]]]
    order_updates: list[dict[str, Any]]
    ticket_updates: list[dict[str, Any]]
    late_parent_orders: list[str]
    late_files: list[str]
    # Members loaded with a repaired value, by dimension: facts reference them like any other.
    repaired_members: dict[str, list[int]]
    # The master's members that load (all but those with a bad key), by dimension.
    master_members: dict[str, list[int]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text(encoding="utf-8")))
