"""The data root's layout: which folder and files belong to which partition.

`master/` is the cold start, loaded as the daily partition of the configured start date;
`input/batch/YYYY-MM-DD/` holds a day's dimension snapshots and `input/stream/YYYY-MM-DD/HH/` an
hour's fact micro-batches, whose partition key is `YYYY-MM-DD-HH:00`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from fastfeast_dagster.batch import PartitionFile
from fastfeast_dagster.contract import Contract

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR = re.compile(r"^\d{2}$")


def hour_partition_key(day: str, hour: str) -> str:
    return f"{day}-{hour}:00"


def hour_folder(partition_key: str) -> tuple[str, str]:
    """`2026-03-02-05:00` → (`2026-03-02`, `05`)."""
    return partition_key[:10], partition_key[11:13]


def is_day(name: str) -> bool:
    if not _DAY.match(name):
        return False
    try:
        dt.date.fromisoformat(name)
    except ValueError:
        return False
    return True


def is_hour(name: str) -> bool:
    return bool(_HOUR.match(name)) and int(name) < 24


def master_partition_key(contract: Contract) -> str:
    return contract.partitions.batch_start_date.isoformat()


def partition_folder(contract: Contract, data_root: Path, kind: str, partition_key: str) -> Path:
    """The folder whose files make up this dimension (`batch`) or fact (`stream`) partition."""
    if kind == "batch":
        if partition_key == master_partition_key(contract):
            return data_root / contract.paths.master
        return data_root / contract.paths.batch / partition_key
    day, hour = hour_folder(partition_key)
    return data_root / contract.paths.stream / day / hour


def partition_file(
    contract: Contract, data_root: Path, source: str, partition_key: str
) -> PartitionFile:
    """The file of `source` for one partition (it may not exist yet)."""
    spec = contract.sources[source]
    kind = "batch" if spec.kind == "dimension" else "stream"
    folder = partition_folder(contract, data_root, kind, partition_key)
    is_master = kind == "batch" and partition_key == master_partition_key(contract)
    folder_kind = "master" if is_master else kind
    return PartitionFile(folder / spec.files[folder_kind], folder_kind, partition_key)  # type: ignore[index]
