"""The few whole-object operations the output needs, on the filesystem behind an ``ObjectStoragePath``.

Only what every store can do: write a whole object, read it, list a folder, delete. Nothing is
appended to or truncated in place (see :mod:`airflow_provider_pioneer.batching.output`).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

from airflow_provider_pioneer import safe_json

__all__ = ["COPY_CHUNK", "Store"]

#: Read size when streaming an object (flat memory whatever its size).
COPY_CHUNK = 1 << 20


class Store:
    """Whole-object reads and writes on the filesystem behind an ``ObjectStoragePath``.

    :param path: any ``ObjectStoragePath`` on the store (its ``fs`` is used).
    """

    def __init__(self, path: Any) -> None:
        from fsspec.implementations.local import LocalFileSystem
        from fsspec.implementations.memory import MemoryFileSystem

        self.fs = path.fs
        self.local = isinstance(self.fs, LocalFileSystem)
        #: Writes are synchronous and cost next to nothing (a local disk, memory).
        self.cheap_writes = isinstance(self.fs, LocalFileSystem | MemoryFileSystem)

    def read(self, path: str) -> bytes | None:
        try:
            if self.local:
                with open(path, "rb") as f:
                    return f.read()
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def read_json(self, path: str) -> dict[str, Any] | None:
        data = self.read(path)
        if data is None:
            return None
        try:
            doc = safe_json.loads(data)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def chunks(self, path: str) -> Iterator[bytes]:
        """The object's bytes, streamed; ``FileNotFoundError`` if it is gone."""
        with self.fs.open(path, "rb") as f:
            while chunk := f.read(COPY_CHUNK):
                yield chunk

    def write(self, path: str, data: bytes, *, atomic: bool = True) -> None:
        """Write ``path`` whole; ``atomic``: readers see the old bytes or the new ones, never a mix.

        A part needs no atomic write: it counts only once the manifest written after it lists it.
        """
        if not self.local:
            self.fs.pipe_file(path, data)  # one PUT: the object appears whole or not at all
            return
        target = f"{path}.tmp-{uuid.uuid4().hex[:8]}" if atomic else path
        with open(target, "wb") as f:
            f.write(data)
        if atomic:
            os.replace(target, path)

    def sizes(self, folder: str) -> dict[str, int]:
        """Object name -> size in ``folder`` (fresh, not from a listing cache)."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(folder)
        try:
            entries = self.fs.ls(folder, detail=True, refresh=True)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        return {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in entries}

    def size(self, path: str) -> int | None:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)
        try:
            return int(self.fs.info(path)["size"])
        except FileNotFoundError:
            return None

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def remove_folder(self, folder: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(folder, recursive=True)

    def makedirs(self, folder: str) -> None:
        with contextlib.suppress(FileExistsError):
            self.fs.makedirs(folder, exist_ok=True)
