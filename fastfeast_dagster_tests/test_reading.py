"""Reading files into all-text frames; every unreadable file becomes a precise file rejection."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from fastfeast_dagster.batch import ROW_COLUMN
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.contract.model import ColumnNames
from fastfeast_dagster.sources import reading
from fastfeast_dagster.sources.names import ColumnMatch
from fastfeast_dagster.sources.reading import read_source_file


def _read(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    name: str,
    content: bytes,
    file_format: str | None = None,
    columns: ColumnMatch | None = None,
):
    path = tmp_path / name
    path.write_bytes(content)
    return read_source_file(path, file_format or name.rsplit(".", 1)[1], tmp_path, columns)


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
    ("name", "content", "rule", "message", "seen"),
    [
        ("a.csv", b"", "empty_file", "the file is empty", 0),
        ("a.json", b"  \n", "empty_file", "the file is empty", 0),
        ("a.json", b'[{"a": 1}, {"a": ', "malformed_json", "not valid JSON: Expecting value", 1),
        (
            "a.json",
            b'{"a": 1}',
            "not_an_array",
            "expected a JSON array of objects, found a object",
            0,
        ),
        ("a.json", b"[1, 2]", "not_an_array", "element 1 of the array is a number", 0),
        ("a.json", b'[{"a": 1}, 2]', "not_an_array", "element 2 of the array is a number", 1),
        ("a.csv", b"a,b\n\xff\xfe,1\n", "not_utf8", "not UTF-8 text: invalid start byte", 0),
        ("a.csv", b"a,b\n1\x002,3\n", "binary", "binary content: NUL byte at offset 5", 0),
        ("a.csv", b"a,a\n1,2\n3,4\n", "duplicate_columns", "the header repeats column 'a'", 2),
        ("a.csv", b" A ,a\n1,2\n", "duplicate_columns", "the header repeats column 'a'", 1),
    ],
)
def test_unreadable_files_are_rejected_with_a_precise_message(
    tmp_path: Path, name: str, content: bytes, rule: str, message: str, seen: int
) -> None:
    """A rejected file still counts (and hands on for quarantine) the rows it could see."""
    columns = ColumnMatch(frozenset({"a", "b"}), ColumnNames())
    result = _read(tmp_path, name, content, columns=columns)
    assert result.rejection is not None
    assert result.rejection.rule == rule
    assert message in result.rejection.message
    assert (0 if result.frame is None else len(result.frame)) == seen
    assert result.file.size == len(content)
    assert "1,2" not in result.rejection.message  # a row's values (maybe PII) are never quoted


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


CITY = '"city_id": {}, "city_name": {}, "country": "Egypt", "timezone": "Africa/Cairo"'


def _cities(*names: str) -> bytes:
    """A cities.json whose records carry these `city_name` literals (JSON text), ids 1, 2, …"""
    records = ["{" + CITY.format(index, name) + "}" for index, name in enumerate(names, start=1)]
    return ("[" + ", ".join(records) + "]").encode()


DEEP = "[" * 100_000 + "]" * 100_000
ROW_DAMAGE = [
    # (case, file, content, damaged rows as (row, rule, column), readable rows, reason excerpt)
    (
        "short row",
        "teams.csv",
        b"team_id,team_name\n1,A\n2\n3,C\n",
        [(2, "field_count", None)],
        2,
        "line 3: 1 field(s), the header has 2",
    ),
    (
        "a ,,, line",
        "teams.csv",
        b"team_id,team_name\n1,A\n,,,\n3,C\n",
        [(2, "field_count", None)],
        2,
        "line 3: 4 field(s), the header has 2",
    ),
    (
        "truncated last row",
        "regions.csv",
        b"region_id,region_name,city_id,delivery_base_fee\n1,Maadi,1,10\n2,Zamal",
        [(2, "field_count", None)],
        1,
        "line 3: 2 field(s), the header has 4",
    ),
    (
        "NUL in a string",
        "cities.json",
        _cities('"Cai\\u0000ro"', '"Giza"'),
        [(1, "nul_character", "city_name")],
        1,
        "city_name: holds a NUL character",
    ),
    (
        "lone surrogate",
        "cities.json",
        _cities('"Giza"', '"\\ud83d"'),
        [(2, "invalid_unicode", "city_name")],
        1,
        "city_name: holds a lone UTF-16 surrogate escape",
    ),
    (
        "100k-deep nesting",
        "cities.json",
        _cities(DEEP, '"Giza"'),
        [(1, "too_deeply_nested", None)],
        1,
        "the record nests deeper than the JSON reader can decode",
    ),
    (
        "duplicate key",
        "cities.json",
        b'[{"city_id": 1, "city_name": "Giza", "city_name": "Cairo", "country": "E",'
        b' "timezone": "T"},'
        b' {"city_id": 2, "city_name": "Cairo", "country": "E", "timezone": "T"}]',
        [(1, "duplicate_key", "city_name")],
        1,
        "city_name: the record gives this key more than once",
    ),
    (
        "the same key in two spellings",
        "cities.json",
        b'[{"city_id": 1, "City_Name": "Giza", "city_name": "Cairo", "country": "E",'
        b' "timezone": "T"},'
        b' {"city_id": 2, " CITY_NAME ": "Cairo", "country": "E", "timezone": "T"}]',
        [(1, "duplicate_key", "city_name")],
        1,
        "city_name: the record gives this key more than once",
    ),
    (
        "a key that is data",
        "cities.json",
        b'[{"city_id": 1, "city_name": "G", "country": "E", "timezone": "T", "ann@x.io": 1},'
        b' {"city_id": 2, "city_name": "C", "country": "E", "timezone": "T"}]',
        [(1, "extra_key", "key_5")],
        1,
        "key_5: not a column of the contract",
    ),
]


@pytest.mark.parametrize(
    ("case", "name", "content", "damaged", "readable", "reason"),
    ROW_DAMAGE,
    ids=[case[0] for case in ROW_DAMAGE],
)
def test_row_damage_costs_that_row_and_the_others_stay(
    tmp_path: Path,
    contract: Contract,
    case: str,
    name: str,
    content: bytes,
    damaged: list[tuple[int, str, str | None]],
    readable: int,
    reason: str,
) -> None:
    source = next(s for s, spec in contract.sources.items() if name in spec.files.values())
    result = _read(tmp_path, name, content, columns=ColumnMatch.of(contract, source))
    assert result.rejection is None, case
    lines = result.damage
    found = [
        (row, rule, None if pd.isna(column) else column)
        for row, rule, column in zip(lines[ROW_COLUMN], lines["rule"], lines["column"], strict=True)
    ]
    assert found == damaged
    assert set(lines["stage"]) == {"file"}
    assert reason in lines["reason"].iloc[0]
    assert len(result.frame) == readable + len(damaged)  # every row is counted
    assert len(result.readable) == readable
    assert not set(result.readable[ROW_COLUMN]) & {row for row, _, _ in damaged}
    assert set(result.readable.columns) <= {ROW_COLUMN, *contract.sources[source].columns}
    # What no text column can store is replaced, so that the row can be quarantined as it came.
    assert (
        not result.frame.astype(str)
        .apply(lambda c: c.str.contains("[\x00\ud800-\udfff]"))
        .any()
        .any()
    )


_EXTRA_KEY = (
    b'[{"city_id": 1, "city_name": "Giza", "country": "Egypt", "timezone": "T", "Lead": 3},'
    b' {"city_id": 2, "city_name": "Cairo", "country": "Egypt", "timezone": "T"}]'
)


def test_an_unknown_key_is_kept_when_rescued_and_costs_its_record_when_rejected(
    tmp_path: Path, contract: Contract
) -> None:
    rescued = _read(tmp_path, "cities.json", _EXTRA_KEY, columns=ColumnMatch.of(contract, "cities"))
    assert rescued.rejection is None and rescued.damage.empty
    # Matched to a column name as contract columns are, so that adopting `lead` finds it.
    assert rescued.readable["lead"].fillna("-").tolist() == ["3", "-"]
    strict = dataclasses.replace(ColumnMatch.of(contract, "cities"), rescue=False)
    rejected = _read(tmp_path, "cities.json", _EXTRA_KEY, columns=strict)
    lines = rejected.damage
    assert list(zip(lines[ROW_COLUMN], lines["rule"], lines["column"], strict=True)) == [
        (1, "extra_key", "lead")
    ]
    assert "lead: not a column of the contract" in lines["reason"].iloc[0]
    assert rejected.readable[ROW_COLUMN].tolist() == [2] and "lead" not in rejected.readable


def test_valid_input_in_other_spellings_is_accepted(tmp_path: Path, contract: Contract) -> None:
    teams = ColumnMatch.of(contract, "teams")
    spaced = _read(tmp_path, "teams.csv", b" Team_ID ,TEAM_NAME\r\n1,A\r\n", columns=teams)
    assert spaced.rejection is None and spaced.damage.empty
    assert list(spaced.readable.columns) == [ROW_COLUMN, "team_id", "team_name"]
    cities = ColumnMatch.of(contract, "cities")
    bom = _read(tmp_path, "cities.json", b"\xef\xbb\xbf" + _cities('"Giza"'), columns=cities)
    assert bom.rejection is None and bom.damage.empty
    assert bom.readable["city_name"].tolist() == ["Giza"]
    huge = "9" * 5000  # beyond Python's 4,300-digit int-string limit: kept as the text it is
    big = _read(tmp_path, "cities.json", _cities('"Giza"').replace(b": 1,", f": {huge},".encode()))
    assert big.rejection is None and big.readable["city_id"].tolist() == [huge]


def _special(path: Path, kind: str) -> None:
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:  # /dev/null's device numbers: opening it would read nothing, forever for /dev/zero
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("FIFO", "a FIFO (named pipe), not a regular file"),
        ("directory", "a directory, not a regular file"),
        ("device", "a character device, not a regular file"),
    ],
)
def test_a_file_that_is_not_a_regular_file_is_refused_without_opening_it(
    tmp_path: Path, kind: str, message: str
) -> None:
    path = tmp_path / "tickets.csv"
    _special(path, kind)
    started = time.monotonic()
    result = read_source_file(path, "csv", tmp_path)
    assert time.monotonic() - started < 5  # a FIFO opened for reading would wait for a writer
    assert result.frame is None
    assert result.rejection == reading.FileRejection("not_a_regular_file", message)


def test_symlinks_are_followed_only_to_regular_files_inside_the_data_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "real.csv").write_bytes(b"team_id,team_name\n1,A\n")
    (tmp_path / "outside.csv").write_bytes(b"team_id,team_name\n2,B\n")
    links = {"inside": root / "real.csv", "outside": tmp_path / "outside.csv"}
    links |= {"dangling": root / "gone.csv", "loop": root / "loop.csv"}
    for name, target in links.items():
        (root / f"{name}.csv").symlink_to(target)
    inside = read_source_file(root / "inside.csv", "csv", root)
    assert inside.rejection is None
    assert inside.frame["team_id"].tolist() == ["1"]
    verdicts = {
        name: read_source_file(root / f"{name}.csv", "csv", root).rejection
        for name in ("outside", "dangling", "loop")
    }
    assert verdicts == {
        "outside": reading.FileRejection(
            "symlink_outside_data", "a symbolic link to a file outside the data root"
        ),
        "dangling": reading.FileRejection(
            "broken_symlink", "a symbolic link to a file that does not exist"
        ),
        "loop": reading.FileRejection("broken_symlink", "a symbolic link that loops"),
    }


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    """Run as root without the capability to override file modes, as any other user reads."""
    path = tmp_path / "teams.csv"
    path.write_bytes(b"team_id,team_name\n1,A\n")
    path.chmod(0)
    script = (
        "import sys; from pathlib import Path;"
        " from fastfeast_dagster.sources.reading import read_source_file;"
        " print(read_source_file(Path(sys.argv[1]), 'csv', Path(sys.argv[1]).parent).rejection)"
    )
    command = [sys.executable, "-c", script, str(path)]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == (
        "FileRejection(rule='unreadable', message='the file cannot be read: Permission denied')"
    )


def test_a_headerless_csv_is_refused_without_quoting_its_first_row(tmp_path: Path) -> None:
    first = "1,Ann,ann@example.com,01012345678,3,1,2025-01-01,female,2025-01-01 10:00:00,"
    content = f"{first}\n2,Bob,bob@example.com,01012345679,3,1,2025-01-02,male,,\n".encode()
    result = _read(tmp_path, "customers.csv", content)
    assert result.rejection == reading.FileRejection(
        "header_not_names",
        "the first line does not name the columns: 8 of its 10 fields are not column names"
        " (is the header row missing?)",
    )
    # Both lines are rows of the rejected file, under names that are not their values.
    assert len(result.frame) == 2
    assert list(result.frame.columns) == [ROW_COLUMN, *(f"column_{n}" for n in range(1, 11))]


TEAMS = "team_id,team_name\n"
LATE = f"{TEAMS}1,A\n2,Bee\n3,C".encode()  # what comes before the bad byte
BAD_LATE = LATE + b"\xe9\n"
NUL_LATE = LATE + b"\x00\n"
BLOCK_VERDICTS = [
    # (case, content, rule, message): the verdict on the whole file, at every block size
    (
        "characters split across blocks",
        f"{TEAMS}1,Café\n2,€ 😀\n".encode(),
        None,
        None,
    ),
    ("a BOM split across blocks", b"\xef\xbb\xbf" + TEAMS.encode() + b"1,A\n", None, None),
    (
        "a bad byte in a later block",
        BAD_LATE,
        "not_utf8",
        f"not UTF-8 text: invalid continuation byte at byte offset {len(LATE)}",
    ),
    (
        "a NUL in a later block",
        NUL_LATE,
        "binary",
        f"binary content: NUL byte at offset {len(LATE)}",
    ),
    (
        "a bad byte after a NUL: not UTF-8, as the whole file",
        NUL_LATE + b"4,\xff\n",
        "not_utf8",
        f"not UTF-8 text: invalid start byte at byte offset {len(NUL_LATE) + 2}",
    ),
    (
        "a character cut off by the end of the file",
        f"{TEAMS}1,€".encode()[:-1],
        "not_utf8",
        f"not UTF-8 text: unexpected end of data at byte offset {len(TEAMS) + 2}",
    ),
    ("blank over several blocks", b" \n\t\r\n" * 3, "empty_file", "the file is empty"),
]


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 1 << 24])
@pytest.mark.parametrize(
    ("case", "content", "rule", "message"), BLOCK_VERDICTS, ids=[c[0] for c in BLOCK_VERDICTS]
)
def test_verdicts_and_md5_do_not_depend_on_where_blocks_end(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    block_bytes: int,
    case: str,
    content: bytes,
    rule: str | None,
    message: str | None,
) -> None:
    """Bytes are read, hashed and decoded a block at a time; offsets are of the whole file."""
    monkeypatch.setattr(reading, "_BLOCK_BYTES", block_bytes)
    result = _read(tmp_path, "teams.csv", content)
    assert (result.file.md5, result.file.size) == (hashlib.md5(content).hexdigest(), len(content))
    if rule is None:
        assert result.rejection is None, case
        text = content.decode().removeprefix("\ufeff")
        assert result.frame["team_name"].tolist() == [
            line.split(",")[1] for line in text.splitlines()[1:]
        ]
    else:
        assert result.rejection == reading.FileRejection(rule, message), case
        assert result.frame is None  # bytes that are no text have no rows


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 7])
def test_json_slices_are_cut_at_element_ends_across_blocks_without_the_slow_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    """A `}` at the end of one block and its `,` (after blank) in a later one still end a slice."""
    monkeypatch.setattr(reading, "_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(reading, "_SLICE_CHARS", 1)
    monkeypatch.setattr(reading, "_decoded_records", None)  # the fast path must not give up
    content = '\ufeff [ {"a": 1}  ,{"a": "x}"}\n \t,\r\n{"a": "é"} , {"a": "\\u0000"} ]\n'.encode()
    result = _read(tmp_path, "o.json", content)
    assert result.rejection is None
    assert result.frame["a"].tolist() == ["1", "x}", "é", "\ufffd"]
    assert result.damage["rule"].tolist() == ["nul_character"]
    assert result.file.md5 == hashlib.md5(content).hexdigest()


@pytest.mark.parametrize("slice_chars", [1, 1 << 24])
def test_a_comma_before_the_closing_bracket_is_malformed_wherever_slices_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_chars: int
) -> None:
    monkeypatch.setattr(reading, "_SLICE_CHARS", slice_chars)
    result = _read(tmp_path, "o.json", b'[{"a": 1}, {"a": 2}, ]')
    assert result.rejection is not None
    assert result.rejection.rule == "malformed_json"
    assert len(result.frame) == 2  # the records before the problem are counted


def _rewrite_in_place(path: Path) -> None:
    """Another value of the same length, and the mtime put back: only the md5 can tell."""
    before = path.stat()
    with path.open("r+b") as file:
        file.seek(3)
        file.write(b"b")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _append(path: Path) -> None:
    with path.open("ab") as file:
        file.write(b"\n")


@pytest.mark.parametrize("change", [_rewrite_in_place, _append])
def test_a_file_that_changes_before_the_slow_path_reads_it_again_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Path], None]
) -> None:
    """The second read must find the bytes the first one hashed, in the file as it was opened."""
    monkeypatch.setattr(reading, "_BLOCK_BYTES", 4)
    monkeypatch.setattr(reading, "_SLICE_CHARS", 1)  # a cut inside the string: the slow path
    path = tmp_path / "o.json"
    path.write_bytes(b'[{"a": "}, {"}, {"a": 2}]')
    whole = reading._checked_whole

    def changed_first(reads: reading._Reads) -> memoryview:
        change(path)
        return whole(reads)

    monkeypatch.setattr(reading, "_checked_whole", changed_first)
    with pytest.raises(reading.FileChanged, match=r"o\.json changed while it was read"):
        read_source_file(path, "json", tmp_path)


@pytest.mark.parametrize(
    "values",
    [
        ["a", None, "", " b "],
        [1, None, -7, 2**63 - 1, -(2**63)],
        [None, None],
        [],
        [1, 2**64],  # beyond 64 bits: Python renders it
        [True, 1, None],  # a boolean is no integer here
        [1, 1.0, -0.0, float("nan"), 1e16],
        ["1", 1],
        [{"a": 1}, [1, 2], "x"],
    ],
    ids=["text", "int64", "missing", "empty", "huge", "bool", "floats", "mixed", "nested"],
)
def test_a_column_inferred_by_arrow_renders_as_value_by_value(values: list[object]) -> None:
    rendered = reading._json_column(values).to_pylist()
    assert rendered == [reading._json_text(value) for value in values]
    assert rendered == reading._json_column_by_kind(values).to_pylist()
