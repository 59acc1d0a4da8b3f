"""Benchmark: JSON parsers that could replace `json.loads` in the reader's fast path (issue #15).

    python benchmarks/bench_json_readers.py [--orders 1000000] [--repeats 3]

Needs the `bench` extra (`pip install -e '.[bench]'`). On the generator's hour-19 `orders.json`
(cached under /tmp like bench_fact_load's), each candidate decodes the whole file in its own
process: the median of `repeats` decodes, records/s, and that process's peak RSS (ru_maxrss, input
and interpreter included, so the RSS before the first decode is printed beside it). The input is
already in memory, in the form the candidate takes (text for the stdlib, as `reading.py` holds it;
bytes or a path otherwise); what is timed is the decode into Python records or an Arrow table.

Then a correctness matrix on crafted inputs, every cell in its own process (one parser crashes the
interpreter on deep nesting), against what `sources/reading.py` must keep: the `NaN` literal, a
duplicate key that is found and named, a lone surrogate escape and `\\u0000` that reach the
per-record check, integers past 64 bits and past Python's 4,300-digit limit kept exactly, nesting
100k deep costing its record only, and a syntax error's position.

Two hybrids run `reading.py`'s slicing with a fast decoder, and fall back to `json.loads` with the
duplicate-key hook for a slice the fast decoder cannot vouch for (see `_hybrid_records`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, run_phase

from fastfeast_dagster.sources import reading

DAY = dt.date(2026, 3, 2)
HOUR = 19
ORDERS_AT_SCALE_ONE = 270  # hour 19 of the generator's daily curve


def data_for(orders: int) -> Path:
    """The hour's orders.json, generated once per size and reused (as bench_fact_load does), and
    two copies: with `NaN` written as `null` (for the parsers that refuse the literal) and as
    NDJSON (pyarrow's JSON reader takes nothing else). Run in a process of its own: the peak RSS
    of the measured processes would otherwise start at this one's (Linux keeps ru_maxrss across
    fork and exec)."""
    from fastfeast_dagster.synthetic import generate

    root = Path(f"/tmp/fastfeast-bench-{orders}")
    path = root / "input" / "stream" / str(DAY) / f"{HOUR:02d}" / "orders.json"
    if not path.exists():
        generate(root, DAY, hours=[HOUR], scale=orders / ORDERS_AT_SCALE_ONE)
    if not (path.with_suffix(".ndjson").exists() and path.with_suffix(".null.json").exists()):
        import orjson

        records = json.loads(path.read_bytes())
        # orjson writes NaN as null (what the reader makes of it anyway); the indented copy is
        # laid out as the generator writes, so that its size matches the original's.
        path.with_suffix(".null.json").write_bytes(
            orjson.dumps(records, option=orjson.OPT_INDENT_2)
        )
        path.with_suffix(".ndjson").write_bytes(b"\n".join(map(orjson.dumps, records)) + b"\n")
    return path


# --- The candidates -------------------------------------------------------------------------
# Each takes the file's text, bytes and path and returns what it decoded; `_records` brings that
# to a list of dicts (and the findings a reader reports) for the correctness matrix.


def _stdlib_hook(text: str, data: bytes, path: Path) -> object:
    repeated: dict[int, list[str]] = {}
    records = json.loads(text, object_pairs_hook=reading._pairs_hook(repeated))
    return records, repeated


def _stdlib(text: str, data: bytes, path: Path) -> object:
    return json.loads(text)


def _orjson(text: str, data: bytes, path: Path) -> object:
    import orjson

    return orjson.loads(data)


def _msgspec(text: str, data: bytes, path: Path) -> object:
    import msgspec

    return msgspec.json.decode(data)


def _simdjson(text: str, data: bytes, path: Path) -> object:
    import simdjson

    return simdjson.loads(data)


def _pyarrow(text: str, data: bytes, path: Path) -> object:
    import pyarrow as pa
    import pyarrow.json as pa_json

    return pa_json.read_json(pa.py_buffer(data))


def _polars(text: str, data: bytes, path: Path) -> object:
    import polars as pl

    return pl.read_json(io.BytesIO(data))


def _duckdb(text: str, data: bytes, path: Path) -> object:
    import duckdb

    # DuckDB reads from a path; `format` is fixed so that it does not sniff NDJSON.
    with duckdb.connect() as conn:
        return conn.sql(f"SELECT * FROM read_json('{path}', format = 'array')").to_arrow_table()


def _sliced(records: Callable[[str], reading._Chunks]) -> Callable[[str, bytes, Path], object]:
    """A reader that slices like `reading.py`, decoding every slice and dropping it (the reader
    turns each into Arrow columns, so no more than a slice of dicts is alive at once)."""

    def decode(text: str, data: bytes, path: Path) -> object:
        count = 0
        findings: list[reading._Finding] = []
        for chunk, found in _with_fallback(records, text):
            findings += [(count + index, rule, key) for index, rule, key in found]
            count += len(chunk)
        return count, findings

    return decode


def _with_fallback(records: Callable[[str], reading._Chunks], text: str) -> reading._Chunks:
    """`reading._read_json`'s order: the fast path, else the element-by-element decoder."""
    try:
        yield from records(text)
    except reading._NotPlain:
        yield from reading._decoded_records(text)


_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_LONG_DIGITS = re.compile(r"\d{19}")
# Blanks between a key and its colon end with one of these; a regex for `"[ \t\n\r]+:` tried
# every quote of the slice and cost more than the fast decoder saved.
_BLANK_COLON = (" :", "\t:", "\n:", "\r:")


def _hybrid_records(fast: str, *, rewrite_nan: bool) -> Callable[[str], reading._Chunks]:
    """`reading._sliced_records` with a fast decoder on each slice it can vouch for.

    A slice goes to `json.loads` with the duplicate-key hook, as today, when the fast decoder
    fails on it, or when a cheap scan finds what the fast decoder would decode differently:
    - `NaN`/`Infinity` (stdlib-only literals); with `rewrite_nan`, a `NaN` outside strings is
      rewritten to `null` instead, which the reader makes the same missing value of;
    - an escape of a NUL or a surrogate (the stdlib keeps a lone one for the per-record check);
    - for orjson, a run of 19+ digits: it turns an integer past 64 bits into a float silently;
    - an escaped quote, or blanks between a key and its colon: then `":` does not count the keys.
    Duplicate keys: with no escaped quote, every `":` ends a key (or opens a string that starts
    with `:`), so `":` occurrences >= keys written >= distinct keys of the records. Equality with
    the records' distinct keys therefore proves that no record repeats a key (and that none has
    a nested object); otherwise the slice goes to the stdlib, whose hook names the key.
    Exact, but not cheap: on one 16 MB slice of the orders hour, the scans for backslashes,
    `Infinity`, blank colons and `NaN`, and the `":` count, took ~150 ms together (Python's
    substring search runs near 1 GB/s), msgspec ~45 ms, `json.loads` with the hook ~110 ms.
    """
    if fast == "msgspec":
        import msgspec

        decode: Callable[[str], object] = msgspec.json.Decoder().decode
        failures: tuple[type[BaseException], ...] = (msgspec.MsgspecError, RecursionError)
        digits = None
    else:
        import orjson

        decode, failures, digits = orjson.loads, (orjson.JSONDecodeError,), _LONG_DIGITS

    def fast_records(piece: str) -> list[object] | None:
        if '\\"' in piece or "Infinity" in piece or any(map(piece.__contains__, _BLANK_COLON)):
            return None
        if "\\u" in piece and _SUSPECT.search(piece):
            return None
        if digits is not None and digits.search(piece):
            return None
        if "NaN" in piece:
            if not rewrite_nan:
                return None
            piece = _nan_to_null(piece)
        try:
            records = decode(piece)
        except failures:
            return None
        if not all(type(record) is dict for record in records):  # type: ignore[union-attr]
            return None
        if piece.count('":') != sum(map(len, records)):  # type: ignore[arg-type]
            return None
        return records  # type: ignore[return-value]

    def records(text: str) -> reading._Chunks:
        first = reading._WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
        last = len(text.rstrip()) - 1
        if not (text.startswith("[", first) and last > first and text[last] == "]"):
            raise reading._NotPlain
        repeated: dict[int, list[str]] = {}
        pairs = reading._pairs_hook(repeated)
        position = reading._WHITESPACE.match(text, first + 1).end()  # type: ignore[union-attr]
        while position < last:
            boundary = reading._ELEMENT_END.search(text, position + reading._SLICE_CHARS, last)
            stop = boundary.start() + 1 if boundary else last
            piece = f"[{text[position:stop]}]"
            chunk = fast_records(piece)
            found: list[reading._Finding] = []
            if chunk is None:
                try:
                    chunk = json.loads(piece, object_pairs_hook=pairs)
                except (ValueError, RecursionError):
                    raise reading._NotPlain from None
                if not all(type(record) is dict for record in chunk):
                    raise reading._NotPlain
                found = [
                    (index, "duplicate_key", key)
                    for index, record in enumerate(chunk)
                    for key in repeated.get(id(record), ())
                ]
                repeated.clear()
            yield chunk, found
            position = boundary.end() if boundary else last

    return records


def _nan_to_null(piece: str) -> str:
    """Every `NaN` outside a string as `null`. With no escaped quote in `piece` (checked before),
    a position is inside a string exactly when an odd number of quotes precede it."""
    parts: list[str] = []
    done = quotes = scanned = 0
    at = piece.find("NaN")
    while at >= 0:
        quotes += piece.count('"', scanned, at)
        scanned = at
        if quotes % 2 == 0:
            parts += [piece[done:at], "null"]
            done = at + 3
        at = piece.find("NaN", at + 3)
    return "".join([*parts, piece[done:]])


CANDIDATES: dict[str, tuple[str, Callable[[str, bytes, Path], object]]] = {
    # name: (what it decodes into, the decode)
    "reading.py fast path (stdlib + hook, 16 MB slices)": (
        "dicts",
        _sliced(reading._sliced_records),
    ),
    "stdlib json.loads + object_pairs_hook, whole file": ("dicts", _stdlib_hook),
    "stdlib json.loads, no hook": ("dicts", _stdlib),
    "orjson.loads": ("dicts", _orjson),
    "msgspec.json.decode": ("dicts", _msgspec),
    "pysimdjson simdjson.loads": ("dicts", _simdjson),
    "pyarrow.json.read_json (NDJSON copy)": ("Arrow", _pyarrow),
    "polars.read_json": ("polars", _polars),
    "duckdb read_json(format='array')": ("Arrow", _duckdb),
    "hybrid: msgspec slices, NaN slices to stdlib": (
        "dicts",
        _sliced(_hybrid_records("msgspec", rewrite_nan=False)),
    ),
    "hybrid: msgspec slices, NaN rewritten to null": (
        "dicts",
        _sliced(_hybrid_records("msgspec", rewrite_nan=True)),
    ),
    "hybrid: orjson slices, NaN rewritten to null": (
        "dicts",
        _sliced(_hybrid_records("orjson", rewrite_nan=True)),
    ),
}
NDJSON_ONLY = {"pyarrow.json.read_json (NDJSON copy)"}
READERS = {name for name in CANDIDATES if name.startswith(("reading.py", "hybrid"))}


def _count(result: object) -> int:
    if isinstance(result, tuple):  # (records or their count, duplicate findings)
        result = result[0]
    if isinstance(result, int):
        return result
    return len(result)  # type: ignore[arg-type]


def throughput(name: str, path: Path, repeats: int) -> dict[str, Any]:
    """The measured phase, in its own process so that its peak RSS is its own. A candidate
    that refuses the file (the `NaN` literal) is measured on the copy with `null` instead."""
    if name in NDJSON_ONLY:
        path = path.with_suffix(".ndjson")
    decode = CANDIDATES[name][1]
    data = path.read_bytes()
    text = data.decode("utf-8")
    before = peak_rss_mb()
    refusal = None
    try:
        # Untimed: it finds out whether the file is refused, and brings in the imports.
        decode(text, data, path)
    except Exception as error:
        refusal = " ".join(str(error).split())[:70]
        if name in NDJSON_ONLY:
            # Not the NaN: pyarrow infers one type per column and cannot take the file's mixed
            # ones, even told that every column is a string (it refuses a number there).
            return {"seconds": None, "refusal": refusal}
        path = path.with_suffix(".null.json")
        del data, text  # so that the copy does not sit beside the original
        data = path.read_bytes()
        text = data.decode("utf-8")
        try:
            decode(text, data, path)
        except Exception as again:
            return {"seconds": None, "refusal": " ".join(str(again).split())[:70]}
    seconds = []
    records = 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = decode(text, data, path)
        seconds.append(time.perf_counter() - started)
        records = _count(result)
        del result  # the next round must not hold two decodes at once
    return {
        "seconds": statistics.median(seconds),
        "records": records,
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "refusal": refusal,
    }


def reader_frames(path: Path) -> dict[str, Any]:
    """What the reader gains: `reading._json_frame` (decode + Arrow columns) with each fast path
    that keeps the findings, and whether its frame and findings equal today's exactly."""
    text = path.read_text()
    suspect = reading._SUSPECT_ESCAPE.search(text) is not None
    outcome: dict[str, Any] = {}
    expected = None
    for name, records in _READER_SOURCES.items():
        started = time.perf_counter()
        frame, findings = reading._json_frame(_with_fallback(records, text), suspect)
        seconds = time.perf_counter() - started
        if expected is None:
            expected = (frame, findings)
        same = frame.equals(expected[0]) and findings == expected[1]
        outcome[name] = {"seconds": seconds, "same": same}
        del frame
    return outcome


# --- The correctness matrix -----------------------------------------------------------------

# Each case: the records as JSON texts (one record per line of the NDJSON form).
CASES: dict[str, list[str]] = {
    "NaN literal": ['{"a": NaN}'],
    "duplicate key": ['{"a": 1, "a": 2}'],
    "lone surrogate \\ud800": ['{"a": "\\ud800"}'],
    "\\u0000": ['{"a": "x\\u0000y"}'],
    "30-digit int": ['{"a": ' + "1" * 30 + "}"],
    "5000-digit int": ['{"a": ' + "1" * 5000 + "}"],
    "depth 100k": ['{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", '{"a": 1}'],
    "syntax error (line 2 col 8)": ['{"a": 1}', '{"a": }'],
}


def _records(name: str, result: object) -> tuple[list[dict[str, Any]], list[Any]]:
    """Decoded records as dicts, and the findings that the candidate reported itself."""
    kind = CANDIDATES[name][0]
    if name in READERS:
        return result[2], result[1]  # type: ignore[index]
    if name.startswith("stdlib json.loads + object_pairs_hook"):
        records, repeated = result  # type: ignore[misc]
        return records, [key for record in records for key in repeated.get(id(record), ())]
    if kind == "polars":
        return result.to_dicts(), []  # type: ignore[attr-defined]
    if kind == "Arrow":
        return result.to_pylist(), []  # type: ignore[attr-defined]
    return result, []  # type: ignore[return-value]


def _reader_records(records: Callable[[str], reading._Chunks]) -> Callable[..., object]:
    """For the matrix, a reader's records are kept, with its findings named as it names them."""

    def decode(text: str, data: bytes, path: Path) -> object:
        kept: list[dict[str, object]] = []
        findings: list[str] = []
        for chunk, found in _with_fallback(records, text):
            findings += [f"row {len(kept) + i + 1} {rule} {key or ''}" for i, rule, key in found]
            kept += chunk
        return None, findings, kept

    return decode


_READER_SOURCES: dict[str, Callable[[str], reading._Chunks]] = {
    "reading.py fast path (stdlib + hook, 16 MB slices)": reading._sliced_records,
    "hybrid: msgspec slices, NaN slices to stdlib": _hybrid_records("msgspec", rewrite_nan=False),
    "hybrid: msgspec slices, NaN rewritten to null": _hybrid_records("msgspec", rewrite_nan=True),
    "hybrid: orjson slices, NaN rewritten to null": _hybrid_records("orjson", rewrite_nan=True),
}


def verdict(name: str, case: str, work: Path) -> str:
    """What the candidate makes of one crafted input, in a few words."""
    lines = CASES[case]
    ndjson = name in NDJSON_ONLY
    text = "\n".join(lines) if ndjson else "[" + ",\n ".join(lines) + "]"
    path = work / ("case.ndjson" if ndjson else "case.json")
    path.write_text(text)
    decode = _reader_records(_READER_SOURCES[name]) if name in READERS else CANDIDATES[name][1]
    try:
        records, findings = _records(name, decode(text, text.encode(), path))
    except reading._Unreadable as problem:
        return f"file rejected: {problem.rejection.message}"[:75]
    except RecursionError:
        return "error: RecursionError"
    except Exception as error:
        message = " ".join(str(error).split())
        found = re.search(r"line \d+ column \d+|byte \d+|row \d+", message)
        return f"error at {found.group()}: {message[:40]}" if found else f"error: {message[:60]}"
    value = records[0].get("a") if records else None
    if findings:
        return "found: " + "; ".join(map(str, findings))
    if case == "NaN literal":
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return "missing" if missing else repr(value)
    if case == "duplicate key":
        return f"silent: keeps a={value!r}" if len(records[0]) == 1 else f"both kept: {records[0]}"
    if case in ("lone surrogate \\ud800", "\\u0000"):
        return "kept, detectable" if value in ("\ud800", "x\x00y") else f"changed to {value!r}"
    if case.endswith("digit int"):
        digits = CASES[case][0][6:-1]
        if str(value) == digits:
            return "exact" + (" (as text)" if isinstance(value, str) else "")
        return f"LOSSY: {type(value).__name__} {str(value)[:16]}"
    if case == "depth 100k":
        return f"decoded {len(records)} records"
    return f"no error: {records}"[:60]


def matrix(work: Path) -> dict[str, dict[str, str]]:
    cells: dict[str, dict[str, str]] = {}
    for name in CANDIDATES:
        cells[name] = {}
        for case in CASES:
            done = subprocess.run(
                [sys.executable, __file__, "--cell", name, case, str(work)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode < 0:
                cells[name][case] = f"CRASH: signal {-done.returncode}"
            elif done.returncode:
                cells[name][case] = "CRASH: " + done.stderr.strip().splitlines()[-1][:50]
            else:
                cells[name][case] = done.stdout.strip().splitlines()[-1]
    return cells


def _phase(*args: str) -> Any:
    return run_phase(__file__, *args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--throughput", metavar="CANDIDATE")
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--frames", action="store_true")
    parser.add_argument("--cell", nargs=3, metavar=("CANDIDATE", "CASE", "WORK"))
    parser.add_argument("--path", type=Path)
    args = parser.parse_args()
    if args.throughput:
        print(json.dumps(throughput(args.throughput, args.path, args.repeats)))
        return
    if args.frames:
        print(json.dumps(reader_frames(args.path)))
        return
    if args.cell:
        print(verdict(args.cell[0], args.cell[1], Path(args.cell[2])))
        return

    if args.prepare:
        print(json.dumps(str(data_for(args.orders))))
        return

    path = Path(_phase("--prepare", "--orders", str(args.orders)))
    print(f"\n{path} ({path.stat().st_size / 1e6:,.0f} MB), median of {args.repeats} decodes")
    refused: list[str] = []
    print(f"{'candidate':52} {'into':>6} {'seconds':>8} {'records/s':>11} {'RSS MB':>15}")
    for name, (kind, _) in CANDIDATES.items():
        run = _phase("--throughput", name, "--path", str(path), "--repeats", str(args.repeats))
        if run["seconds"] is None:
            print(f"{name:52} {kind:>6} refuses the file and its copy: {run['refusal']}")
            continue
        rate = run["records"] / run["seconds"]
        rss = f"{run['rss_before_mb']:,.0f} → {run['peak_rss_mb']:,.0f}"
        print(f"{name:52} {kind:>6} {run['seconds']:8.2f} {rate:11,.0f} {rss:>15}")
        if run["refusal"]:
            refused.append(f"  {name}: {run['refusal']}")
    if refused:
        print("refused the original file, so measured on its NaN→null copy:", *refused, sep="\n")

    frames = _phase("--frames", "--path", str(path))
    print(f"\n{'reader: _json_frame (decode + Arrow columns), one run':62} {'seconds':>8} same")
    for name, run in frames.items():
        print(f"  {name:60} {run['seconds']:8.2f} {run['same']}")

    work = path.parent / "json-reader-cases"
    work.mkdir(exist_ok=True)
    cells = matrix(work)
    for case in CASES:
        print(f"\n{case}")
        for name in CANDIDATES:
            print(f"  {name:52} {cells[name][case]}")


if __name__ == "__main__":
    main()
