"""Object stores for the output tests: ``file://``, ``memory://`` and a real S3 API on loopback.

* ``s3``: moto's standalone server (``ThreadedMotoServer``) on 127.0.0.1 and a free port,
  reached over HTTP through the Amazon provider's ``s3://`` filesystem (s3fs), with an Airflow
  connection in ``AIRFLOW_CONN_PIONEER_TEST_S3``. One server per test session: Airflow caches
  a store's filesystem per process, so its endpoint must not change; every test gets its own bucket.
* ``memory``: fsspec's in-process memory filesystem. Airflow 3.3 registers no ``memory`` scheme
  for ``ObjectStoragePath``; :func:`register_memory_scheme` adds it for the tests. It stands
  for any store that cannot append or rename: the same code paths as S3, without a server. It
  lives in one process, so the kill tests use ``file`` and ``s3`` for a real ``kill -9``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.moto_server import MotoServer, moto_server

S3_CONN_ID = "pioneer_test_s3"


class MotoS3:
    """S3 on moto's server; ``new_bucket()`` gives each test an empty bucket.

    :param server: the running server.
    """

    def __init__(self, server: MotoServer) -> None:
        self.server = server

    def client(self) -> Any:
        return self.server.client()

    def new_bucket(self) -> str:
        """An empty bucket; returns the ``s3://`` URL of its root (with the connection id)."""
        name = f"pioneer-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return f"s3://{S3_CONN_ID}@{name}"

    def keys(self, bucket_url: str) -> list[str]:
        bucket = bucket_url.rsplit("@", 1)[-1]
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server, its connection in ``AIRFLOW_CONN_PIONEER_TEST_S3`` while it runs."""
    with moto_server("s3") as server:
        os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"] = server.connection
        try:
            yield MotoS3(server)
        finally:
            os.environ.pop(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", None)


def register_memory_scheme() -> None:
    """Let ``ObjectStoragePath("memory://...")`` use fsspec's memory filesystem (tests only)."""
    from airflow.sdk.io import fs as airflow_fs
    from fsspec.implementations.memory import MemoryFileSystem

    registry: Any = airflow_fs._register_filesystems()
    registry.setdefault("memory", lambda conn_id, options=None: MemoryFileSystem())


def memory_root() -> str:
    """A fresh ``memory://`` folder."""
    register_memory_scheme()
    return f"memory://pioneer-{uuid.uuid4().hex[:12]}"


def manifest_of(output_path: str) -> dict[str, Any] | None:
    """The output's manifest (``<output_path>.manifest.json``), or None."""
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath(f"{output_path}.manifest.json")
    try:
        # One GET: opening the file instead (HEAD, then GET if the ETag still matches) fails when the
        # running task rewrites the manifest in between.
        return dict(json.loads(path.fs.cat_file(path.path)))
    except FileNotFoundError:
        return None


def checkpointed_records(output_path: str) -> list[dict[str, Any]]:
    """The records a retry would keep: those of the parts the manifest lists, in order."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_pioneer.batching.output import part_names

    doc = manifest_of(output_path) or {"parts": 0, "attempts": []}
    folder = ObjectStoragePath(f"{output_path}.parts")
    listed = [p.name for p in folder.iterdir()] if doc["parts"] else []
    records = []
    for name in part_names(doc, listed):
        text = ObjectStoragePath(f"{output_path}.parts/{name}").read_text()
        records += [json.loads(line) for line in text.splitlines()]
    return records


def incomplete_checkpoint(output_path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records an interrupted run checkpointed: not complete, some but not all, a prefix of ``rows``."""
    checkpoint = manifest_of(output_path)
    partial = checkpointed_records(output_path)
    assert (
        checkpoint is not None
        and checkpoint["complete"] is False
        and 0 < checkpoint["records"] == len(partial) < len(rows)
    )
    assert [r["id"] for r in partial] == [r["id"] for r in rows[: len(partial)]]
    return partial
