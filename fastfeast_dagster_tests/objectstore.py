"""A real S3 API on loopback for the tests: moto's server (PyPI `moto[server]`), one per session.

boto3 reaches it through the standard variables (`AWS_ENDPOINT_URL_S3` and test credentials), as
a deployment reaches any S3-compatible store; the tests then set `FASTFEAST_DATA_DIR=s3://…`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    # Its request log would fill every failure report.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def s3_environment(endpoint: str) -> dict[str, str]:
    """What a process needs to reach the test's S3 server, and nothing of this machine's."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }


def new_bucket() -> str:
    """A new, empty bucket on the S3 server the environment points at."""
    name = f"ff-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket; this process's boto3 reaches it from the environment."""
    for name, value in s3_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    return new_bucket()


def upload_tree(folder: Path, bucket: str, prefix: str) -> int:
    """Every file under `folder` as `prefix/<relative path>`; returns how many."""
    client = boto3.client("s3")
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in files:
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return len(files)
