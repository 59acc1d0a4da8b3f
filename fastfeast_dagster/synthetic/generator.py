"""`generate`: write master, one batch day and its stream hours, plus the manifest."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from fastfeast_dagster.synthetic.dimensions import master_dims
from fastfeast_dagster.synthetic.facts import make_pools
from fastfeast_dagster.synthetic.manifest import FileReport, Manifest
from fastfeast_dagster.synthetic.reference_data import (
    ENTITIES,
    LOOKUPS,
    MASTER_UPDATED,
    lookup_frames,
)
from fastfeast_dagster.synthetic.render import Frame, write_csv, write_json
from fastfeast_dagster.synthetic.snapshots import batch_day, new_customers, pii_values
from fastfeast_dagster.synthetic.stream import StreamState, generate_hour, late_parent_hours

TABLES = {
    "cities": "dim_city", "regions": "dim_region", "segments": "dim_segment",
    "categories": "dim_category", "teams": "dim_team", "reason_categories": "dim_reason_category",
    "reasons": "dim_reason", "channels": "dim_channel", "priorities": "dim_priority",
    "customers": "dim_customer", "restaurants": "dim_restaurant", "drivers": "dim_driver",
    "agents": "dim_agent",
}  # fmt: skip
JSON_IN_BATCH = frozenset({"cities", "restaurants"})
STREAM_FILES = {"orders": "orders.json", "tickets": "tickets.csv", "events": "ticket_events.json"}


def generate(
    out: Path,
    day: dt.date,
    hours: Sequence[int] = range(24),
    seed: int = 42,
    scale: float = 1.0,
) -> Manifest:
    """Write master, batch `day` and the requested stream hours under `out`; return the manifest.

    Output is a pure function of (seed, day, hours, scale); the master depends on (seed, scale)
    only, so days generated one after another into the same `out` agree. Orders per hour are
    round(150 x hourly multiplier x scale); hour 19's multiplier is 1.8, so 270 orders at scale 1
    and `scale=1e6 / 270` (about 3703.7) gives 1,000,000 orders in hour 19. Entity counts scale
    too (500 customers, 58 restaurants, 100 drivers, 30 agents at scale 1).
    """
    wanted = sorted({int(h) for h in hours})
    if wanted and (wanted[0] < 0 or wanted[-1] > 23):
        raise ValueError(f"hours must be within 0..23, got {list(hours)!r}")
    if scale < 0.1:
        raise ValueError(f"scale must be at least 0.1, got {scale}")
    out = Path(out)
    files: dict[str, FileReport] = {}

    lookups = lookup_frames()
    master = master_dims(seed, scale)
    master_frames = lookups | {name: dim.frame for name, dim in master.items()}
    for name in LOOKUPS + ENTITIES:
        path = f"master/{name}.csv"
        write_csv(out / path, master_frames[name])
        files[path] = master[name].report if name in master else _clean(master_frames[name])
    metadata = {
        "last_updated": MASTER_UPDATED,
        "max_customer_id": int(master["customers"].ids.max()),
        "max_driver_id": int(master["drivers"].ids.max()),
    }
    (out / "master" / "metadata.json").write_text(json.dumps(metadata, indent=2), "utf-8")

    batch = batch_day(seed, day, master)
    batch_frames = lookups | batch.frames
    for name in LOOKUPS + ENTITIES:
        fmt = "json" if name in JSON_IN_BATCH else "csv"
        path = f"input/batch/{day.isoformat()}/{name}.{fmt}"
        (write_json if fmt == "json" else write_csv)(out / path, batch_frames[name])
        files[path] = batch.reports[name] if name in master else _clean(batch_frames[name])

    pools = make_pools(master, batch.newcomers, new_customers(seed, day + dt.timedelta(days=1)))
    state = StreamState(wanted)
    late_hours = late_parent_hours(seed, day, wanted)
    facts = {"fact_order": 0, "fact_ticket": 0, "fact_ticket_event": 0}
    for hour in wanted:
        produced = generate_hour(seed, day, hour, scale, pools, state, late_hours.count(hour))
        folder = f"input/stream/{day.isoformat()}/{hour:02d}"
        for key, name in STREAM_FILES.items():
            frame = getattr(produced, key)
            (write_json if name.endswith(".json") else write_csv)(out / folder / name, frame)
            files[f"{folder}/{name}"] = produced.reports[key]
        for table, count in produced.loaded.items():
            facts[table] += count

    tables = {TABLES[name]: len(frame) for name, frame in lookups.items()}
    tables |= {TABLES[name]: int(dim.loaded.sum()) for name, dim in master.items()}
    tables["dim_customer"] += len(batch.newcomers.ids)
    tables |= facts
    late_files = []
    if state.late_file_hour is not None:
        folder = f"input/stream/{day.isoformat()}/{state.late_file_hour:02d}"
        late_files = [f"{folder}/{name}" for name in STREAM_FILES.values()]
    manifest = Manifest(
        seed=seed,
        day=day.isoformat(),
        hours=wanted,
        scale=float(scale),
        files={path: report.to_json() for path, report in sorted(files.items())},
        tables={name: {"expected_rows": count} for name, count in sorted(tables.items())},
        pii_clear_values=pii_values([master_frames, batch_frames]),
        changes=batch.changes,
        changed_values=batch.values,
        order_updates=state.order_updates,
        ticket_updates=state.ticket_updates,
        late_parent_orders=state.late_parent_orders,
        late_files=late_files,
        repaired_members={name: dim.ids[dim.repaired].tolist() for name, dim in master.items()},
        master_members={name: dim.ids[dim.loaded].tolist() for name, dim in master.items()},
    )
    manifest.write(out / "manifest.json")
    return manifest


def _clean(frame: Frame) -> FileReport:
    return FileReport(rows=len(frame))
