"""What `fastfeast dev` shows in its terminal, and what it keeps in the log file.

`dagster dev` and the processes it starts (webserver, daemon, code servers, run workers) write
thousands of lines an hour: sensor ticks, run events, Dagster's notices. Their output goes to the
log file under the state dir instead, one JSON object per record (a record and its continuation
lines, a traceback say, stay one object). The terminal gets one line per finished run, read from
the instance (`run_report.py`), and every error record of Dagster's own processes in full. With
`--verbose` the terminal gets their output as it comes, as `dagster dev` prints it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import re
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Dagster's text log format: `2026-03-02 10:15:02 +0000 - dagster - ERROR - message`.
_TEXT_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[.,]\d+)? [+-]\d{4} - (?P<logger>[\w.\-]+)"
    r" - (?P<level>[A-Z]+) - (?P<message>.*)$"
)
# A run's own events (`JOB - <run id> - ...`): the run's line reports them.
_RUN_EVENT = re.compile(r"^\S+ - [0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12} - ")
_TRACEBACK = "Traceback (most recent call last):"
ERROR_LEVELS = {"ERROR", "CRITICAL"}
_IDLE_FLUSH_SECONDS = 0.5
_RUN_POLL_SECONDS = 1.0


@dataclass
class Record:
    """One log record of Dagster's processes: its first line and any continuation lines."""

    level: str
    logger: str
    lines: list[str] = field(default_factory=list)
    structured: dict[str, object] | None = None  # a JSON line, as it was logged

    @property
    def from_run(self) -> bool:
        match = _TEXT_RECORD.match(self.lines[0]) if self.lines else None
        return bool(match and _RUN_EVENT.match(match["message"]))

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS

    def as_json(self, now: dt.datetime) -> str:
        if self.structured is not None:
            return json.dumps(self.structured)
        return json.dumps(
            {
                "time": now.isoformat(),
                "level": self.level,
                "logger": self.logger,
                "message": "\n".join(self.lines),
                "source": "dagster dev",
            }
        )

    def for_terminal(self) -> str:
        if self.structured is None:
            return "\n".join(self.lines)
        text = str(self.structured.get("event") or self.structured.get("message") or "")
        trace = self.structured.get("exception") or self.structured.get("exc_info")
        return f"{text}\n{trace}" if trace else text


def starts_record(line: str) -> Record | None:
    """The record `line` begins, or None when it continues the previous one. Pure."""
    if line.startswith("{"):
        try:
            structured = json.loads(line)
        except ValueError:
            structured = None
        if isinstance(structured, dict):
            level = str(structured.get("level") or structured.get("levelname") or "INFO")
            return Record(level.upper(), str(structured.get("logger", "")), [line], structured)
    match = _TEXT_RECORD.match(line)
    if match:
        return Record(match["level"], match["logger"], [line])
    if line == _TRACEBACK:  # a process that crashed prints its traceback bare
        return Record("ERROR", "python", [line])
    return None


class OutputPump:
    """Reads a child's combined output: every record to the log file, errors (or, verbose,
    everything) to the terminal."""

    def __init__(self, log: IO[str], say: Callable[[str], None], *, verbose: bool) -> None:
        self.log = log
        self.say = say
        self.verbose = verbose
        self.pending: Record | None = None

    def feed(self, raw: str) -> None:
        line = _ANSI.sub("", raw.rstrip("\n"))
        if self.verbose:
            self.say(raw.rstrip("\n"))
        record = starts_record(line)
        # An error record's traceback follows it; a bare one is a crash of its own.
        if record is not None and line == _TRACEBACK and self.pending and self.pending.is_error:
            record = None
        if record is None:
            if self.pending is None:
                self.pending = Record("INFO", "dagster dev", [])
            self.pending.lines.append(line)
            return
        self.flush()
        self.pending = record

    def flush(self) -> None:
        record, self.pending = self.pending, None
        if record is None or not record.lines:
            return
        self.log.write(record.as_json(dt.datetime.now(dt.UTC)) + "\n")
        self.log.flush()
        if not self.verbose and record.is_error and not record.from_run:
            self.say(record.for_terminal())

    def pump(self, stream: IO[str]) -> None:
        """Until `stream` ends; a record is complete once its process has been quiet a moment."""
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for raw in iter(stream.readline, ""):
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        while True:
            try:
                raw = lines.get(timeout=_IDLE_FLUSH_SECONDS)
            except queue.Empty:
                self.flush()
                continue
            if raw is None:
                self.flush()
                return
            self.feed(raw)


def watch_runs(
    open_instance: Callable[[], object],
    say: Callable[[str], None],
    stop: threading.Event,
    since: dt.datetime,
) -> None:
    """Print each run that finishes from `since` on, once, as `run_report.py` formats it."""
    import dagster as dg

    from fastfeast_dagster.run_report import FINISHED, format_report, report_run

    instance = open_instance()
    assert isinstance(instance, dg.DagsterInstance)
    reported: set[str] = set()
    while not stop.wait(_RUN_POLL_SECONDS):
        try:
            records = instance.get_run_records(
                filters=dg.RunsFilter(statuses=FINISHED, updated_after=since),
                order_by="update_timestamp",
                ascending=True,
            )
            for record in records:
                run_id = record.dagster_run.run_id
                if run_id in reported:
                    continue
                report = report_run(instance, run_id)
                if report is not None:
                    reported.add(run_id)
                    say(format_report(report))
        except Exception as error:  # the storage restarting, say: report it, keep watching
            say(f"fastfeast dev: could not read the runs ({type(error).__name__}: {error})")
            stop.wait(10)


def announce_ui(url: str, say: Callable[[str], None], stop: threading.Event) -> None:
    """Say where the UI is once it answers, not before."""
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    say(f"Dagster UI: {url}  (Ctrl-C stops everything)")
                    return
        except OSError:
            continue


@contextmanager
def console(
    output: IO[str], say: Callable[[str], None], *, port: int, verbose: bool
) -> Iterator[None]:
    """While `dagster dev` runs: its output pumped to the log file (and errors to `say`), the UI
    announced once it answers, a line said per finished run. After the block (which ends the
    process group), the last of the output is logged and `say` reports the stop."""
    import dagster as dg

    from fastfeast_dagster.logs import log_file_path

    path = log_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with path.open("a", encoding="utf-8") as log:
        pump = OutputPump(log, say, verbose=verbose)
        reader = threading.Thread(target=pump.pump, args=(output,), daemon=True)
        threads = [
            reader,
            threading.Thread(
                target=announce_ui, args=(f"http://127.0.0.1:{port}", say, stop), daemon=True
            ),
            threading.Thread(
                target=watch_runs,
                args=(dg.DagsterInstance.get, say, stop, dt.datetime.now(dt.UTC)),
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            reader.join(timeout=5)
    say("fastfeast dev stopped")


def printer() -> Callable[[str], None]:
    """`print` for several threads: one message never splits another."""
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, flush=True)

    return say


def without_dev_notice() -> str:
    """PYTHONWARNINGS for `dagster dev`'s processes: the caller's, less the notice that `dagster
    dev` is superseded by `dg dev` (dagster-dg-cli, which this project does not use)."""
    notice = "ignore:Function `dev_command` is superseded:FutureWarning"
    return ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), notice]))
