"""The daily batch snapshot: the master with that day's drift, plus that day's new customers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastfeast_dagster.synthetic.common import (
    DRIFT,
    NEW_CUSTOMERS,
    US_PER_SECOND,
    day_number,
    day_start_us,
    new_customer_ids,
    rng_for,
)
from fastfeast_dagster.synthetic.dimensions import (
    Dim,
    customer_rows,
)
from fastfeast_dagster.synthetic.manifest import FileReport
from fastfeast_dagster.synthetic.reference_data import (
    CUSTOMER_DOMAINS,
    PII_COLUMNS,
    PII_PATTERNS,
)
from fastfeast_dagster.synthetic.render import (
    Frame,
    booleans,
    decimals,
    timestamps,
)

# ---------------------------------------------------------------- daily batch


def new_customers(seed: int, day: dt.date) -> Dim:
    """Customers first delivered in batch `day`; all clean, independent of scale."""
    ids = new_customer_ids(day)
    rng = rng_for(seed, NEW_CUSTOMERS, day_number(day))
    signup = np.full(len(ids), day_number(day) - 1)
    return customer_rows(rng, ids, signup)


@dataclass
class Batch:
    frames: dict[str, Frame]
    reports: dict[str, FileReport]
    changes: dict[str, dict[str, list[int]]]
    # The text each changed cell took, by source, column and id: what history must show.
    values: dict[str, dict[str, dict[str, str]]]
    newcomers: Dim


def batch_day(seed: int, day: dt.date, master: dict[str, Dim]) -> Batch:
    """The master with this day's drift applied and this day's new customers appended."""
    rng = rng_for(seed, DRIFT, day_number(day))
    stamp = timestamps(np.array([day_start_us(day) + 6 * 3600 * US_PER_SECOND]))[0].as_py()
    frames = {name: Frame(dict(d.frame.columns), dict(d.frame.kinds)) for name, d in master.items()}
    reports = {name: dim.report.copy() for name, dim in master.items()}
    changes: dict[str, dict[str, list[int]]] = {}
    values: dict[str, dict[str, dict[str, str]]] = {}
    drifts = {
        "drivers": [("rating_avg", "rating", 0.05, 1.0, 5.0, 2),
                    ("on_time_rate", "on_time", 0.01, 0.5, 1.0, 2),
                    ("cancel_rate", "cancel", 0.005, 0.0, 0.15, 3)],
        "restaurants": [("rating_avg", "rating", 0.03, 2.5, 5.0, 2)],
        "agents": [("resolution_rate", "resolution", 0.01, 0.6, 1.0, 2),
                   ("csat_score", "csat", 0.05, 3.0, 5.0, 2)],
    }  # fmt: skip
    for name, specs in drifts.items():
        dim, frame = master[name], frames[name]
        for column, attr, step, low, high, digits in specs:
            rows = _some(rng, dim.stable, 0.1)
            old = dim.attrs[attr][rows]
            new = np.round(np.clip(old + rng.uniform(-step, step, len(rows)), low, high), digits)
            moved = rows[new != old]
            texts = decimals(new[new != old], digits).to_pylist()
            frame.put(column, dim.positions[moved], texts)
            changes.setdefault(name, {})[column] = dim.ids[moved].tolist()
            values.setdefault(name, {})[column] = _by_id(dim.ids[moved], texts)
    drivers = master["drivers"]
    flipped = _some(rng, drivers.stable, 0.02)
    active = booleans(~drivers.attrs["active"][flipped]).to_pylist()
    frames["drivers"].put("is_active", drivers.positions[flipped], active)
    changes["drivers"]["is_active"] = drivers.ids[flipped].tolist()
    values["drivers"]["is_active"] = _by_id(drivers.ids[flipped], active)
    customers = master["customers"]
    moved = _some(rng, customers.stable, 0.01)
    domains = rng.integers(0, len(CUSTOMER_DOMAINS), len(moved))
    emails = [
        f"customer{cid}.{day:%Y%m%d}@{CUSTOMER_DOMAINS[d]}"
        for cid, d in zip(customers.ids[moved].tolist(), domains.tolist(), strict=True)
    ]
    frames["customers"].put("email", customers.positions[moved], emails)
    changes["customers"] = {"email": customers.ids[moved].tolist()}
    values["customers"] = {"email": _by_id(customers.ids[moved], emails)}
    # A few customers move between Regular and VIP: their orders that day carry the new segment.
    upgraded = _some(rng, customers.stable, 0.02)
    segments = [str(3 - segment) for segment in customers.attrs["segment"][upgraded].tolist()]
    frames["customers"].put("segment_id", customers.positions[upgraded], segments)
    changes["customers"]["segment_id"] = customers.ids[upgraded].tolist()
    values["customers"]["segment_id"] = _by_id(customers.ids[upgraded], segments)
    for name, per_column in changes.items():
        touched = sorted({i for ids in per_column.values() for i in ids})
        per_column["updated_at"] = touched
        dim = master[name]
        rows = dim.positions[np.searchsorted(dim.ids, touched)]
        frames[name].put("updated_at", rows, [stamp] * len(rows))
        reports[name].note("drift", len(touched))
    newcomers = new_customers(seed, day)
    frames["customers"] = frames["customers"].extend(newcomers.frame)
    reports["customers"].note("new_customers", len(newcomers.ids))
    for name, frame in frames.items():
        reports[name].rows = len(frame)
    ordered = {k: changes[k] for k in sorted(changes)}
    return Batch(frames, reports, ordered, {k: values[k] for k in sorted(values)}, newcomers)


def _by_id(ids: np.ndarray, texts: list[str | None]) -> dict[str, str]:
    return {str(i): str(text) for i, text in zip(ids.tolist(), texts, strict=True)}


def _some(rng: np.random.Generator, rows: np.ndarray, share: float) -> np.ndarray:
    count = min(len(rows), max(1, round(len(rows) * share)))
    return np.sort(rng.choice(rows, count, replace=False))


def pii_values(frames: list[dict[str, Frame]]) -> dict[str, dict[str, list[str]]]:
    """Every well-formed clear-text contact value written anywhere (for leak scans)."""
    result: dict[str, dict[str, list[str]]] = {}
    for source, columns in PII_COLUMNS.items():
        result[source] = {}
        for column, pattern in columns.items():
            values = pa.concat_arrays([f[source].columns[column] for f in frames])
            valid = pc.filter(
                values,
                pc.fill_null(
                    pc.match_substring_regex(values, pattern=PII_PATTERNS[pattern]), False
                ),
            )
            result[source][column] = sorted(pc.unique(valid).to_pylist())
    return result
