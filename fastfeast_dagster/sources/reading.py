"""Reading source files into all-text frames, with a source row number per row.

Nothing is typed here: every value stays the text the file carried (JSON scalars are rendered as
text, JSON `null`/`NaN` become missing), so validation sees exactly what arrived and quarantine can
store it. Every file ends with a verdict, never an exception without context:
- a file that cannot be read at all becomes a `FileRejection` naming the problem; it still counts
  the rows it could see (the records before a JSON syntax error, every line of a CSV file whose
  first line is data), which are quarantined with it;
- a row the reader cannot take as it is (a CSV line with the wrong number of fields, a JSON record
  with a NUL or a lone surrogate, a repeated key, a key the contract does not know when the
  source's drift policy rejects unknown columns or when the key is no name, nesting too deep to
  decode) costs that row only: it is a `damage` line, and the other rows go on.
Only regular files are opened (a FIFO would block the run for good, a device would never end),
and only as many bytes as the file held when it was opened.

A file is read once, in blocks (`_BLOCK_BYTES`), and its md5, size, UTF-8 and NUL verdicts are
of exactly those bytes. JSON is parsed from that stream a slice at a time, so neither the bytes
nor the text of the whole file is ever held; CSV holds the bytes (once) for Arrow. What the JSON
fast path cannot vouch for (odd input, which is rare) is read again whole and decoded element by
element; that second read must find the bytes the first one hashed, and the file's size and
mtime as they were at open, or the file changed while being read: `FileChanged` fails the run
(its retry reads the file again), as `ObjectChanged` does for an S3 object.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import math
import operator
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from fastfeast_dagster.batch import ROW_COLUMN, FileRejection, SourceFile
from fastfeast_dagster.contract import TEXT_DTYPE
from fastfeast_dagster.sources.names import ColumnMatch, looks_like_name
from fastfeast_dagster.sources.storage import ObjectPath

# The shape of validation's reject lines (`validation/quarantine.py` takes both).
DAMAGE_COLUMNS = [ROW_COLUMN, "stage", "rule", "column", "reason"]
# A CSV row whose fields do not line up with the header: which value is which is unknown.
MISALIGNED = "field_count"
# A JSON key the contract does not know, where the source's drift policy does not rescue it.
EXTRA_KEY = "extra_key"
_EMPTY_MD5 = hashlib.md5(b"").hexdigest()
# How much of a file is read, hashed and decoded at a time.
_BLOCK_BYTES = 1 << 24


class FileChanged(RuntimeError):
    """The file's bytes changed between two reads of one run: no verdict on them would hold."""


def _no_damage() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in DAMAGE_COLUMNS})


@dataclass(frozen=True)
class ReadResult:
    file: SourceFile
    # Every row the file yielded, damaged ones included: all-text columns + ROW_COLUMN (1-based).
    frame: pd.DataFrame | None
    rejection: FileRejection | None
    # One line per (damaged row, problem); the row's values in `frame` are what could be read.
    damage: pd.DataFrame = field(default_factory=_no_damage)
    # The rows validation takes: `frame` without the damaged rows and the keys only they had.
    readable: pd.DataFrame | None = None


def read_source_file(
    path: Path, file_format: str, data_root: Path, columns: ColumnMatch | None = None
) -> ReadResult:
    """Read one CSV or JSON-array file; the md5 is of exactly the bytes that were parsed.

    With `columns`, the file's names are brought to the contract's spelling, and a JSON key the
    contract does not know costs the records that carry it unless the source rescues unknown
    columns (`validation/drift.py`).
    """
    relative = (
        path.relative_to(data_root).as_posix() if path.is_relative_to(data_root) else str(path)
    )
    try:
        content = _open(path, data_root)
    except _Unreadable as problem:
        return ReadResult(_unread_file(path, relative), None, problem.rejection)
    with closing(content), ThreadPoolExecutor(max_workers=1) as pool:
        reads = _Reads(content, pool, relative)
        rejection = None
        try:
            parsed: _Parsed | None = _parse(reads, file_format, columns)
        except _Unreadable as problem:
            rejection = problem.rejection
            parsed = problem.seen
        source = SourceFile(path, relative, reads.size, content.modified_ns, reads.hexdigest())
    if parsed is None:
        return ReadResult(source, None, rejection)
    frame = parsed.frame
    frame.insert(0, ROW_COLUMN, pd.RangeIndex(1, len(frame) + 1))
    if rejection is not None:
        return ReadResult(source, frame, rejection)
    damage = parsed.damage_frame()
    return ReadResult(source, frame, None, damage, parsed.readable(frame, damage))


def _parse(reads: _Reads, file_format: str, columns: ColumnMatch | None) -> _Parsed:
    if file_format == "csv":
        return _read_csv(_checked_whole(reads), columns)
    if file_format == "json":
        return _read_json(reads, columns)
    # The verdicts on the bytes come first, as for any file.
    _drain(_text(reads.blocks()))
    raise _Unreadable("unsupported_format", f"unsupported file format {file_format!r}")


@dataclass
class _Parsed:
    frame: pd.DataFrame  # without ROW_COLUMN
    damage: list[tuple[int, str, str | None, str]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # columns that cost their rows (JSON keys)
    # JSON: a column exists because some record has the key; CSV: because the header names it.
    columns_from_rows: bool = False

    def damage_frame(self) -> pd.DataFrame:
        if not self.damage:
            return _no_damage()
        rows, rules, columns, reasons = zip(*self.damage, strict=True)
        frame = pd.DataFrame(
            {ROW_COLUMN: rows, "stage": "file", "rule": rules, "column": columns, "reason": reasons}
        )
        return frame.sort_values(ROW_COLUMN, kind="stable").reset_index(drop=True)

    def readable(self, frame: pd.DataFrame, damage: pd.DataFrame) -> pd.DataFrame:
        if damage.empty:
            return frame
        rows = frame[~frame[ROW_COLUMN].isin(damage[ROW_COLUMN])].drop(columns=self.extra)
        if rows.empty and self.columns_from_rows:
            # Every record was damaged: what keys they had says nothing about the file's columns.
            rows = rows[[ROW_COLUMN]]
        return rows.reset_index(drop=True)


class _Unreadable(Exception):
    def __init__(self, rule: str, message: str, seen: _Parsed | None = None) -> None:
        super().__init__(message)
        self.rejection = FileRejection(rule, message)
        self.seen = seen  # the rows read before the problem, when there are any


class _BadBytes(_Unreadable):
    """A verdict on the file's bytes (cannot be read, not UTF-8, binary, blank). JSON may find it
    after parsing some records; they are not rows of the file, which is no text at all."""


class _Content(Protocol):
    """What one file held when it was opened."""

    modified_ns: int

    def blocks(self) -> Iterator[memoryview]: ...

    def whole(self) -> memoryview: ...

    def changed(self) -> bool: ...

    def close(self) -> None: ...


@dataclass
class _LocalFile:
    """An open regular file; never more than the `size` bytes it held when opened are read
    (bytes appended meanwhile are the next version's)."""

    fd: int
    size: int
    modified_ns: int

    def blocks(self) -> Iterator[memoryview]:
        # A fresh buffer per block: the md5 thread may still be hashing the previous one.
        offset = 0
        while offset < self.size:
            block = memoryview(bytearray(min(_BLOCK_BYTES, self.size - offset)))
            count = self._fill(block, offset)
            if count:
                yield block[:count]
            if count < len(block):  # the file is shorter than when it was opened
                return
            offset += count

    def whole(self) -> memoryview:
        data = memoryview(bytearray(self.size))
        return data[: self._fill(data, 0)]

    def changed(self) -> bool:
        info = os.fstat(self.fd)
        return (info.st_size, info.st_mtime_ns) != (self.size, self.modified_ns)

    def close(self) -> None:
        os.close(self.fd)

    def _fill(self, view: memoryview, offset: int) -> int:
        """Read into all of `view` from `offset`, unless the file ends first; the count read."""
        done = 0
        try:
            while done < len(view):
                count = os.preadv(self.fd, [view[done:]], offset + done)
                if not count:
                    break
                done += count
        except OSError as error:
            raise _BadBytes("unreadable", f"the file cannot be read: {error.strerror}") from None
        return done


@dataclass
class _Object:
    """An S3 object, whole in memory (`ObjectPath.read`): read in the same blocks as a file."""

    data: bytes
    modified_ns: int

    def blocks(self) -> Iterator[memoryview]:
        return _slices(memoryview(self.data))

    def whole(self) -> memoryview:
        return memoryview(self.data)

    def changed(self) -> bool:
        return False  # a second read is of the same bytes in memory

    def close(self) -> None:
        pass


def _slices(data: memoryview) -> Iterator[memoryview]:
    return (data[start : start + _BLOCK_BYTES] for start in range(0, len(data), _BLOCK_BYTES))


class _Reads:
    """A file's bytes as handed out, with the size and md5 of exactly those bytes.

    hashlib releases the GIL on large inputs: the md5 runs on the other core while the caller
    decodes and parses. A whole read after blocks (the JSON fallback) hashes anew, once it has
    found the bytes the blocks had and the file as it was at open.
    """

    def __init__(self, content: _Content, pool: ThreadPoolExecutor, name: str) -> None:
        self._content = content
        self._pool = pool
        self._name = name
        self._md5 = hashlib.md5()
        self._hashing: Future[None] | None = None
        self._streamed = False
        self.size = 0

    def blocks(self) -> Iterator[memoryview]:
        self._streamed = True
        for block in self._content.blocks():
            yield self._hash(block)

    def whole(self) -> memoryview:
        data = self._content.whole()
        if self._streamed:
            seen = self._digest()
            if self._content.changed() or hashlib.md5(data[: self.size]).digest() != seen:
                raise FileChanged(
                    f"{self._name} changed while it was read; its new version is read again"
                    " by the retry of this run"
                )
            self._md5, self.size = hashlib.md5(), 0
        return self._hash(data)

    def hexdigest(self) -> str:
        self._digest()
        return self._md5.hexdigest()

    def _hash(self, data: memoryview) -> memoryview:
        # One worker: the updates run in the order the bytes were read.
        self._hashing = self._pool.submit(self._md5.update, data)
        self.size += len(data)
        return data

    def _digest(self) -> bytes:
        if self._hashing is not None:
            self._hashing.result()
        return self._md5.digest()


def _open(path: Path | ObjectPath, data_root: Path) -> _Content:
    """A regular file (followed through a symlink that stays in the data root), opened, or an S3
    object at the version its run was requested for (`sources/storage.py`)."""
    if isinstance(path, ObjectPath):
        from botocore.exceptions import ClientError

        # S3's error code and no more: its message can quote the request. A store that cannot
        # serve now is no verdict on the file (`StoreUnavailable` fails the run instead).
        try:
            blob = path.read()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "unknown error")
            raise _Unreadable("unreadable", f"the object cannot be read: {code}") from None
        return _Object(blob.data, blob.modified_ns)
    try:
        info = os.lstat(path)
        target = _link_target(path, data_root) if stat.S_ISLNK(info.st_mode) else path
        _regular(os.stat(target))
        # Non-blocking: a file swapped for a FIFO since the stat does not wait for a writer.
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        try:
            info = _regular(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
    except OSError as error:
        raise _Unreadable("unreadable", f"the file cannot be read: {error.strerror}") from None
    return _LocalFile(fd, info.st_size, info.st_mtime_ns)


def _regular(info: os.stat_result) -> os.stat_result:
    if not stat.S_ISREG(info.st_mode):
        raise _Unreadable("not_a_regular_file", f"{_kind(info.st_mode)}, not a regular file")
    return info


def _link_target(path: Path, data_root: Path) -> Path:
    """Where a symlink leads, if that is a file inside the data root (never /etc/…, no loop)."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        raise _Unreadable(
            "broken_symlink", "a symbolic link to a file that does not exist"
        ) from None
    except (RuntimeError, OSError):  # a loop: RuntimeError up to Python 3.12, OSError after
        raise _Unreadable("broken_symlink", "a symbolic link that loops") from None
    if not target.is_relative_to(data_root.resolve()):
        raise _Unreadable("symlink_outside_data", "a symbolic link to a file outside the data root")
    return target


def _kind(mode: int) -> str:
    kinds: list[tuple[Callable[[int], bool], str]] = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _unread_file(path: Path | ObjectPath, relative: str) -> SourceFile:
    """A file that was not read: its own metadata, and the md5 of the nothing that was read."""
    size, mtime_ns = 0, 0
    # An object that could not be read has no metadata to ask for either.
    if not isinstance(path, ObjectPath):
        try:
            info = os.lstat(path)
            size, mtime_ns = (info.st_size, info.st_mtime_ns)
        except OSError:
            pass
    return SourceFile(path, relative, size, mtime_ns, _EMPTY_MD5)


# bytes.isspace's whitespace: a file of nothing else is empty.
_BLANK = re.compile(rb"[ \t\n\r\x0b\x0c]*")


def _text(blocks: Iterator[memoryview]) -> Iterator[str]:
    """The text of the blocks as they come, without a leading UTF-8 BOM.

    Refuses what is blank, is not UTF-8 (naming the offset of the first bad byte) or holds a NUL
    byte, with the verdict the whole file would get: a bad byte anywhere outranks an earlier NUL.
    So after a problem no more text is handed out, but every block is still read: the md5 and
    size stay the file's.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed = 0
    nul = -1
    blank = True
    leading = True
    try:
        for block in blocks:
            blank = blank and _BLANK.fullmatch(block) is not None
            text, start = _utf8(decoder, block, fed)
            fed += len(block)
            if nul < 0 and (at := text.find("\x00")) >= 0:
                nul = start + len(text[:at].encode())
            if nul < 0 and text:
                yield text.removeprefix("\ufeff") if leading else text
                leading = False
        _utf8(decoder, b"", fed, final=True)  # a sequence cut off by the end of the file
    except _BadBytes:
        _drain(blocks)
        raise
    if blank:
        raise _BadBytes("empty_file", "the file is empty")
    if nul >= 0:
        raise _BadBytes("binary", f"binary content: NUL byte at offset {nul}")


def _utf8(
    decoder: codecs.IncrementalDecoder, data: memoryview | bytes, fed: int, final: bool = False
) -> tuple[str, int]:
    """`data` decoded after the bytes the decoder held back, and the file offset the text starts
    at; `fed` counts the bytes given to the decoder before."""
    start = fed - len(decoder.getstate()[0])
    try:
        return decoder.decode(data, final), start
    except UnicodeDecodeError as error:
        raise _BadBytes(
            "not_utf8", f"not UTF-8 text: {error.reason} at byte offset {start + error.start}"
        ) from None


def _drain(items: Iterable[object]) -> None:
    for _ in items:
        pass


def _checked_whole(reads: _Reads) -> memoryview:
    """The whole file, once its bytes passed the text checks."""
    data = reads.whole()
    _drain(_text(_slices(data)))
    return data


def _decoded(data: memoryview | bytes) -> str:
    """Checked bytes as text, without the BOM (skipped before decoding: no copy of the text)."""
    bom = len(codecs.BOM_UTF8)
    return str(data[bom:] if data[:bom] == codecs.BOM_UTF8 else data, "utf-8")


# The header line, as bytes: the rest of the file is not decoded unless a row needs reading alone.
_FIRST_LINE = re.compile(rb"[^\n]*")


def _read_csv(data: memoryview, columns: ColumnMatch | None) -> _Parsed:
    first_line = _decoded(_FIRST_LINE.match(data).group()).rstrip("\r")  # type: ignore[union-attr]
    header = next(csv.reader([first_line]), [])
    if not any(name.strip() for name in header):
        raise _Unreadable("empty_file", "the CSV file has no header row")
    if not all(map(looks_like_name, header)):
        # Most likely a file without its header row: its first row is data (an e-mail address,
        # a phone number), so it is quoted nowhere and every line is a row of the rejected file.
        others = sum(not looks_like_name(name) for name in header)
        raise _Unreadable(
            "header_not_names",
            f"the first line does not name the columns: {others} of its {len(header)} fields"
            " are not column names (is the header row missing?)",
            seen=_csv_rows(_decoded(data), _positional(len(header)), has_header=False),
        )
    names = [columns.canonical(name) if columns else name for name in header]
    repeated = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if repeated is not None:
        raise _Unreadable(
            "duplicate_columns",
            f"the header repeats column {repeated!r}",
            seen=_csv_rows(_decoded(data), _positional(len(names))),
        )
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                # Empty cells stay empty text: validation applies the one null vocabulary.
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        # A row without the header's number of fields (short, long, cut off at the end): read
        # record by record instead, so that it costs that row and the others load.
        return _csv_rows(_decoded(data), names)
    return _Parsed(table.to_pandas(types_mapper=lambda _: TEXT_DTYPE))


def _positional(count: int) -> list[str]:
    return [f"column_{position}" for position in range(1, count + 1)]


def _csv_rows(text: str, names: list[str], *, has_header: bool = True) -> _Parsed:
    """Every record of the file; one with the wrong number of fields is a damage line with its
    line number, its fields kept in order (missing ones are missing)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    if has_header:
        next(reader, None)
    width = len(names)
    rows: list[list[str | None]] = []
    damage: list[tuple[int, str, str | None, str]] = []
    try:
        for fields in reader:
            if not fields:
                continue  # a blank line is no row (as Arrow reads it)
            if len(fields) != width:
                damage.append(
                    (
                        len(rows) + 1,
                        MISALIGNED,
                        None,
                        f"line {reader.line_num}: {len(fields)} field(s), the header has {width}",
                    )
                )
            rows.append([*fields[:width], *[None] * (width - len(fields))])
    except csv.Error as error:
        raise _Unreadable(
            "malformed_csv",
            f"malformed CSV at line {reader.line_num}: {error}",
            seen=_Parsed(_text_frame(names, rows)),
        ) from None
    return _Parsed(_text_frame(names, rows), damage)


def _text_frame(names: list[str], rows: list[list[str | None]]) -> pd.DataFrame:
    values = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    table = pa.table(
        {name: pa.array(column, pa.string()) for name, column in zip(names, values, strict=True)}
    )
    return table.to_pandas(types_mapper=lambda _: TEXT_DTYPE)


_JSON_CHUNK_ROWS = 65_536
_WHITESPACE = re.compile(r"[ \t\n\r]*")


# A damage finding while decoding: (row in the chunk, rule, the key at fault as the file spells it).
_Finding = tuple[int, str, str | None]
_Chunk = tuple[list[dict[str, object]], list[_Finding]]
_Chunks = Iterator[_Chunk]
# Escapes that decode to what PostgreSQL text cannot hold (NUL) or to no character at all (a
# UTF-16 surrogate; a valid pair decodes to one character and is caught here only to be cleared).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_REASONS = {
    "duplicate_key": "{}: the record gives this key more than once",
    "nul_character": "{}: holds a NUL character (\\u0000), which PostgreSQL text cannot store",
    "invalid_unicode": "{}: holds a lone UTF-16 surrogate escape, which is no character",
    "extra_key": "{}: not a column of the contract",
    "too_deeply_nested": "the record nests deeper than the JSON reader can decode",
}


def _read_json(reads: _Reads, columns: ColumnMatch | None) -> _Parsed:
    """A JSON array of objects, parsed into Arrow string columns a slice of records at a time.

    Holding a million parsed dicts at once costs gigabytes; converting every slice into Arrow
    arrays, as the file's blocks arrive, keeps the peak near the size of the frame. Python's
    decoder accepts the non-standard `NaN` literal that pandas-written files carry.
    """
    try:
        try:
            frame, findings = _json_frame(_sliced_records(_text(reads.blocks())))
        except _NotPlain:
            # Read again whole and parsed element by element, which names whatever is wrong.
            frame, findings = _json_frame(_decoded_records(_decoded(_checked_whole(reads))))
    except _Unreadable as problem:
        if problem.seen is not None:
            problem.seen = _match_keys(problem.seen.frame, [], columns)
        raise
    return _match_keys(frame, findings, columns)


def _json_frame(chunks: _Chunks) -> tuple[pd.DataFrame, list[tuple[int, str, str | None]]]:
    """The records as a frame, and (row number, rule, key) for each damage found in them."""
    columns: dict[str, list[pa.Array]] = {}
    findings: list[tuple[int, str, str | None]] = []
    done = 0
    try:
        for chunk, found in chunks:
            findings += [(done + index + 1, rule, key) for index, rule, key in found]
            _add_chunk(columns, chunk, done)
            done += len(chunk)
    except _BadBytes:
        raise
    except _Unreadable as problem:
        if done:
            problem.seen = _Parsed(_columns_frame(columns, done))
        raise
    return _columns_frame(columns, done), findings


def _columns_frame(columns: dict[str, list[pa.Array]], rows: int) -> pd.DataFrame:
    table = pa.table(
        {name: pa.chunked_array(arrays, type=pa.string()) for name, arrays in columns.items()}
    )
    frame = table.to_pandas(types_mapper=lambda _: TEXT_DTYPE)
    frame.index = pd.RangeIndex(rows)
    return frame


def _cleared(chunk: list[dict[str, object]], found: list[_Finding], suspect: bool) -> _Chunk:
    """The chunk and its findings; where its text has escapes (`suspect`) that may decode to what
    no text column can hold, that is replaced, and found."""
    return chunk, [*found, *_clear(chunk)] if suspect else found


def _clear(chunk: list[dict[str, object]]) -> list[_Finding]:
    """Replace what no text column can hold (NUL, lone surrogates) in keys and values with U+FFFD,
    so that the record can be quarantined; each replacement is a finding against its record."""
    found: list[_Finding] = []
    for index, record in enumerate(chunk):
        for key in list(record):
            value = record[key]
            name = key
            if _UNSTORABLE.search(key):
                name = _UNSTORABLE.sub("\ufffd", key)
                found.append((index, _unstorable_rule(key), name))
                record[name] = record.pop(key)
            nested = isinstance(value, dict | list)
            text = json.dumps(value, ensure_ascii=False) if nested else value
            if isinstance(text, str) and _UNSTORABLE.search(text):
                found.append((index, _unstorable_rule(text), name))
                record[name] = _UNSTORABLE.sub("\ufffd", text)
    return found


def _unstorable_rule(text: str) -> str:
    return "nul_character" if "\x00" in text else "invalid_unicode"


def _match_keys(
    frame: pd.DataFrame, findings: list[tuple[int, str, str | None]], columns: ColumnMatch | None
) -> _Parsed:
    """The keys brought to the contract's names, and the damage lines of the findings.

    A key that does not look like a column name is kept as `key_<n>` (its place in the file):
    it may be data. Two keys of one record that are one column (`Email`, `email`), and a key the
    contract does not know (unless rescued; `key_<n>` never is), cost the records that carry a
    value for them.
    """
    names: dict[str, str] = {}
    data_keys: set[str] = set()
    for position, key in enumerate(frame.columns, start=1):
        if not looks_like_name(key):
            names[key] = f"key_{position}"
            data_keys.add(names[key])
        else:
            names[key] = columns.canonical(key) if columns is not None else key
    damage = [
        (row, rule, names.get(key or ""), _REASONS[rule].format(names.get(key or "", "")))
        for row, rule, key in findings
    ]
    matched = frame.rename(columns=names)
    if not matched.columns.is_unique:
        merged: dict[str, pd.Series] = {}
        for name in dict.fromkeys(matched.columns):
            values = matched.loc[:, matched.columns == name]
            if values.shape[1] > 1:
                twice = values.notna().sum(axis=1).to_numpy() > 1
                damage += _damage_lines(twice, "duplicate_key", name)
            merged[name] = values.bfill(axis=1).iloc[:, 0]
        matched = pd.DataFrame(merged, index=frame.index)
    extra = columns.unknown(matched.columns) if columns is not None else []
    if columns is not None and columns.rescue:
        # A rescued key becomes a `_rescued` entry, so it must be a name one could adopt; a key
        # that is data (an address as a key) still costs its record.
        extra = [name for name in extra if name in data_keys]
    for name in extra:
        damage += _damage_lines(matched[name].notna().to_numpy(), EXTRA_KEY, name)
    return _Parsed(matched, damage, extra, columns_from_rows=True)


def _damage_lines(rows: np.ndarray, rule: str, name: str) -> list[tuple[int, str, str | None, str]]:
    return [(int(row) + 1, rule, name, _REASONS[rule].format(name)) for row in np.flatnonzero(rows)]


class _NotPlain(Exception):
    """The fast path cannot vouch for this text; the element-by-element parser decides."""


_SLICE_CHARS = 1 << 24
_ELEMENT_END = re.compile(r"\}[ \t\n\r]*,")


def _sliced_records(pieces: Iterator[str]) -> _Chunks:
    """Records of a plain array of objects, `json.loads`-ed ~16 MB of text at a time, as the
    text arrives: only the slice being cut and the piece after it are held.

    Decoding element by element in a Python loop cost as much as the decoding itself. A slice
    ends at a `},` candidate; if that lies inside a string or a nested value, the slice is not
    valid JSON (its brackets or quotes are left open) and the whole file takes the slow path, as
    it does for anything else this path cannot decode (an integer beyond Python's 4,300-digit
    limit, nesting deeper than its recursion limit, a comma before the closing `]`).
    """
    text, position = _array_opening(pieces)
    repeated: dict[int, list[str]] = {}
    pairs = _pairs_hook(repeated)
    scan = position + _SLICE_CHARS  # where the `},` that ends this slice may start
    for piece in pieces:
        text, scan, position = text[position:] + piece, scan - position, 0
        while boundary := _ELEMENT_END.search(text, scan):
            yield _slice_records(text[position : boundary.start() + 1], pairs, repeated)
            position = boundary.end()
            scan = position + _SLICE_CHARS
        scan = _resume(text, scan)
    last = len(text.rstrip()) - 1
    if last < position or text[last] != "]":
        raise _NotPlain
    if position < last:
        yield _slice_records(text[position:last], pairs, repeated)


def _array_opening(pieces: Iterator[str]) -> tuple[str, int]:
    """The first piece that has more than the array's opening `[` and blank, and where its first
    element starts; not an array, or nothing after its `[`, is for the slow path to tell."""
    opened = False
    for piece in pieces:
        start = _WHITESPACE.match(piece).end()  # type: ignore[union-attr]
        if start < len(piece) and not opened:
            if piece[start] != "[":
                raise _NotPlain
            opened = True
            start = _WHITESPACE.match(piece, start + 1).end()  # type: ignore[union-attr]
        if start < len(piece):
            return piece, start
    raise _NotPlain


def _resume(text: str, scan: int) -> int:
    """Where to look for the next `},` once more text has come: at a `}` the text ends with
    (blank aside), whose comma may be in the next piece; else past what was searched."""
    if scan >= len(text):
        return scan
    brace = text.rfind("}", scan)
    if brace >= 0 and _WHITESPACE.match(text, brace + 1).end() == len(text):  # type: ignore[union-attr]
        return brace
    return len(text)


def _slice_records(
    text: str, pairs: Callable[[list[tuple[str, object]]], dict], repeated: dict[int, list[str]]
) -> _Chunk:
    try:
        records = json.loads(f"[{text}]", object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise _NotPlain from None
    # No record: a comma before the `]` (a slice always follows the opening or a comma).
    if not records or not all(type(record) is dict for record in records):
        raise _NotPlain
    found: list[_Finding] = []
    if repeated:
        found = [
            (index, "duplicate_key", key)
            for index, record in enumerate(records)
            for key in repeated.get(id(record), ())
        ]
        repeated.clear()
    return _cleared(records, found, _SUSPECT_ESCAPE.search(text) is not None)


def _pairs_hook(repeated: dict[int, list[str]]) -> Callable[[list[tuple[str, object]]], dict]:
    """An object hook that notes the keys an object repeats (by the object's id), where
    `json.loads` alone would silently keep the last value."""

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        record = dict(items)
        if len(record) < len(items):
            keys = [key for key, _ in items]
            repeated[id(record)] = [key for key in record if keys.count(key) > 1]
        return record

    return pairs


def _int_or_text(digits: str) -> int | str:
    """An integer literal; beyond Python's int-string limit, its digits as text (validation then
    finds it out of range wherever an integer is expected)."""
    try:
        return int(digits)
    except ValueError:
        return digits


def _decoded_records(text: str) -> _Chunks:
    """Records decoded one by one, refusing the file with the position of its first problem.

    A record nested too deeply to decode is skipped to its end and costs its row only.
    """
    repeated: dict[int, list[str]] = {}
    decoder = json.JSONDecoder(object_pairs_hook=_pairs_hook(repeated), parse_int=_int_or_text)
    suspect = _SUSPECT_ESCAPE.search(text) is not None
    position = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", position):
        value = _decode(decoder, text, position)[0]
        raise _Unreadable(
            "not_an_array", f"expected a JSON array of objects, found a {_json_kind(value)}"
        )
    position = _WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
    chunk: list[dict[str, object]] = []
    found: list[_Finding] = []
    done = 0
    first = True
    try:
        while not text.startswith("]", position):
            if not first:
                if not text.startswith(",", position):
                    raise _Unreadable(
                        "malformed_json",
                        f"not valid JSON: expected ',' or ']' at {_where(text, position)}",
                    )
                position = _WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
            first = False
            try:
                record, position = _decode(decoder, text, position)
            except RecursionError:
                record, position = {}, _value_end(text, position)
                found.append((len(chunk), "too_deeply_nested", None))
            if not isinstance(record, dict):
                raise _Unreadable(
                    "not_an_array",
                    f"element {done + len(chunk) + 1} of the array is a {_json_kind(record)}, "
                    "not an object",
                )
            found += [(len(chunk), "duplicate_key", key) for key in repeated.get(id(record), ())]
            repeated.clear()
            chunk.append(record)
            if len(chunk) == _JSON_CHUNK_ROWS:
                yield _cleared(chunk, found, suspect)
                done += len(chunk)
                chunk, found = [], []
            position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
            if position >= len(text):
                raise _Unreadable(
                    "malformed_json",
                    f"not valid JSON: the array is not closed at {_where(text, position)}",
                )
        if text[position + 1 :].strip():
            raise _Unreadable("malformed_json", "not valid JSON: extra data after the array")
    except _Unreadable as problem:
        # The records before the problem are rows the file showed: the rejection counts them.
        yield _cleared(chunk, [], suspect)
        raise problem from None
    yield _cleared(chunk, found, suspect)


# A JSON string (escapes included) or a bracket: enough to find where a value ends.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]')


def _value_end(text: str, position: int) -> int:
    """Where the array or object starting at `position` ends, without decoding it."""
    depth = 0
    for token in _STRING_OR_BRACKET.finditer(text, position):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
        elif bracket in ("]", "}"):
            depth -= 1
            if depth == 0:
                return token.end()
    raise _Unreadable(
        "malformed_json", f"not valid JSON: the array is not closed at {_where(text, len(text))}"
    )


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


# What Arrow infers for a column of one kind that renders as `_json_text` would: strings as they
# are, integers as `str` renders them, all missing.
_INFERRED_AS_TEXT = (pa.string(), pa.int64(), pa.null())


def _json_column(values: list[object]) -> pa.Array:
    """`_json_text` of every value.

    Most columns hold one kind of value (an id, a status, a timestamp as text): Arrow infers and
    converts those in C, three to eight times faster than sorting the values by kind in Python.
    Floats, booleans, nested values and columns of mixed kinds take `_json_column_by_kind`.
    """
    try:
        inferred = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        return _json_column_by_kind(values)
    if inferred.type in _INFERRED_AS_TEXT:
        return inferred.cast(pa.string())
    return _json_column_by_kind(values)


def _json_column_by_kind(values: list[object]) -> pa.Array:
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
