"""Seeding, id blocks and the defect planner shared by the dimension and stream generators."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from fastfeast_dagster.synthetic.manifest import FileReport

# Random streams are keyed by (seed, purpose, ...) so adding one stream never shifts another.
MASTER, DRIFT, NEW_CUSTOMERS, STREAM, LATE_PARENTS = 1, 2, 3, 4, 5

EPOCH = dt.date(1970, 1, 1)
ID_BLOCK_ORIGIN = dt.date(2020, 1, 1)
# Far above any scaled master id, and below the 32-bit limit of an `int` column.
NEW_CUSTOMER_ID_BASE = 10_000_000
NEW_CUSTOMER_BLOCK = 100
NEW_CUSTOMERS_PER_DAY = 5
ORPHAN_ID_LOW, ORPHAN_ID_HIGH = 900_000_000, 999_999_999

# Written in nullable columns; every one is in the contract's null vocabulary.
NULL_TOKENS: tuple[str, ...] = ("", "N/A", "None", "null")

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND


def rng_for(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *tags]))


def scaled(base: float, scale: float) -> int:
    return max(1, round(base * scale))


def day_number(day: dt.date) -> int:
    return (day - EPOCH).days


def day_start_us(day: dt.date) -> int:
    return day_number(day) * 86_400 * US_PER_SECOND


def new_customer_ids(day: dt.date) -> np.ndarray:
    """The ids of customers first delivered in batch `day`: a block any day can compute."""
    first = NEW_CUSTOMER_ID_BASE + (day - ID_BLOCK_ORIGIN).days * NEW_CUSTOMER_BLOCK
    return np.arange(first, first + NEW_CUSTOMERS_PER_DAY, dtype=np.int64)


def cycle(values: Sequence[str | None], count: int) -> list[str | None]:
    return [values[i % len(values)] for i in range(count)]


def spread(rng: np.random.Generator, count: int, rate: float) -> int:
    """`count * rate` rounded stochastically, so small hours still get defects now and then."""
    expected = count * rate
    return int(np.floor(expected + rng.random()))


class Planner:
    """Hands out disjoint random rows so each defective row carries exactly one defect."""

    def __init__(self, rng: np.random.Generator, candidates: np.ndarray, report: FileReport):
        self._rng = rng
        self._queue = rng.permutation(np.asarray(candidates, dtype=np.int64))
        self._cursor = 0
        self.report = report

    def take(
        self, kind: str, count: int, rule: str | None = None, *, repair: bool = False
    ) -> np.ndarray:
        count = min(count, len(self._queue) - self._cursor)
        rows = np.sort(self._queue[self._cursor : self._cursor + count])
        self._cursor += count
        self.report.note(kind, count, rule, repair=repair)
        return rows

    def remaining(self) -> np.ndarray:
        return np.sort(self._queue[self._cursor :])
