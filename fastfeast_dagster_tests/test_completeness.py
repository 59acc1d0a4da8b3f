"""Whether a just-written file is already whole (sources/completeness.py), on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastfeast_dagster.sources.completeness import is_complete

MB = 2**20


@pytest.mark.parametrize(
    ("name", "content", "whole"),
    [
        ("orders.json", '[{"order_id": 1}, {"order_id": 2}]\n', True),
        ("orders.json", "[]", True),  # an empty hour is a whole file
        ("orders.json", '[{"order_id": 1}, {"ord', False),  # cut mid-record
        ("orders.json", '[{"order_id": 1}]]', False),
        ("orders.json", '{"order_id": 1}', False),  # not an array: the reader rejects it later
        ("orders.json", "", False),
        ("tickets.csv", "ticket_id,order_id\n1,2\n", True),
        ("tickets.csv", "ticket_id,order_id\n1,", False),
        ("tickets.csv", "", False),
        ("notes.txt", "anything\n", False),
    ],
)
def test_whole_files_are_told_from_unfinished_ones(
    tmp_path: Path, name: str, content: str, whole: bool
) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert is_complete(path, MB) is whole


def test_a_file_larger_than_the_limit_waits_whatever_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text("[" + ",".join(["1"] * 1000) + "]")
    assert is_complete(path, MB)
    assert not is_complete(path, 100)
    assert not is_complete(tmp_path / "gone.json", MB)
