"""Finding the files of partitions on disk, by `stat` only: what a sensor tick may afford.

A folder sensor lists day and hour folders and stats the files the contract names in them; it
never reads contents (md5 belongs to the asset). Each file carries its change times and those
of its folders, which tell a file written in place from a folder moved in whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.sources.layout import (
    hour_partition_key,
    is_day,
    is_hour,
    master_partition_key,
    partition_folder,
)
from fastfeast_dagster.sources.storage import DataRoot, ObjectRoot


@dataclass(frozen=True)
class FoundFile:
    source: str
    path: Path
    size: int
    mtime_ns: int
    ctime_ns: int
    # (folder, mtime, ctime) from the file's folder up to, not including, the watched root.
    folders: tuple[tuple[Path, int, int], ...] = ()
    version: str | None = None  # an object's ETag; a local file has none


def list_partition_files(
    contract: Contract, root: DataRoot, kind: str
) -> dict[str, list[FoundFile]]:
    """Every known file under the folders of `kind` (`batch` or `stream`), by partition key."""
    if isinstance(root, ObjectRoot):
        from fastfeast_dagster.sources import objects  # it builds on this module

        return objects.list_partition_files(contract, root, kind)
    found: dict[str, list[FoundFile]] = {}
    if kind == "batch":
        names = file_names(contract, "batch")
        master = file_names(contract, "master")
        found[master_partition_key(contract)] = _stat_known(root / contract.paths.master, master)
        batch_root = root / contract.paths.batch
        for day in _subfolders(batch_root):
            if is_day(day.name) and day.name > master_partition_key(contract):
                found[day.name] = _stat_known(day, names, _chain(day))
    else:
        names = file_names(contract, "stream")
        first_day = contract.partitions.stream_start_date.isoformat()
        for day in _subfolders(root / contract.paths.stream):
            if not is_day(day.name) or day.name < first_day:
                continue
            day_link = _chain(day)  # stat once, for each of its hours
            for hour in _subfolders(day):
                if is_hour(hour.name):
                    key = hour_partition_key(day.name, hour.name)
                    found[key] = _stat_known(hour, names, _chain(hour) + day_link)
    return {key: files for key, files in found.items() if files}


def dimension_files(contract: Contract, root: DataRoot, day: str) -> list[FoundFile]:
    """The dimension files present for `day`'s partition (the master's on the start date)."""
    if isinstance(root, ObjectRoot):
        from fastfeast_dagster.sources import objects

        return objects.dimension_files(contract, root, day)
    folder_kind = "master" if day == master_partition_key(contract) else "batch"
    folder = partition_folder(contract, root, "batch", day)
    return _stat_known(folder, file_names(contract, folder_kind))


def file_names(contract: Contract, folder_kind: str) -> dict[str, str]:
    return {
        spec.files[folder_kind]: name  # type: ignore[index]
        for name, spec in contract.sources.items()
        if folder_kind in spec.files
    }


# A tick lists every delivered folder, every few seconds: scandir's entry types cost no stat, and
# a file is stat'ed only when it is there (not once per name the contract knows).


def _subfolders(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return [
                Path(entry.path)
                for entry in entries
                if entry.is_dir() and not entry.name.startswith(".")
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


Chain = tuple[tuple[Path, int, int], ...]


def _chain(folder: Path) -> Chain:
    """The folder with its (mtime, ctime); empty when it went away while listing."""
    try:
        stat = folder.stat()
    except FileNotFoundError:
        return ()
    return ((folder, stat.st_mtime_ns, stat.st_ctime_ns),)


def _stat_known(folder: Path, names: dict[str, str], chain: Chain = ()) -> list[FoundFile]:
    """Files with a contract name; temporary (`*.tmp`) and hidden files never match one."""
    try:
        with os.scandir(folder) as entries:
            known = [(entry, names[entry.name]) for entry in entries if entry.name in names]
    except (FileNotFoundError, NotADirectoryError):
        return []  # the folder went away while listing
    found = []
    for entry, source in known:
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue
        path = Path(entry.path)
        found.append(
            FoundFile(source, path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, chain)
        )
    return found
