"""Column rendering and file writing, vectorised with pyarrow compute.

A `Frame` holds every column as a pyarrow string array of the exact text a file will carry (null =
missing cell). Values are produced from numpy arrays in bulk and defects are sparse overrides, so a
million-row file never becomes a million Python objects. The text `NaN` is written as the bare
(non-RFC) JSON literal `NaN`, as pandas-written files carry it; a null becomes JSON `null`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Kind = Literal["text", "number", "bool"]

NAN_LITERAL = "NaN"
_CHUNK_ROWS = 100_000
_NUMBER = r"^-?[0-9]+(\.[0-9]+)?$"
_HEX = np.array([f"{byte:02x}".encode() for byte in range(256)], dtype="S2")
_US = 1_000_000


@dataclass
class Frame:
    """Ordered text columns plus how each renders in JSON (quoted text, bare number, boolean)."""

    columns: dict[str, pa.Array]
    kinds: dict[str, Kind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = {name: _contiguous(values) for name, values in self.columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def put(self, name: str, rows: np.ndarray, values: Sequence[str | None]) -> None:
        """Overwrite the cells of `name` at `rows` (distinct positions) with `values`."""
        if len(rows) == 0:
            return
        order = np.argsort(rows, kind="stable")
        mask = np.zeros(len(self), dtype=bool)
        mask[rows] = True
        replacements = pa.array([values[i] for i in order], type=pa.string())
        self.columns[name] = _contiguous(
            pc.replace_with_mask(self.columns[name], pa.array(mask), replacements)
        )

    def take(self, rows: np.ndarray) -> Frame:
        indices = pa.array(rows, type=pa.int64())
        return Frame({k: v.take(indices) for k, v in self.columns.items()}, dict(self.kinds))

    def extend(self, other: Frame) -> Frame:
        return Frame(
            {k: pa.concat_arrays([v, other.columns[k]]) for k, v in self.columns.items()},
            dict(self.kinds),
        )

    def slice(self, start: int, stop: int) -> Frame:
        return Frame(
            {k: v.slice(start, stop - start) for k, v in self.columns.items()}, dict(self.kinds)
        )


def _contiguous(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    # Some kernels hand back chunked results on large inputs; frames keep one chunk per column.
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def text(values: Sequence[str] | np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string())


def ints(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())


def decimals(values: np.ndarray, digits: int = 2) -> pa.Array:
    return pa.array(np.round(np.asarray(values, dtype=np.float64), digits)).cast(pa.string())


def pick(vocabulary: Sequence[str], indices: np.ndarray) -> pa.Array:
    return text(list(vocabulary)).take(pa.array(np.asarray(indices, dtype=np.int64)))


def join(*parts: pa.Array | str) -> pa.Array:
    return _contiguous(pc.binary_join_element_wise(*parts, ""))


def padded(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(ints(values), width, "0")


def booleans(values: np.ndarray) -> pa.Array:
    return pick(["False", "True"], np.asarray(values, dtype=np.int64))


def timestamps(
    micros: np.ndarray,
    with_fraction: np.ndarray | None = None,
    t_separator: np.ndarray | None = None,
) -> pa.Array:
    """`YYYY-MM-DD HH:MM:SS` from epoch microseconds; some rows with `.ffffff` or a `T`."""
    micros = np.asarray(micros, dtype=np.int64)
    whole = pa.array(micros // _US, type=pa.timestamp("s")).cast(pa.string())
    out = whole
    if with_fraction is not None and with_fraction.any():
        fine = pa.array(micros, type=pa.timestamp("us")).cast(pa.string())
        out = pc.if_else(pa.array(with_fraction), fine, whole)
    if t_separator is not None and t_separator.any():
        out = pc.if_else(
            pa.array(t_separator), pc.replace_substring(out, " ", "T", max_replacements=1), out
        )
    return _contiguous(out)


def dates(days_since_epoch: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days_since_epoch, dtype=np.int32), type=pa.date32()).cast(
        pa.string()
    )


def uuids(rng: np.random.Generator, count: int) -> pa.Array:
    """Version-4 UUID text from the generator's own random bytes (never the OS entropy pool)."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    flat = pa.array(np.ascontiguousarray(_HEX[raw]).view("S32").ravel()).cast(pa.string())
    spans = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))
    parts = [pc.utf8_slice_codeunits(flat, start, stop) for start, stop in spans]
    return _contiguous(pc.binary_join_element_wise(*parts, "-"))


def _csv_cells(column: pa.Array) -> pa.Array:
    filled = pc.fill_null(column, "")
    needs_quotes = pc.match_substring_regex(filled, '[,"\r\n]')
    quoted = join('"', pc.replace_substring(filled, '"', '""'), '"')
    return pc.if_else(needs_quotes, quoted, filled)


def _json_tokens(column: pa.Array, kind: Kind) -> pa.Array:
    escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
    quoted = join('"', escaped, '"')
    bare = pc.equal(column, NAN_LITERAL)
    if kind == "number":
        bare = pc.or_(bare, pc.match_substring_regex(column, _NUMBER))
    elif kind == "bool":
        lowered = pc.utf8_lower(column)
        bare = pc.or_(bare, pc.is_in(lowered, pa.array(["true", "false"])))
        column = pc.if_else(bare, lowered, column)
    return pc.fill_null(pc.if_else(bare, column, quoted), "null")


def write_csv(path: Path, frame: Frame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(frame.columns) + "\n")
        for start in range(0, len(frame), _CHUNK_ROWS):
            part = frame.slice(start, min(start + _CHUNK_ROWS, len(frame)))
            cells = [_csv_cells(column) for column in part.columns.values()]
            lines = pc.binary_join_element_wise(*cells, ",")
            handle.write("\n".join(lines.to_pylist()) + "\n")


def write_json(path: Path, frame: Frame) -> None:
    """A pretty (indent=2) JSON array of objects, the layout `json.dump(rows, indent=2)` gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(frame) == 0:
        path.write_text("[]", encoding="utf-8")
        return
    names = list(frame.columns)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("[\n")
        for start in range(0, len(frame), _CHUNK_ROWS):
            part = frame.slice(start, min(start + _CHUNK_ROWS, len(frame)))
            pieces: list[pa.Array | str] = []
            for position, name in enumerate(names):
                lead = "  {\n" if position == 0 else ",\n"
                pieces.append(f'{lead}    "{name}": ')
                pieces.append(_json_tokens(part.columns[name], frame.kinds.get(name, "text")))
            pieces.append("\n  }")
            objects = join(*pieces)
            if start:
                handle.write(",\n")
            handle.write(",\n".join(objects.to_pylist()))
        handle.write("\n]")
