"""Folder sensors: a settled, new or changed file set of a partition becomes one run request.

A tick lists folders and `stat`s files (md5 belongs to the asset: a tick has 60 s); it reads only
the few files still inside their settle window, to take them at once when they are already whole
(`sources/completeness.py`, at most `sensors.complete_max_mb` each). The
cursor is a watermark on the files' change time (ctime, which a copy or a rewrite always moves,
unlike a preserved mtime) plus the fingerprints emitted above it, so it stays small however many
partitions exist; a folder dated beyond the last partition is listed as waiting instead of
holding the watermark back until its date. The first tick has no watermark: everything present
and not yet run is requested, which is the startup catch-up. The run key is
`kind:partition:fingerprint` of the files taken, so the same files never run twice (Dagster skips
a run key it has seen) and a changed or late file re-runs its partition.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from fastfeast_dagster.contract import Contract, data_root
from fastfeast_dagster.sensors.objects import (
    ObjectCursor,
    ObjectScan,
    changed_object_partitions,
    scan_objects,
)
from fastfeast_dagster.sensors.parents import held_for_parents
from fastfeast_dagster.sources.completeness import is_complete
from fastfeast_dagster.sources.listing import FoundFile, list_partition_files
from fastfeast_dagster.sources.storage import DataRoot, ObjectRoot, pin_tags

FOLDER_SENSOR_NAMES = {"batch": "batch_files_sensor", "stream": "stream_files_sensor"}


@dataclass
class Cursor:
    watermark_ns: int = 0
    recent: dict[str, str] = field(default_factory=dict)  # partition → fingerprint above watermark
    pending: int = 0  # candidate files not yet settled (read by `fastfeast ingest`)
    # Folders dated beyond the last partition: taken whole once their date comes, so they need
    # not hold the watermark back meanwhile.
    waiting: list[str] = field(default_factory=list)

    @classmethod
    def loads(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(
            raw.get("watermark_ns", 0),
            raw.get("recent", {}),
            raw.get("pending", 0),
            raw.get("waiting", []),
        )

    def dumps(self) -> str:
        return json.dumps(
            {
                "watermark_ns": self.watermark_ns,
                "recent": self.recent,
                "pending": self.pending,
                "waiting": self.waiting,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class ReadyPartition:
    partition_key: str
    files: list[FoundFile]

    @property
    def fingerprint(self) -> str:
        identity = sorted((f.path.name, f.size, f.mtime_ns, f.ctime_ns) for f in self.files)
        return hashlib.sha1(json.dumps(identity).encode()).hexdigest()[:16]


@dataclass
class Scan:
    ready: list[ReadyPartition]
    cursor: Cursor


def scan(
    partitions: dict[str, list[FoundFile]],
    cursor: Cursor,
    *,
    now_ns: int,
    settle_seconds: float,
    last_partition_key: str | None,
    max_requests: int,
    held: frozenset[str] = frozenset(),
    complete: frozenset[Path] = frozenset(),
) -> Scan:
    """Which partitions are ready to run, and the next cursor. Pure: no I/O.

    A file is settled once unchanged for `settle_seconds`, or at once if it is in `complete`
    (found whole by `sources/completeness.py`). `held` partitions are not taken this tick though
    settled (their parents are not loaded); like unsettled ones they keep the watermark back and
    count as pending.
    """
    settle_ns = int(settle_seconds * 1e9)
    moved_in = _moved_in_folders(partitions, cursor.watermark_ns)
    ready: list[ReadyPartition] = []
    held_back: list[int] = []  # ctimes of candidates not taken this tick
    waiting: set[str] = set()
    pending = 0
    for key in sorted(partitions):
        files = partitions[key]
        was_waiting = key in cursor.waiting
        candidates = _candidates(key, files, cursor, moved_in)
        if not candidates:
            continue
        if last_partition_key is not None and key > last_partition_key:
            waiting.add(key)
            continue
        unsettled = [f for f in files if now_ns - f.ctime_ns < settle_ns and f.path not in complete]
        if key in held:
            unsettled = files
        if unsettled or len(ready) >= max_requests:
            pending += len(unsettled)
            candidate_times = [_seen_at(f, moved_in) for f in candidates]
            # A partition that waited for its date may sit below the watermark: it keeps
            # waiting rather than pulling the watermark back over everything after it.
            if was_waiting:
                waiting.add(key)
            else:
                held_back += candidate_times
            continue
        partition = ReadyPartition(key, candidates)
        if cursor.recent.get(key) != partition.fingerprint:
            ready.append(partition)
    all_candidates = [
        seen
        for files in partitions.values()
        for f in files
        if (seen := _seen_at(f, moved_in)) > cursor.watermark_ns
    ]
    watermark = (min(held_back) - 1) if held_back else max([cursor.watermark_ns, *all_candidates])
    recent = {
        key: fingerprint for key, fingerprint in cursor.recent.items() if key in partitions
    } | {p.partition_key: p.fingerprint for p in ready}
    # Fingerprints at or below the watermark can never be candidates again: forget them.
    recent = {
        key: fingerprint
        for key, fingerprint in recent.items()
        if any(f.ctime_ns > watermark for f in partitions.get(key, []))
    }
    return Scan(ready, Cursor(watermark, recent, pending, sorted(waiting)))


def changed_partitions(partitions: dict[str, list[FoundFile]], cursor: Cursor) -> set[str]:
    """The partitions with a file `scan` may take: new or changed since the cursor. Pure."""
    moved_in = _moved_in_folders(partitions, cursor.watermark_ns)
    return {key for key, files in partitions.items() if _candidates(key, files, cursor, moved_in)}


def _candidates(
    key: str, files: list[FoundFile], cursor: Cursor, moved_in: set[Path]
) -> list[FoundFile]:
    """A partition's files not seen by the cursor (all of them, if it waited for its date)."""
    if key in cursor.waiting:
        return files
    return [
        f
        for f in files
        if f.ctime_ns > cursor.watermark_ns or any(folder in moved_in for folder, _, _ in f.folders)
    ]


def _moved_in_folders(partitions: dict[str, list[FoundFile]], watermark_ns: int) -> set[Path]:
    """Folders moved in whole after the watermark, with files the sensor never saw.

    `mv` within a filesystem keeps the files' ctimes; only the moved folder's own ctime moves.
    Its mtime does not (its entries are unchanged), which tells a move apart from a file being
    added to the folder (that changes both, and the new file is taken the ordinary way).
    """
    newest_inside: dict[Path, int] = {}
    moved: set[Path] = set()
    for files in partitions.values():
        for found in files:
            inside = found.ctime_ns
            for folder, mtime, ctime in found.folders:  # innermost first
                newest_inside[folder] = max(newest_inside.get(folder, 0), inside)
                if ctime > watermark_ns >= mtime:
                    moved.add(folder)
                inside = max(inside, ctime)
    return {folder for folder in moved if newest_inside[folder] <= watermark_ns}


def _seen_at(found: FoundFile, moved_in: set[Path]) -> int:
    """When the file became visible: its ctime, or the ctime of the folder it was moved in with."""
    return max(
        [found.ctime_ns, *(ctime for folder, _, ctime in found.folders if folder in moved_in)]
    )


def build_folder_sensor(
    kind: str,
    contract: Contract,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    *,
    settle_seconds: float | None = None,
) -> dg.SensorDefinition:
    """The `batch` (daily dimensions) or `stream` (hourly facts) folder sensor."""
    tables = {
        name: spec.table
        for name, spec in contract.sources.items()
        if spec.kind == ("dimension" if kind == "batch" else "fact")
    }
    settle = contract.sensors.settle_seconds if settle_seconds is None else settle_seconds
    load_order = contract.load_order()
    folder = contract.paths.batch if kind == "batch" else contract.paths.stream

    @dg.sensor(
        name=FOLDER_SENSOR_NAMES[kind],
        description=(
            f"Watches {folder}/ (and master/ for the cold start) for settled new or changed files "
            f"and requests one run per {'day' if kind == 'batch' else 'hour'} partition for the "
            "tables whose files arrived."
        ),
        minimum_interval_seconds=contract.sensors.minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[dg.AssetKey(table) for table in tables.values()],
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        root = data_root(contract)
        now = time.time_ns()
        partitions = list_partition_files(contract, root, kind)
        if isinstance(root, ObjectRoot):
            # An S3 data root has no change times to keep a watermark on (`sensors/objects.py`);
            # it is listed within the lookback window only, and an object is whole once listed.
            objects = ObjectCursor.loads(context.cursor)
            # Only partitions with new objects, as for local files (below): the hold check
            # costs a listing and queries per day, for hours this tick could not take anyway.
            changed = {
                key: partitions[key] for key in changed_object_partitions(partitions, objects)
            }
            held = _held(kind, contract, context.instance, root, changed, now)
            result: Scan | ObjectScan = scan_objects(
                partitions,
                objects,
                now_ns=now,
                settle_seconds=settle,
                last_partition_key=partitions_def.get_last_partition_key(),
                max_requests=contract.sensors.max_requests_per_tick,
                held=held,
            )
        else:
            cursor = Cursor.loads(context.cursor)
            # Only what this tick may take: the hours ever delivered would cost a query per day
            # and table on every tick, and ticks come every few seconds.
            changed = {key: partitions[key] for key in changed_partitions(partitions, cursor)}
            held = _held(kind, contract, context.instance, root, changed, now)
            result = scan(
                partitions,
                cursor,
                now_ns=now,
                settle_seconds=settle,
                last_partition_key=partitions_def.get_last_partition_key(),
                max_requests=contract.sensors.max_requests_per_tick,
                held=held,
                complete=_complete_files(changed, now, settle, contract.sensors.complete_max_mb),
            )
        requests = [
            dg.RunRequest(
                run_key=f"{kind}:{partition.partition_key}:{partition.fingerprint}",
                partition_key=partition.partition_key,
                asset_selection=[
                    dg.AssetKey(tables[f.source])
                    for f in sorted(partition.files, key=lambda f: load_order.index(f.source))
                ],
                tags={
                    "fastfeast/files": ",".join(sorted(f.path.name for f in partition.files)),
                    **pin_tags((f.path, f.version) for f in partition.files),
                },
            )
            for partition in result.ready
        ]
        skip = None
        if not requests:
            skip = (
                f"{result.cursor.pending} file(s) still settling or waiting for their day's"
                " dimensions"
                if result.cursor.pending
                else ("no new or changed files")
            )
        return dg.SensorResult(
            run_requests=requests, cursor=result.cursor.dumps(), skip_reason=skip
        )

    return _sensor


def _held(
    kind: str,
    contract: Contract,
    instance: dg.DagsterInstance,
    root: DataRoot,
    partitions: dict[str, list[FoundFile]],
    now_ns: int,
) -> frozenset[str]:
    """The hours that wait for their day's dimensions (none for the batch sensor)."""
    if kind != "stream":
        return frozenset()
    return frozenset(held_for_parents(contract, instance, root, partitions, now_ns=now_ns))


def _complete_files(
    partitions: dict[str, list[FoundFile]], now_ns: int, settle_seconds: float, max_mb: float
) -> frozenset[Path]:
    """The files still inside the settle window that are already whole (read, so only those)."""
    settle_ns = int(settle_seconds * 1e9)
    return frozenset(
        f.path
        for files in partitions.values()
        for f in files
        if now_ns - f.ctime_ns < settle_ns and is_complete(f.path, int(max_mb * 2**20))
    )
