"""The folder sensors' decision for objects in S3: which partitions are ready. Pure, like `scan`.

The local `scan` keeps a watermark on change times. An object store gives none to trust: an
object has no ctime, `LastModified` has 1 s resolution, and a multipart upload's `LastModified`
is when it started, so an object can appear long after a watermark has passed its time. So this
cursor remembers the ETag of every object taken, per partition, for the partitions the listing
returns (its lookback window, `sources/objects.py`): an object is new when its ETag is not the
one taken. Objects are atomic, so there is no half-written file to wait for; the settle rule
only keeps a partition back until its newest object is `settle_seconds` old by `LastModified`,
so that one run takes the files an upload delivers together. A re-upload of the same bytes
keeps its ETag and launches nothing; a partition that leaves the window is forgotten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from fastfeast_dagster.sources.listing import FoundFile


@dataclass
class ObjectCursor:
    taken: dict[str, dict[str, str]] = field(default_factory=dict)  # partition → name → ETag
    pending: int = 0  # objects not yet settled or held (read by `fastfeast ingest`)

    @classmethod
    def loads(cls, text: str | None) -> ObjectCursor:
        raw = json.loads(text) if text else {}
        return cls(raw.get("taken", {}), raw.get("pending", 0))

    def dumps(self) -> str:
        return json.dumps({"taken": self.taken, "pending": self.pending}, sort_keys=True)


@dataclass(frozen=True)
class ReadyObjects:
    """A partition's new objects; the run key's fingerprint is their names, sizes and ETags."""

    partition_key: str
    files: list[FoundFile]

    @property
    def fingerprint(self) -> str:
        identity = sorted((f.path.name, f.size, f.version) for f in self.files)
        return hashlib.sha1(json.dumps(identity).encode()).hexdigest()[:16]


@dataclass
class ObjectScan:
    ready: list[ReadyObjects]
    cursor: ObjectCursor


def scan_objects(
    partitions: dict[str, list[FoundFile]],
    cursor: ObjectCursor,
    *,
    now_ns: int,
    settle_seconds: float,
    last_partition_key: str | None,
    max_requests: int,
    held: frozenset[str] = frozenset(),
) -> ObjectScan:
    """Which partitions are ready to run, and the next cursor; `scan`'s arguments and meaning."""
    settle_ns = int(settle_seconds * 1e9)
    ready: list[ReadyObjects] = []
    pending = 0
    for key in sorted(partitions):
        files = partitions[key]
        new = _new_objects(files, cursor.taken.get(key, {}))
        # A partition dated beyond the last one waits for its date, as locally, uncounted.
        if not new or (last_partition_key is not None and key > last_partition_key):
            continue
        unsettled = any(now_ns - f.mtime_ns < settle_ns for f in files)
        if unsettled or key in held or len(ready) >= max_requests:
            pending += len(new)
            continue
        ready.append(ReadyObjects(key, new))
    # What is no longer listed is forgotten: a deleted object that comes back is new again.
    taken = {
        key: {name: etag for name, etag in names.items() if name in listed}
        for key, names in cursor.taken.items()
        if (listed := {f.path.name for f in partitions.get(key, [])})
    }
    for partition in ready:
        taken[partition.partition_key] = taken.get(partition.partition_key, {}) | {
            f.path.name: f.version or "" for f in partition.files
        }
    return ObjectScan(ready, ObjectCursor(taken, pending))


def changed_object_partitions(
    partitions: dict[str, list[FoundFile]], cursor: ObjectCursor
) -> set[str]:
    """The partitions with an object `scan_objects` may take: one not taken at its ETag. Pure."""
    return {
        key for key, files in partitions.items() if _new_objects(files, cursor.taken.get(key, {}))
    }


def _new_objects(files: list[FoundFile], taken: dict[str, str]) -> list[FoundFile]:
    return [f for f in files if taken.get(f.path.name) != f.version]
