"""Whether a file still inside its settle window is already whole, so that a tick may take it now.

A writer that publishes atomically (a temporary name renamed into place, as `sensors/folders.py`
expects) hands over whole files, and waiting the settle window for them only adds latency. A
file is whole when its format says so: a JSON array that parses, a CSV whose last byte ends a
line. Anything else (a larger file than the contract lets a tick read, an unfinished one, an
empty one) waits out the window as before. A CSV written in place in line-sized chunks can look
whole between two writes: it is then taken early, and its finished version, a changed file,
re-runs its partition; nothing is lost, one run is spent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def is_complete(path: Path, max_bytes: int) -> bool:
    """`path` (`.json` or `.csv`) is whole and at most `max_bytes` long."""
    try:
        size = path.stat().st_size
        if not 0 < size <= max_bytes:
            return False
        if path.suffix.lower() == ".csv":
            with path.open("rb") as handle:
                handle.seek(-1, os.SEEK_END)
                return handle.read(1) == b"\n"
        if path.suffix.lower() == ".json":
            return isinstance(json.loads(path.read_bytes()), list)
    except (OSError, ValueError):  # gone, unreadable, or not (yet) JSON: let it settle
        return False
    return False
