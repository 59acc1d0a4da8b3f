"""Reading files into all-text frames; every unreadable file becomes a precise file rejection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fastfeast_dagster.batch import ROW_COLUMN
from fastfeast_dagster.sources import reading
from fastfeast_dagster.sources.reading import read_source_file


def _read(tmp_path: Path, name: str, content: bytes, file_format: str | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(content)
    return read_source_file(path, file_format or name.rsplit(".", 1)[1], tmp_path)


def test_csv_values_stay_text_with_row_numbers(tmp_path: Path) -> None:
    result = _read(tmp_path, "teams.csv", b'team_id,team_name\n1,"Refunds, VIP"\n370.0,\n')
    assert result.rejection is None
    frame = result.frame
    assert frame[ROW_COLUMN].tolist() == [1, 2]
    assert frame["team_id"].tolist() == ["1", "370.0"]
    assert frame["team_name"].tolist() == ["Refunds, VIP", ""]
    assert (
        result.file.md5 == hashlib.md5(b'team_id,team_name\n1,"Refunds, VIP"\n370.0,\n').hexdigest()
    )
    assert result.file.relative_path == "teams.csv"


def test_json_nan_null_and_scalars_become_text_or_missing(tmp_path: Path) -> None:
    content = b'[{"a": 1, "b": NaN, "c": true}, {"a": 2.5, "b": null, "d": "x"}]'
    result = _read(tmp_path, "orders.json", content)
    assert result.rejection is None
    frame = result.frame
    assert list(frame.columns) == [ROW_COLUMN, "a", "b", "c", "d"]
    assert frame["a"].tolist() == ["1", "2.5"]
    assert frame["b"].isna().all()
    assert frame["c"].iloc[0] == "true"
    assert frame["d"].isna().iloc[0]  # a key missing from one object is a missing value


def test_header_only_csv_and_empty_array_are_zero_rows(tmp_path: Path) -> None:
    header_only = _read(tmp_path, "tickets.csv", b"ticket_id,order_id\n")
    assert header_only.rejection is None
    assert len(header_only.frame) == 0
    assert list(header_only.frame.columns) == [ROW_COLUMN, "ticket_id", "order_id"]
    empty_array = _read(tmp_path, "ticket_events.json", b"[]")
    assert empty_array.rejection is None
    assert len(empty_array.frame) == 0


@pytest.mark.parametrize(
    ("name", "content", "rule", "message"),
    [
        ("a.csv", b"", "empty_file", "the file is empty"),
        ("a.json", b"  \n", "empty_file", "the file is empty"),
        ("a.json", b'[{"a": 1}, {"a": ', "malformed_json", "not valid JSON: Expecting value"),
        ("a.json", b'{"a": 1}', "not_an_array", "expected a JSON array of objects, found a object"),
        ("a.json", b"[1, 2]", "not_an_array", "element 1 of the array is a number"),
        ("a.csv", b"a,b\n\xff\xfe,1\n", "not_utf8", "not UTF-8 text: invalid start byte"),
        ("a.csv", b"a,b\n1\x002,3\n", "binary", "binary content: NUL byte at offset 5"),
        ("a.csv", b"a,b\n1,2,3\n", "malformed_csv", "malformed CSV: CSV parse error"),
        ("a.csv", b"a,a\n1,2\n", "duplicate_columns", "the header repeats column 'a'"),
    ],
)
def test_unreadable_files_are_rejected_with_a_precise_message(
    tmp_path: Path, name: str, content: bytes, rule: str, message: str
) -> None:
    result = _read(tmp_path, name, content)
    assert result.frame is None
    assert result.rejection is not None
    assert result.rejection.rule == rule
    assert message in result.rejection.message
    assert result.file.size == len(content)
    assert "1,2,3" not in result.rejection.message  # a row's values (maybe PII) are never quoted


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    result = _read(tmp_path, "a.xlsx", b"PK\x03\x04 spreadsheet", "xlsx")
    assert result.rejection is not None
    assert result.rejection.rule == "unsupported_format"


def test_large_arrays_are_read_in_chunks_and_late_keys_are_null_before(tmp_path: Path) -> None:
    records = [{"a": index} for index in range(70_000)]
    records[-1]["b"] = "late"  # a key first seen after the first chunk
    result = _read(tmp_path, "big.json", json.dumps(records).encode())
    frame = result.frame
    assert len(frame) == 70_000
    assert frame["a"].iloc[-1] == "69999"
    assert frame["b"].isna().sum() == 69_999
    assert frame["b"].iloc[-1] == "late"
    assert frame[ROW_COLUMN].iloc[-1] == 70_000


@pytest.mark.parametrize("slice_chars", [1, 1 << 24])
def test_json_slices_never_cut_inside_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_chars: int
) -> None:
    """Slice boundaries that fall inside strings or nested values read the same as the whole."""
    monkeypatch.setattr(reading, "_SLICE_CHARS", slice_chars)
    records = [
        {"a": "}, {", "b": [{"x": 1}, {"y": 2}], "c": -0.0},
        {"a": 'q"}, {"', "b": None, "c": 15},
        {"a": "z", "b": True, "c": 1e16},
        {"a": 7, "b": 2**70, "c": 15.0},
    ]
    frame = _read(tmp_path, "o.json", json.dumps(records, indent=2).encode()).frame
    assert frame["a"].tolist() == ["}, {", 'q"}, {"', "z", "7"]
    assert frame["b"].tolist()[::2] == ['[{"x": 1}, {"y": 2}]', "true"]
    assert frame["b"].iloc[3] == str(2**70)
    assert frame["c"].tolist() == ["-0.0", "15", "1e+16", "15.0"]
