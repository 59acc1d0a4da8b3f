"""A Celery deployment of FastFeast on one machine, process by process, from deploy/celery/.

Redis (Debian's `redis-server`, broker and result backend), a code server, the daemon and N
Celery workers, each in a directory of its own (HOME, working directory, DAGSTER_HOME holding a
copy of deploy/celery/dagster.yaml) and with no state dir: they share only the environment a
deployment would hand every machine (the databases, the S3 data root, the broker, the PII key).
Used by test_celery.py and benchmarks/bench_cluster.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from fastfeast_dagster.contract import PROJECT_ROOT

BIN = Path(sys.executable).parent
DEPLOY = PROJECT_ROOT / "deploy" / "celery"
REDIS = "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    root: Path  # its HOME, working directory and DAGSTER_HOME live under here
    log: Path

    def tree(self) -> set[int]:
        """Its pid and every descendant's (a Celery worker's pool children)."""
        try:
            parent = psutil.Process(self.popen.pid)
            return {parent.pid, *(child.pid for child in parent.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


@dataclass
class Cluster:
    environment: dict[str, str]  # what every machine of the deployment is given
    home: Path  # an instance home for the test's own reads (same dagster.yaml)
    workspace: Path  # the daemon's: the code server's gRPC address
    workers: list[Process] = field(default_factory=list)
    others: list[Process] = field(default_factory=list)

    def logs(self) -> str:
        """The tail of every process's log, for a failure message."""
        return "\n".join(
            f"--- {process.name}\n{process.log.read_text(errors='replace')[-3000:]}"
            for process in [*self.others, *self.workers]
        )


def _dagster_home(root: Path) -> Path:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    return home


def _start(name: str, args: list[str], base: Path, environment: dict[str, str]) -> Process:
    """`args` in `base/name/work`, HOME `base/name/home`, DAGSTER_HOME `base/name/dagster_home`."""
    root = base / name
    (root / "home").mkdir(parents=True)
    (root / "work").mkdir()
    env = environment | {
        "HOME": str(root / "home"),
        "DAGSTER_HOME": str(_dagster_home(root)),
        "PATH": f"{BIN}:/usr/bin:/bin",
    }
    log = root / "output.log"
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            args,
            cwd=root / "work",
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, root, log)


def _wait_until_ready(processes: dict[str, Process], ready: dict[str, str]) -> None:
    """Until each process's log shows its `ready` line; they start side by side."""
    deadline = time.monotonic() + 180
    for name, line in ready.items():
        process = processes[name]
        while line not in process.log.read_text(errors="replace"):
            if process.popen.poll() is not None or time.monotonic() > deadline:
                tail = process.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} did not start:\n{tail}")
            time.sleep(0.3)


def _create_storage(root: Path, environment: dict[str, str]) -> None:
    """Dagster's tables, once, before any process starts (`dagster instance migrate`, as a
    deployment's first step): processes that find an empty database create them side by side,
    and the loser fails with `type "event_logs" already exists` (seen with the daemon)."""
    (root / "home").mkdir(parents=True)
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        cwd=root,
        env=environment
        | {
            "HOME": str(root / "home"),
            "DAGSTER_HOME": str(_dagster_home(root)),
            "PATH": f"{BIN}:/usr/bin:/bin",
        },
        check=True,
        capture_output=True,
        timeout=180,
    )


@contextmanager
def celery_cluster(base: Path, *, workers: int, environment: dict[str, str]) -> Iterator[Cluster]:
    """Start the deployment; `environment` holds the databases, data root, PII key and AWS_*."""
    redis_port, code_port = free_port(), free_port()
    if not Path(REDIS).exists():
        raise RuntimeError(f"{REDIS} is missing: apt-get install -y redis-server (.ci/run does)")
    shared = environment | {
        "FASTFEAST_DEPLOYMENT": "distributed",
        "FASTFEAST_CELERY_BROKER": f"redis://127.0.0.1:{redis_port}/0",
        "FASTFEAST_CELERY_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    cluster = Cluster(shared, _dagster_home(base / "reader"), base / "workspace.yaml")
    spec = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    spec["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_port)
    cluster.workspace.write_text(yaml.safe_dump(spec))
    redis = [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    code_server = ["code-server", "start", "-m", "fastfeast_dagster.definitions"]
    worker = ["worker", "start", "-A", "dagster_celery.app", "-y", str(DEPLOY / "celery.yaml")]
    commands = {
        "redis": [*redis, "--appendonly", "no"],
        "code-server": [
            str(BIN / "dagster"),
            *code_server,
            "-h",
            "127.0.0.1",
            "-p",
            str(code_port),
        ],
        # One run at a time per worker (`-c 1`), so two workers run two runs at most.
        **{
            f"worker{n}": [
                str(BIN / "dagster-celery"),
                *worker,
                "-n",
                f"worker{n}@%h",
                "--",
                "-c",
                "1",
            ]
            for n in range(1, workers + 1)
        },
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", str(cluster.workspace)],
    }
    ready = {
        "redis": "Ready to accept",
        "code-server": "Started Dagster code proxy server",
        **{f"worker{n}": " ready." for n in range(1, workers + 1)},
        "daemon": "Instance is configured",
    }
    _create_storage(base / "migrate", shared)
    processes: dict[str, Process] = {}
    try:
        for name, args in commands.items():
            processes[name] = _start(name, args, base, shared)
            (cluster.workers if name.startswith("worker") else cluster.others).append(
                processes[name]
            )
        _wait_until_ready(processes, ready)
        yield cluster
    finally:
        for process in reversed(list(processes.values())):
            process.stop()
