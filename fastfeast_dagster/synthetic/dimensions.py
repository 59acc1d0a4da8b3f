"""The four entity dimensions of the master snapshot, with their defects.

The master is a function of (seed, scale) only; a batch day (`snapshots.py`) is the master plus
that day's drift plus the customers first delivered that day, so consecutive days generated into
one folder agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastfeast_dagster.synthetic.common import (
    MASTER,
    NULL_TOKENS,
    US_PER_SECOND,
    Planner,
    cycle,
    day_number,
    rng_for,
    scaled,
)
from fastfeast_dagster.synthetic.manifest import FileReport
from fastfeast_dagster.synthetic.reference_data import (
    AGENT_DOMAINS,
    BAD_EMAILS,
    BAD_PHONES,
    CATEGORIES,
    CUSTOMER_DOMAINS,
    ENTITIES,
    FEMALE,
    LAST,
    MALE,
    MASTER_UPDATED,
    MOBILE_PREFIXES,
    PRICE_TIERS,
    REGIONS,
    RESTAURANT_WORDS,
    SHIFTS,
    SKILLS,
    TEAMS,
    VEHICLES,
)
from fastfeast_dagster.synthetic.render import (
    NAN_LITERAL,
    Frame,
    Kind,
    booleans,
    dates,
    decimals,
    ints,
    join,
    padded,
    pick,
    timestamps,
)


@dataclass
class Dim:
    """One dimension file: its rows as written, the expectations, and what the stream may use."""

    source: str
    frame: Frame
    report: FileReport
    ids: np.ndarray  # base row i holds ids[i]
    loaded: np.ndarray  # base rows that survive validation
    positions: np.ndarray  # row of base row i in `frame` (copies are interleaved)
    stable: np.ndarray  # clean base rows no defect touched: safe to drift
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    repaired: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # base rows


def _frame(columns: dict[str, pa.Array], numbers: set[str], flags: set[str] = frozenset()) -> Frame:
    kinds: dict[str, Kind] = {n: "number" for n in numbers} | {n: "bool" for n in flags}
    return Frame(columns, kinds)


# ---------------------------------------------------------------- shared column builders


def _people(rng: np.random.Generator, count: int) -> tuple[pa.Array, pa.Array, np.ndarray]:
    gender = rng.integers(0, 2, count)
    first = pick(MALE + FEMALE, gender * len(MALE) + rng.integers(0, len(MALE), count))
    last = pick(LAST, rng.integers(0, len(LAST), count))
    return first, last, gender


def _emails(
    rng: np.random.Generator, first: pa.Array, last: pa.Array, ids: np.ndarray, domains: list[str]
) -> pa.Array:
    domain = pick(domains, rng.integers(0, len(domains), len(ids)))
    return join(pc.utf8_lower(first), ".", pc.utf8_lower(last), ints(ids), "@", domain)


def _phones(rng: np.random.Generator, count: int) -> pa.Array:
    prefix = pick(MOBILE_PREFIXES, rng.integers(0, len(MOBILE_PREFIXES), count))
    return join(prefix, padded(rng.integers(0, 10**8, count), 8))


def _stamps(rng: np.random.Generator, micros: np.ndarray) -> pa.Array:
    # Mixed but valid ISO layouts: a few with microseconds, a few with a `T` separator.
    count = len(micros)
    return timestamps(micros, rng.random(count) < 0.1, rng.random(count) < 0.05)


def _past_days(rng: np.random.Generator, count: int, first: dt.date, last: dt.date) -> np.ndarray:
    return rng.integers(day_number(first), day_number(last) + 1, count)


def _created(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    seconds = rng.integers(0, 86_400, len(days))
    return (days * 86_400 + seconds) * US_PER_SECOND + rng.integers(0, US_PER_SECOND, len(days))


# ---------------------------------------------------------------- entities


def customer_rows(rng: np.random.Generator, ids: np.ndarray, signup: np.ndarray) -> Dim:
    """Clean customer rows (master base rows or a day's newcomers)."""
    count = len(ids)
    first, last, gender = _people(rng, count)
    region = rng.integers(1, len(REGIONS) + 1, count)
    segment = np.where(rng.random(count) < 0.1, 2, 1)
    created = _created(rng, signup)
    stamps = _stamps(rng, created)
    frame = _frame(
        {
            "customer_id": ints(ids),
            "full_name": join(first, " ", last),
            "email": _emails(rng, first, last, ids, CUSTOMER_DOMAINS),
            "phone": _phones(rng, count),
            "region_id": ints(region),
            "segment_id": ints(segment),
            "signup_date": dates(signup),
            "gender": pick(["male", "female"], gender),
            "created_at": stamps,
            "updated_at": stamps,
        },
        {"customer_id", "region_id", "segment_id"},
    )
    everyone = np.arange(count)
    attrs = {"region": region, "segment": segment}
    return Dim(
        "customers", frame, FileReport(), ids, np.ones(count, bool), everyone, everyone, attrs
    )


def _customers(rng: np.random.Generator, scale: float) -> Dim:
    count = scaled(500, scale)
    ids = np.arange(1, count + 1, dtype=np.int64)
    dim = customer_rows(rng, ids, _past_days(rng, count, dt.date(2019, 1, 1), dt.date(2025, 12, 1)))
    plan = Planner(rng, np.arange(count), dim.report)
    frame, region = dim.frame, dim.attrs["region"]
    _repair(dim, plan, "null_required", scaled(6, scale), "schema/not_null/full_name",
            "full_name", NULL_TOKENS)  # fmt: skip
    _repair(dim, plan, "invalid_email", scaled(4, scale), "records/format/email",
            "email", BAD_EMAILS)  # fmt: skip
    _repair(dim, plan, "invalid_phone", scaled(4, scale), "records/format/phone",
            "phone", BAD_PHONES)  # fmt: skip
    _repair(dim, plan, "unknown_allowed_value", scaled(2, scale), "schema/allowed_values/gender",
            "gender", ("other",))  # fmt: skip
    _bad_key(dim, plan, scaled(2, scale), ("abc", "C-17"))
    nulls = plan.take("valid_nulls", scaled(9, scale))
    _valid_nulls(frame, nulls, ("email", "phone", "region_id"), NULL_TOKENS)
    region[nulls[2::3]] = 0  # the third of them lost their region: no city to deliver to
    as_float = plan.take("int_as_float", scaled(4, scale))
    frame.put("region_id", as_float, [f"{region[r]}.0" for r in as_float])
    _short_phones(frame, "phone", plan.take("phone_without_leading_zero", scaled(5, scale)))
    exact = plan.take("duplicate", scaled(10, scale), "records/duplicate/customer_id")
    changed = plan.take("duplicate_pk_changed", scaled(1, scale), "records/duplicate/customer_id")
    copies = frame.take(np.concatenate([exact, changed]))
    moved = np.arange(len(exact), len(exact) + len(changed))
    copies.put("full_name", moved, cycle(["Renamed Customer"], len(changed)))
    copies.put("updated_at", moved, cycle([MASTER_UPDATED], len(changed)))
    return _with_copies(rng, dim, plan, np.concatenate([exact, changed]), copies)


def _restaurants(rng: np.random.Generator, scale: float) -> Dim:
    count = scaled(58, scale)
    ids = np.arange(1, count + 1, dtype=np.int64)
    category = rng.integers(1, len(CATEGORIES) + 1, count)
    region = rng.integers(1, len(REGIONS) + 1, count)
    tier = rng.choice(3, count, p=[0.4, 0.4, 0.2])
    rating = np.round(rng.uniform(2.8, 4.9, count), 2)
    prep = rng.integers(10, 46, count)
    active = rng.random(count) < 0.95
    word = pick(RESTAURANT_WORDS, rng.integers(0, len(RESTAURANT_WORDS), count))
    place = pick([r[1] for r in REGIONS], region - 1)
    created = _created(rng, _past_days(rng, count, dt.date(2019, 1, 1), dt.date(2025, 6, 30)))
    stamps = _stamps(rng, created)
    frame = _frame(
        {
            "restaurant_id": ints(ids),
            "restaurant_name": join(pick(CATEGORIES, category - 1), " ", word, " ", place),
            "region_id": ints(region),
            "category_id": ints(category),
            "price_tier": pick(PRICE_TIERS, tier),
            "rating_avg": decimals(rating),
            "prep_time_avg_min": ints(prep),
            "is_active": booleans(active),
            "created_at": stamps,
            "updated_at": stamps,
        },
        {"restaurant_id", "region_id", "category_id", "rating_avg", "prep_time_avg_min"},
        {"is_active"},
    )
    attrs = {"region": region, "tier": tier, "rating": rating, "prep": prep}
    dim = Dim(
        "restaurants", frame, FileReport(), ids, np.ones(count, bool), ids - 1, ids - 1, attrs
    )
    plan = Planner(rng, np.arange(count), dim.report)
    _repair(dim, plan, "null_required", scaled(2, scale), "schema/not_null/restaurant_name",
            "restaurant_name", (None, "N/A"))  # fmt: skip
    _repair(dim, plan, "out_of_range", scaled(2, scale), "records/range/rating_avg",
            "rating_avg", ("-1", "6"))  # fmt: skip
    _repair(dim, plan, "unparseable_int", scaled(1, scale), "schema/type/prep_time_avg_min",
            "prep_time_avg_min", ("abc",))  # fmt: skip
    nulls = plan.take("valid_nulls", scaled(2, scale))
    frame.put("rating_avg", nulls, cycle((NAN_LITERAL, None, "N/A", ""), len(nulls)))
    as_float = plan.take("int_as_float", scaled(2, scale))
    frame.put("prep_time_avg_min", as_float, [f"{prep[r]}.0" for r in as_float])
    return _with_copies(rng, dim, plan, np.empty(0, np.int64), frame.take(np.empty(0, np.int64)))


def _drivers(rng: np.random.Generator, scale: float) -> Dim:
    count = scaled(100, scale)
    ids = np.arange(1, count + 1, dtype=np.int64)
    first, last, _ = _people(rng, count)
    region = rng.integers(1, len(REGIONS) + 1, count)
    hire = _past_days(rng, count, dt.date(2020, 1, 1), dt.date(2025, 12, 1))
    rating = np.round(rng.uniform(3.5, 5.0, count), 2)
    on_time = np.round(rng.uniform(0.7, 0.99, count), 2)
    cancel = np.round(rng.uniform(0.0, 0.1, count), 3)
    deliveries = rng.integers(0, 5000, count)
    active = rng.random(count) < 0.9
    stamps = _stamps(rng, _created(rng, hire))
    frame = _frame(
        {
            "driver_id": ints(ids),
            "driver_name": join(first, " ", last),
            "driver_phone": _phones(rng, count),
            "national_id": join(
                pick(["2", "3"], rng.integers(0, 2, count)),
                padded(rng.integers(0, 10**14, count), 14),
            ),
            "region_id": ints(region),
            "shift": pick(SHIFTS, rng.integers(0, 3, count)),
            "vehicle_type": pick(VEHICLES, rng.integers(0, 3, count)),
            "hire_date": dates(hire),
            "rating_avg": decimals(rating),
            "on_time_rate": decimals(on_time),
            "cancel_rate": decimals(cancel, 3),
            "completed_deliveries": ints(deliveries),
            "is_active": booleans(active),
            "created_at": stamps,
            "updated_at": stamps,
        },
        {
            "driver_id",
            "region_id",
            "rating_avg",
            "on_time_rate",
            "cancel_rate",
            "completed_deliveries",
        },
        {"is_active"},
    )
    attrs = {"region": region, "rating": rating, "on_time": on_time, "cancel": cancel,
             "active": active}  # fmt: skip
    dim = Dim("drivers", frame, FileReport(), ids, np.ones(count, bool), ids - 1, ids - 1, attrs)
    plan = Planner(rng, np.arange(count), dim.report)
    _repair(dim, plan, "null_required", scaled(2, scale), "schema/not_null/driver_name",
            "driver_name", ("", "null"))  # fmt: skip
    _repair(dim, plan, "invalid_phone", scaled(2, scale), "records/format/driver_phone",
            "driver_phone", BAD_PHONES)  # fmt: skip
    _repair(dim, plan, "invalid_national_id", scaled(1, scale), "records/format/national_id",
            "national_id", ("123",))  # fmt: skip
    _repair(dim, plan, "out_of_range", scaled(2, scale), "records/range/on_time_rate",
            "on_time_rate", ("-0.5", "1.5"))  # fmt: skip
    _repair(dim, plan, "unknown_allowed_value", scaled(1, scale), "schema/allowed_values/shift",
            "shift", ("afternoon",))  # fmt: skip
    _bad_key(dim, plan, scaled(1, scale), ("D-9",))
    nulls = plan.take("valid_nulls", scaled(3, scale))
    _valid_nulls(frame, nulls, ("driver_phone", "national_id"), NULL_TOKENS)
    as_float = plan.take("int_as_float", scaled(2, scale))
    frame.put("completed_deliveries", as_float, [f"{deliveries[r]}.0" for r in as_float])
    _short_phones(frame, "driver_phone", plan.take("phone_without_leading_zero", scaled(2, scale)))
    exact = plan.take("duplicate", scaled(1, scale), "records/duplicate/driver_id")
    return _with_copies(rng, dim, plan, exact, frame.take(exact))


def _agents(rng: np.random.Generator, scale: float) -> Dim:
    count = scaled(30, scale)
    ids = np.arange(1, count + 1, dtype=np.int64)
    first, last, _ = _people(rng, count)
    skill = rng.choice(4, count, p=[0.35, 0.3, 0.25, 0.1])
    hire = _past_days(rng, count, dt.date(2020, 1, 1), dt.date(2025, 12, 1))
    handle = rng.integers(4, 25, count)
    resolution = np.round(rng.uniform(0.7, 0.98, count), 2)
    csat = np.round(rng.uniform(3.2, 4.9, count), 2)
    stamps = _stamps(rng, _created(rng, hire))
    frame = _frame(
        {
            "agent_id": ints(ids),
            "agent_name": join(first, " ", last),
            "agent_email": _emails(rng, first, last, ids, AGENT_DOMAINS),
            "agent_phone": _phones(rng, count),
            "team_id": ints(rng.integers(1, len(TEAMS) + 1, count)),
            "skill_level": pick(SKILLS, skill),
            "hire_date": dates(hire),
            "avg_handle_time_min": ints(handle),
            "resolution_rate": decimals(resolution),
            "csat_score": decimals(csat),
            "is_active": booleans(rng.random(count) < 0.95),
            "created_at": stamps,
            "updated_at": stamps,
        },
        {"agent_id", "team_id", "avg_handle_time_min", "resolution_rate", "csat_score"},
        {"is_active"},
    )
    attrs = {"skill": skill, "resolution": resolution, "csat": csat}
    dim = Dim("agents", frame, FileReport(), ids, np.ones(count, bool), ids - 1, ids - 1, attrs)
    plan = Planner(rng, np.arange(count), dim.report)
    _repair(dim, plan, "invalid_email", scaled(1, scale), "records/format/agent_email",
            "agent_email", BAD_EMAILS)  # fmt: skip
    _repair(dim, plan, "invalid_phone", scaled(1, scale), "records/format/agent_phone",
            "agent_phone", BAD_PHONES)  # fmt: skip
    nulls = plan.take("valid_nulls", scaled(2, scale))
    _valid_nulls(frame, nulls, ("agent_email", "agent_phone", "team_id"), NULL_TOKENS)
    as_float = plan.take("int_as_float", scaled(1, scale))
    frame.put("avg_handle_time_min", as_float, [f"{handle[r]}.0" for r in as_float])
    return _with_copies(rng, dim, plan, np.empty(0, np.int64), frame.take(np.empty(0, np.int64)))


def _repair(
    dim: Dim,
    plan: Planner,
    kind: str,
    count: int,
    rule: str,
    column: str,
    values: tuple[str | None, ...],
) -> None:
    """A bad descriptive value: the pipeline repairs it and the member loads."""
    rows = plan.take(kind, count, rule, repair=True)
    dim.frame.put(column, rows, cycle(values, len(rows)))
    dim.repaired = np.sort(np.concatenate([dim.repaired, rows]))


def _bad_key(dim: Dim, plan: Planner, count: int, values: tuple[str, ...]) -> None:
    """A key that is not one: the row is rejected, and no fact can reference the member."""
    key = next(iter(dim.frame.columns))
    rows = plan.take("invalid_key", count, f"schema/type/{key}")
    dim.frame.put(key, rows, cycle(values, len(rows)))
    dim.loaded[rows] = False


def _valid_nulls(
    frame: Frame, rows: np.ndarray, columns: tuple[str, ...], tokens: tuple[str, ...]
) -> None:
    for offset, column in enumerate(columns):
        chosen = rows[offset :: len(columns)]
        frame.put(column, chosen, cycle(tokens, len(chosen)))


def _short_phones(frame: Frame, column: str, rows: np.ndarray) -> None:
    # A valid 10-digit form (leading 0 dropped), as spreadsheets and pandas write phone numbers.
    current = frame.columns[column].take(pa.array(rows, type=pa.int64())).to_pylist()
    frame.put(column, rows, [value[1:] for value in current])


def _with_copies(
    rng: np.random.Generator, dim: Dim, plan: Planner, sources: np.ndarray, copies: Frame
) -> Dim:
    """Interleave each copy somewhere after its original, so the original is the one kept."""
    count = len(dim.ids)
    keys = np.concatenate([np.arange(count) * 2, rng.integers(sources, count) * 2 + 1])
    order = np.argsort(keys, kind="stable")
    placed = np.empty(len(order), dtype=np.int64)
    placed[order] = np.arange(len(order))
    dim.frame = dim.frame.extend(copies).take(order)
    dim.positions = placed[:count]
    dim.stable = plan.remaining()
    dim.report.rows = len(dim.frame)
    return dim


def master_dims(seed: int, scale: float) -> dict[str, Dim]:
    builders = (_customers, _restaurants, _drivers, _agents)
    return {
        name: build(rng_for(seed, MASTER, index), scale)
        for index, (name, build) in enumerate(zip(ENTITIES, builders, strict=True))
    }
