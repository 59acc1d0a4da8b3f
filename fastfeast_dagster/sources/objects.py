"""Finding the files of partitions in an S3 bucket: `sources/listing.py` for an `ObjectRoot`.

S3 has no folders and no ctime, so a tick lists instead of stat-ing: the date prefixes under
`input/batch/` and `input/stream/` with a delimiter (one request per 1,000 dates, no keys), then
every key under each date prefix inside the lookback window, paginated (an hour's folders of a day
are one or two requests). A folder dated before the window is not listed again: a re-delivery
older than `FASTFEAST_OBJECT_LOOKBACK_DAYS` (default 3) days before the newest date is loaded by a
backfill, not by the sensor. Each file carries its ETag (`FoundFile.version`) and its
`LastModified` in place of both change times.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.sources.layout import (
    hour_partition_key,
    is_day,
    is_hour,
    master_partition_key,
    partition_folder,
)
from fastfeast_dagster.sources.listing import FoundFile, file_names
from fastfeast_dagster.sources.storage import ObjectPath, ObjectRoot

LOOKBACK_ENV = "FASTFEAST_OBJECT_LOOKBACK_DAYS"
DEFAULT_LOOKBACK_DAYS = 3


def list_partition_files(
    contract: Contract, root: ObjectRoot, kind: str
) -> dict[str, list[FoundFile]]:
    """Every known object of `kind` (`batch` or `stream`) in the window, by partition key."""
    found: dict[str, list[FoundFile]] = {}
    master_key = master_partition_key(contract)
    if kind == "batch":
        names = file_names(contract, "batch")
        found[master_key] = dimension_files(contract, root, master_key)
        for day in window(date_prefixes(root, contract.paths.batch), today(contract)):
            if day > master_key:
                found[day] = _known(root, f"{contract.paths.batch}/{day}", names)
    else:
        names = file_names(contract, "stream")
        first_day = contract.partitions.stream_start_date.isoformat()
        for day in window(date_prefixes(root, contract.paths.stream), today(contract)):
            if day < first_day:
                continue
            by_hour: dict[str, list[FoundFile]] = {}
            for found_file in _known(root, f"{contract.paths.stream}/{day}", names, depth=2):
                by_hour.setdefault(found_file.path.relative.split("/")[-2], []).append(found_file)
            for hour, files in by_hour.items():
                if is_hour(hour):
                    found[hour_partition_key(day, hour)] = files
    return {key: files for key, files in found.items() if files}


def dimension_files(contract: Contract, root: ObjectRoot, day: str) -> list[FoundFile]:
    """The dimension objects present for `day`'s partition (the master's on the start date)."""
    folder_kind = "master" if day == master_partition_key(contract) else "batch"
    folder = partition_folder(contract, root, "batch", day)  # type: ignore[arg-type]
    return _known(root, folder.relative, file_names(contract, folder_kind))


def date_prefixes(root: ObjectRoot, relative: str) -> list[str]:
    """The `YYYY-MM-DD` "folders" directly under `relative/`."""
    dates = []
    for page in root.list(relative, delimiter=True):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            if is_day(name):
                dates.append(name)
    return dates


def window(dates: Iterable[str], today: dt.date) -> list[str]:
    """The dates from `lookback` days before the newest one up to tomorrow, and any later ones.

    The newest date, not today, anchors it, so a replayed past day is listed like a live one;
    a folder dated beyond tomorrow (a typo) cannot move the window past every real date.
    """
    lookback = int(os.environ.get(LOOKBACK_ENV) or DEFAULT_LOOKBACK_DAYS)
    present = sorted(set(dates))
    horizon = (today + dt.timedelta(days=1)).isoformat()
    anchors = [day for day in present if day <= horizon]
    if not anchors:
        return present
    start = (dt.date.fromisoformat(anchors[-1]) - dt.timedelta(days=lookback)).isoformat()
    return [day for day in present if day >= start]


def today(contract: Contract) -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(contract.partitions.timezone)).date()


def _known(
    root: ObjectRoot, relative: str, names: dict[str, str], depth: int = 1
) -> list[FoundFile]:
    """Objects `depth` levels under `relative/` whose name the contract knows (so no `*.tmp`)."""
    found = []
    for page in root.list(relative, delimiter=depth == 1):
        for item in page.get("Contents", []):
            path = ObjectPath(root, item["Key"].removeprefix(root.key("")).lstrip("/"))
            inside = path.relative.removeprefix(relative.strip("/") + "/")
            if inside.count("/") != depth - 1 or path.name not in names:
                continue
            modified = int(item["LastModified"].timestamp() * 1e9)
            found.append(
                FoundFile(
                    names[path.name],
                    path,  # type: ignore[arg-type]
                    item["Size"],
                    modified,
                    modified,
                    version=item["ETag"],
                )
            )
    return found
