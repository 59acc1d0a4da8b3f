"""Where the data root lives: a local folder (the default) or an S3 bucket and prefix.

`FASTFEAST_DATA_DIR=s3://bucket/prefix` makes the data root an `ObjectRoot`. Its locations
(`ObjectPath`) answer the few path operations the layout, the asset and the reader use (`/`,
`name`, `exists`, `relative_to`), so a partition's files are found the same way in both; only
listing (`sources/objects.py`) and reading (`ObjectPath.read`, from `sources/reading.py`)
differ. The client comes from boto3's standard configuration: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`) for an
S3-compatible server.

A run reads the objects at the ETags its sensor saw (the `fastfeast/etags` run tag): an object
replaced since then fails the read instead of loading bytes no run key describes; the sensor
requests a run of its own for the new version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

OBJECT_SCHEME = "s3://"
PINS_TAG = "fastfeast/etags"


class ObjectChanged(RuntimeError):
    """The object is no longer the version the run was requested for."""


class StoreUnavailable(RuntimeError):
    """The object store did not answer, or answered that it cannot serve now: the run fails, and
    the retry of failed runs (`sensors/retries.py`) reads the object again after its backoff. A
    file rejection would spend the run and leave the object unloaded until it changes."""


# S3's answers that say "not now" rather than "not this object".
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
)


@dataclass(frozen=True)
class Blob:
    data: bytes
    modified_ns: int


@dataclass(frozen=True)
class ObjectRoot:
    """`s3://bucket/prefix`; `pins` maps keys relative to it to the ETag a run must read."""

    bucket: str
    prefix: str = ""
    pins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_url(cls, url: str) -> ObjectRoot:
        bucket, _, prefix = url.removeprefix(OBJECT_SCHEME).partition("/")
        if not bucket:
            raise ValueError(f"not an S3 data root (s3://bucket/prefix): {url!r}")
        return cls(bucket, prefix.strip("/"))

    @cached_property
    def client(self) -> Any:
        import boto3

        return boto3.client("s3")

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def __truediv__(self, relative: str) -> ObjectPath:
        return ObjectPath(self, str(relative).strip("/"))

    def __str__(self) -> str:
        return f"{OBJECT_SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    def list(self, relative: str, *, delimiter: bool) -> Iterator[dict[str, Any]]:
        """Each page of ListObjectsV2 under `relative/` (1,000 keys a page, S3's maximum)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.key(relative.strip("/") + "/"),
            **({"Delimiter": "/"} if delimiter else {}),
        )
        yield from pages

    def pinned(self, tags: Mapping[str, str]) -> ObjectRoot:
        return ObjectRoot(self.bucket, self.prefix, json.loads(tags.get(PINS_TAG, "{}")))


@dataclass(frozen=True)
class ObjectPath:
    """One object (or prefix) under an `ObjectRoot`, by its key relative to the root."""

    root: ObjectRoot
    relative: str

    def __truediv__(self, part: str) -> ObjectPath:
        return ObjectPath(self.root, f"{self.relative}/{part}".strip("/"))

    @property
    def name(self) -> str:
        return PurePosixPath(self.relative).name

    @property
    def key(self) -> str:
        return self.root.key(self.relative)

    def __str__(self) -> str:
        return f"{OBJECT_SCHEME}{self.root.bucket}/{self.key}"

    def is_relative_to(self, root: object) -> bool:
        return root == self.root

    def relative_to(self, root: object) -> PurePosixPath:
        if root != self.root:
            raise ValueError(f"{self} is not under {root}")
        return PurePosixPath(self.relative)

    def exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.root.client.head_object(Bucket=self.root.bucket, Key=self.key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read(self) -> Blob:
        """The object's bytes; a `ClientError` that is about this object (gone, refused) is left
        to the reader, which makes it the file's verdict."""
        from botocore.exceptions import BotoCoreError, ClientError

        etag = self.root.pins.get(self.relative)
        try:
            response = self.root.client.get_object(
                Bucket=self.root.bucket, Key=self.key, **({"IfMatch": etag} if etag else {})
            )
            data = response["Body"].read()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("412", "PreconditionFailed"):
                raise ObjectChanged(
                    f"{self} changed since its sensor saw ETag {etag}; the new version is "
                    "requested as a run of its own"
                ) from None
            if code in _TRANSIENT_CODES or status >= 500:
                raise StoreUnavailable(f"{self}: the object store answered {code}") from None
            raise
        except BotoCoreError as error:
            # botocore's class names the problem; its message would quote the request.
            raise StoreUnavailable(f"{self}: {type(error).__name__}") from None
        modified = response["LastModified"].timestamp()
        return Blob(data, int(modified * 1e9))


DataRoot = Path | ObjectRoot


def data_root_from(value: str) -> ObjectRoot | None:
    """The object root that `FASTFEAST_DATA_DIR` names, or None for a local folder."""
    return ObjectRoot.from_url(value) if value.startswith(OBJECT_SCHEME) else None


def for_run(root: DataRoot, tags: Mapping[str, str]) -> DataRoot:
    """The data root a run reads: objects pinned to the ETags its sensor saw."""
    return root.pinned(tags) if isinstance(root, ObjectRoot) else root


def pin_tags(paths_and_versions: Iterable[tuple[object, str | None]]) -> dict[str, str]:
    """The run tag that pins a run's objects (none for local files, which have no version)."""
    pins = {
        path.relative: version
        for path, version in paths_and_versions
        if isinstance(path, ObjectPath) and version is not None
    }
    return {PINS_TAG: json.dumps(pins, sort_keys=True)} if pins else {}
