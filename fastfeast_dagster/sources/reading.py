"""Reading source files into all-text frames, with a source row number per row.

Nothing is typed here: every value stays the text the file carried (JSON scalars are rendered as
text, JSON `null`/`NaN` become missing), so validation sees exactly what arrived and quarantine can
store it. A file that cannot be read becomes a `FileRejection` with a message naming the problem,
never an exception without context.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

ROW_COLUMN = "_source_row"
TEXT_DTYPE = pd.StringDtype("pyarrow")


@dataclass(frozen=True)
class SourceFile:
    """A file as found on disk, identified by what was read (md5 of the bytes actually parsed)."""

    path: Path
    relative_path: str
    size: int
    mtime_ns: int
    md5: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class FileRejection:
    """The whole file is unusable; `rule` is a stable key, `message` says what is wrong."""

    rule: str
    message: str


@dataclass(frozen=True)
class ReadResult:
    file: SourceFile
    frame: pd.DataFrame | None  # all-text columns + ROW_COLUMN (1-based data row)
    rejection: FileRejection | None


def read_source_file(path: Path, file_format: str, data_root: Path) -> ReadResult:
    """Read one CSV or JSON-array file; bytes are read once so the md5 matches what was parsed."""
    data = path.read_bytes()
    stat = path.stat()
    relative = (
        path.relative_to(data_root).as_posix() if path.is_relative_to(data_root) else str(path)
    )
    source = SourceFile(path, relative, len(data), stat.st_mtime_ns, hashlib.md5(data).hexdigest())
    try:
        if not data.strip():
            raise _Unreadable("empty_file", "the file is empty")
        text = text_check(data)
        if file_format == "csv":
            del text
            frame = _read_csv(data)
        elif file_format == "json":
            # The text alone is what JSON parsing needs: let the bytes go before it starts.
            del data
            frame = _read_json(text)
        else:
            raise _Unreadable("unsupported_format", f"unsupported file format {file_format!r}")
    except _Unreadable as problem:
        return ReadResult(source, None, FileRejection(problem.rule, problem.message))
    frame.insert(0, ROW_COLUMN, pd.RangeIndex(1, len(frame) + 1))
    return ReadResult(source, frame, None)


class _Unreadable(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def text_check(data: bytes) -> str:
    """The bytes as text; refuses what is not UTF-8, naming the offset of the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Unreadable(
            "not_utf8", f"not UTF-8 text: {error.reason} at byte offset {error.start}"
        ) from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _Unreadable("binary", f"binary content: NUL byte at offset {nul}")
    return text


def _read_csv(data: bytes) -> pd.DataFrame:
    first_line = data.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    columns = next(csv.reader([first_line]), [])
    if not any(name.strip() for name in columns):
        raise _Unreadable("empty_file", "the CSV file has no header row")
    _refuse_duplicate_columns(columns)
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(column_names=columns, skip_rows=1, block_size=1 << 24),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in columns},
                # Empty cells stay empty text: validation applies the one null vocabulary.
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        # Arrow quotes the offending row after the last colon; a row may hold PII.
        problem = re.sub(r"(got \d+)\s*:.*", r"\1", str(error).splitlines()[0], flags=re.DOTALL)
        raise _Unreadable("malformed_csv", f"malformed CSV: {problem}") from None
    return table.to_pandas(types_mapper=lambda _: TEXT_DTYPE)


_JSON_CHUNK_ROWS = 65_536
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _read_json(text: str) -> pd.DataFrame:
    """A JSON array of objects, parsed object by object into Arrow string columns.

    Holding a million parsed dicts at once costs gigabytes; converting every 64k rows into Arrow
    arrays keeps the peak near the size of the text. Python's decoder accepts the non-standard
    `NaN` literal that pandas-written files carry.
    """
    decoder = json.JSONDecoder()
    position = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", position):
        value = _decode(decoder, text, position)[0]
        raise _Unreadable(
            "not_an_array", f"expected a JSON array of objects, found a {_json_kind(value)}"
        )
    position = _WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
    columns: dict[str, list[pa.Array]] = {}
    chunk: list[dict[str, object]] = []
    done = 0
    first = True
    while not text.startswith("]", position):
        if not first:
            if not text.startswith(",", position):
                raise _Unreadable(
                    "malformed_json",
                    f"not valid JSON: expected ',' or ']' at {_where(text, position)}",
                )
            position = _WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
        first = False
        record, position = _decode(decoder, text, position)
        if not isinstance(record, dict):
            raise _Unreadable(
                "not_an_array",
                f"element {done + len(chunk) + 1} of the array is a {_json_kind(record)}, "
                "not an object",
            )
        chunk.append(record)
        if len(chunk) == _JSON_CHUNK_ROWS:
            _add_chunk(columns, chunk, done)
            done += len(chunk)
            chunk = []
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        if position >= len(text):
            raise _Unreadable(
                "malformed_json",
                f"not valid JSON: the array is not closed at {_where(text, position)}",
            )
    _add_chunk(columns, chunk, done)
    done += len(chunk)
    if text[position + 1 :].strip():
        raise _Unreadable("malformed_json", "not valid JSON: extra data after the array")
    table = pa.table(
        {name: pa.chunked_array(arrays, type=pa.string()) for name, arrays in columns.items()}
    )
    frame = table.to_pandas(types_mapper=lambda _: TEXT_DTYPE)
    frame.index = pd.RangeIndex(done)
    return frame


def _where(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"line {line} column {position - text.rfind(chr(10), 0, position)}"


def _decode(decoder: json.JSONDecoder, text: str, position: int) -> tuple[object, int]:
    try:
        return decoder.raw_decode(text, position)
    except json.JSONDecodeError as error:
        raise _Unreadable(
            "malformed_json",
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
        ) from None


def _add_chunk(
    columns: dict[str, list[pa.Array]], chunk: list[dict[str, object]], done: int
) -> None:
    """Append a chunk of records as Arrow arrays; a key first seen now is null in earlier rows."""
    known = set(columns)
    for record in chunk:
        if record.keys() - known:
            # In the record's own order, so columns keep the order the file gives them.
            for name in record:
                if name not in known:
                    columns[name] = [pa.nulls(done, pa.string())] if done else []
                    known.add(name)
    for name, arrays in columns.items():
        arrays.append(pa.array([_json_text(record.get(name)) for record in chunk], pa.string()))


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return repr(value)
    if isinstance(value, int | str):
        return str(value)
    # Nested arrays/objects are kept as JSON text; validation rejects them as wrong types.
    return json.dumps(value, ensure_ascii=False)


def _json_kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )


def _refuse_duplicate_columns(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _Unreadable("duplicate_columns", f"the header repeats column {name!r}")
        seen.add(name)
