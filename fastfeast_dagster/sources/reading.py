"""Reading source files into all-text frames, with a source row number per row.

Nothing is typed here: every value stays the text the file carried (JSON scalars are rendered as
text, JSON `null`/`NaN` become missing), so validation sees exactly what arrived and quarantine can
store it. A file that cannot be read becomes a `FileRejection` with a message naming the problem,
never an exception without context.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import operator
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from fastfeast_dagster.batch import ROW_COLUMN, FileRejection, SourceFile
from fastfeast_dagster.contract import TEXT_DTYPE
from fastfeast_dagster.sources.storage import read_blob


@dataclass(frozen=True)
class ReadResult:
    file: SourceFile
    frame: pd.DataFrame | None  # all-text columns + ROW_COLUMN (1-based data row)
    rejection: FileRejection | None


def read_source_file(path: Path, file_format: str, data_root: Path) -> ReadResult:
    """Read one CSV or JSON-array file; bytes are read once so the md5 matches what was parsed."""
    # A local file or an S3 object (`sources/storage.py`), pinned to the version the run was for.
    blob = read_blob(path)
    data = blob.data
    relative = (
        path.relative_to(data_root).as_posix() if path.is_relative_to(data_root) else str(path)
    )
    size = len(data)
    # hashlib releases the GIL on large inputs: the md5 runs on the other core while parsing.
    with ThreadPoolExecutor(max_workers=1) as pool:
        md5 = pool.submit(hashlib.md5, data)  # holds its own reference to the bytes
        try:
            rejection = None
            # isspace, unlike strip, does not copy a large file to find that it is not blank.
            if not data or data.isspace():
                raise _Unreadable("empty_file", "the file is empty")
            text = text_check(data)
            if file_format == "csv":
                del text
                frame = _read_csv(data)
            elif file_format == "json":
                # The text alone is what JSON parsing needs: let the bytes go (once hashed).
                del data
                frame = _read_json(text)
            else:
                raise _Unreadable("unsupported_format", f"unsupported file format {file_format!r}")
        except _Unreadable as problem:
            rejection = FileRejection(problem.rule, problem.message)
        source = SourceFile(path, relative, size, blob.modified_ns, md5.result().hexdigest())
    if rejection is not None:
        return ReadResult(source, None, rejection)
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
    """A JSON array of objects, parsed into Arrow string columns a slice of records at a time.

    Holding a million parsed dicts at once costs gigabytes; converting every slice into Arrow
    arrays keeps the peak near the size of the text. Python's decoder accepts the non-standard
    `NaN` literal that pandas-written files carry.
    """
    try:
        return _json_frame(_sliced_records(text))
    except _NotPlain:
        # Parsed again element by element, which names whatever is wrong with the file.
        return _json_frame(_decoded_records(text))


def _json_frame(chunks: Iterator[list[dict[str, object]]]) -> pd.DataFrame:
    columns: dict[str, list[pa.Array]] = {}
    done = 0
    for chunk in chunks:
        _add_chunk(columns, chunk, done)
        done += len(chunk)
    table = pa.table(
        {name: pa.chunked_array(arrays, type=pa.string()) for name, arrays in columns.items()}
    )
    frame = table.to_pandas(types_mapper=lambda _: TEXT_DTYPE)
    frame.index = pd.RangeIndex(done)
    return frame


class _NotPlain(Exception):
    """The fast path cannot vouch for this text; the element-by-element parser decides."""


_SLICE_CHARS = 1 << 24
_ELEMENT_END = re.compile(r"\}[ \t\n\r]*,")


def _sliced_records(text: str) -> Iterator[list[dict[str, object]]]:
    """Records of a plain array of objects, `json.loads`-ed ~16 MB of text at a time.

    Decoding element by element in a Python loop cost as much as the decoding itself. A slice
    ends at a `},` candidate; if that lies inside a string or a nested value, the slice is not
    valid JSON (its brackets or quotes are left open) and the whole file takes the slow path.
    """
    first = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    last = len(text.rstrip()) - 1
    if not (text.startswith("[", first) and last > first and text[last] == "]"):
        raise _NotPlain
    position = _WHITESPACE.match(text, first + 1).end()  # type: ignore[union-attr]
    while position < last:
        boundary = _ELEMENT_END.search(text, position + _SLICE_CHARS, last)
        stop = boundary.start() + 1 if boundary else last
        try:
            records = json.loads(f"[{text[position:stop]}]")
        except json.JSONDecodeError:
            raise _NotPlain from None
        if not all(type(record) is dict for record in records):
            raise _NotPlain
        yield records
        position = boundary.end() if boundary else last


def _decoded_records(text: str) -> Iterator[list[dict[str, object]]]:
    """Records decoded one by one, refusing the file with the position of its first problem."""
    decoder = json.JSONDecoder()
    position = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", position):
        value = _decode(decoder, text, position)[0]
        raise _Unreadable(
            "not_an_array", f"expected a JSON array of objects, found a {_json_kind(value)}"
        )
    position = _WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
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
            yield chunk
            done += len(chunk)
            chunk = []
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        if position >= len(text):
            raise _Unreadable(
                "malformed_json",
                f"not valid JSON: the array is not closed at {_where(text, position)}",
            )
    if text[position + 1 :].strip():
        raise _Unreadable("malformed_json", "not valid JSON: extra data after the array")
    yield chunk


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
        try:
            values = list(map(operator.itemgetter(name), chunk))
        except KeyError:  # a record without this key: missing there
            values = [record.get(name) for record in chunk]
        arrays.append(_json_column(values))


def _json_column(values: list[object]) -> pa.Array:
    """`_json_text` of every value, converting whole runs of one kind at a time.

    Rendering value by value in Python was most of the reading time of a large file. Strings are
    kept as they are, integers rendered by Arrow (as `str` would), each distinct float once.
    """
    kinds = np.fromiter(
        map(_KINDS.get, map(type, values), itertools.repeat(_OTHER)), np.int8, len(values)
    )
    present = set(np.unique(kinds).tolist())
    if present <= {_NONE, _STR}:
        return pa.array(values, pa.string())
    text = np.full(len(values), None, dtype=object)
    if _STR in present:
        text[kinds == _STR] = list(itertools.compress(values, kinds == _STR))
    if _INT in present:
        try:
            picked = pa.array(list(itertools.compress(values, kinds == _INT)), pa.int64())
            text[kinds == _INT] = picked.cast(pa.string()).to_numpy(zero_copy_only=False)
        except OverflowError:  # beyond 64 bits: Python renders it
            kinds[kinds == _INT] = _OTHER
    if _FLOAT in present:
        numbers = np.fromiter(itertools.compress(values, kinds == _FLOAT), np.float64)
        # Distinct bit patterns, not values: 0.0 and -0.0 render differently.
        distinct, positions = np.unique(numbers.view(np.int64), return_inverse=True)
        rendered = np.array(
            [None if math.isnan(x) else repr(x) for x in distinct.view(np.float64).tolist()],
            dtype=object,
        )
        text[kinds == _FLOAT] = rendered[positions]
    if (kinds == _OTHER).any():
        others = itertools.compress(values, kinds == _OTHER)
        text[kinds == _OTHER] = [_json_text(value) for value in others]
    return pa.array(text, pa.string())


_NONE, _STR, _INT, _FLOAT, _OTHER = range(5)
# Exact types: bool is an int subclass but renders as true/false.
_KINDS: dict[type, int] = {type(None): _NONE, str: _STR, int: _INT, float: _FLOAT}


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
