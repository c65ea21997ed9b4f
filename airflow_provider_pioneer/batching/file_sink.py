"""The resumable JSONL output on any object store: parts, the manifest, publishing.

See :mod:`airflow_provider_pioneer.batching.output` for the design and its guarantees.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from airflow_provider_pioneer.batching.lease import Lease, OutputConflictError, Owner, template_advice
from airflow_provider_pioneer.batching.sinks import OutputCounts, Sink, encode
from airflow_provider_pioneer.batching.store import Store

__all__ = ["MANIFEST_VERSION", "FileSink", "part_names"]

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2
_UPLOAD_BLOCK = 8 << 20  # multipart chunk of the published file on object stores (min 5 MiB on S3)


def _part_name(number: int, attempt: str) -> str:
    return f"part-{number:05d}-{attempt}.jsonl"


def part_names(manifest: Mapping[str, Any]) -> list[str]:
    """The names of a manifest's parts, in order (in ``<output_path>.parts/``)."""
    attempts = [(int(first), str(attempt)) for first, attempt in manifest["attempts"]]
    names, current = [], 0
    for number in range(int(manifest["parts"])):
        while current + 1 < len(attempts) and attempts[current + 1][0] <= number:
            current += 1
        names.append(_part_name(number, attempts[current][1]))
    return names


# -- the resumable file sink ----------------------------------------------------------------------


class FileSink(Sink):
    """Ordered JSONL output on any object store, resumable; see the module docstring.

    :param path: the final output, an ``ObjectStoragePath``.
    :param fingerprint: hash of what was asked (inputs, model, schema, options).
    :param total: number of inputs (a complete output must cover exactly these).
    :param owner: the task instance writing (from the task's context).
    :param part_batches: batches per part at most (default: 1 on a local disk or in memory, else 4).
    :param part_seconds: a part is written once its first batch is this old.
    :raises OutputConflictError: another task instance writes ``path``, or it holds the complete
        output of another task for a different request.
    """

    def __init__(
        self,
        path: Any,
        fingerprint: str,
        total: int,
        owner: Owner | None = None,
        *,
        part_batches: int | None = None,
        part_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.total = total
        self.owner = owner or Owner()
        self.part_seconds = part_seconds
        self._clock = clock
        self.store = Store(path)
        self.part_batches = max(1, part_batches or (1 if self.store.cheap_writes else 4))
        self.out = str(path.path)
        self.parts_dir = f"{self.out}.parts"
        self.manifest_path = f"{self.out}.manifest.json"
        self.counts = OutputCounts()
        #: Records found done by an earlier attempt (skipped this time).
        self.resumed = 0
        #: The output was already complete for this very request: nothing to do.
        self.already_complete = False
        self.attempt = uuid.uuid4().hex[:8]
        self.parts = 0  # durable parts, numbered 0..parts-1
        self.parts_bytes = 0
        #: ``[first part number, attempt]`` of each attempt that wrote parts: names the parts.
        self.attempts: list[list[Any]] = []
        self._buffer: list[bytes] = []
        self._buffered_records = 0
        self._buffered_batches = 0
        self._part_started = 0.0
        self._closed = False
        parent = str(path.parent.path)
        self.store.makedirs(parent)
        self.lease = Lease(self.store, f"{self.out}.lease.json", self.owner, path)
        self.lease.acquire()
        try:
            self._open()
        except BaseException:
            self.lease.release()
            raise
        if self.already_complete:
            self._closed = True
            self.lease.release()

    # -- start: complete, resume, or fresh -------------------------------------------------------

    def _refuse_foreign_output(self, doc: dict[str, Any]) -> None:
        owner = doc.get("owner") or {}
        if self.owner.same_task(owner):
            return
        state = "the complete output" if doc.get("complete") else "the unfinished output"
        raise OutputConflictError(
            f"This output_path holds {state} of another task ({Owner.describe(owner)}) for a "
            f"different request. Refusing to overwrite it. {template_advice(self.path)} "
            f"To reuse the path, delete {self.path} and the files beside it that start with its name."
        )

    def _parts_intact(self, doc: dict[str, Any]) -> bool:
        try:
            names = part_names(doc)
        except (KeyError, TypeError, ValueError):
            return False
        found = self.store.sizes(self.parts_dir) if names else {}
        return all(n in found for n in names) and sum(found[n] for n in names) == doc.get("parts_bytes")

    def _restore(self, doc: dict[str, Any]) -> None:
        self.counts = OutputCounts(
            records=int(doc["records"]),
            succeeded=int(doc["succeeded"]),
            failed=int(doc["failed"]),
            token_usage=int(doc["token_usage"]),
            first_errors=list(doc.get("first_errors", [])),
        )
        self.parts = int(doc["parts"])
        self.parts_bytes = int(doc["parts_bytes"])
        self.attempts = [list(a) for a in doc["attempts"]]
        self.resumed = self.counts.records

    def _open(self) -> None:
        doc = self.store.read_json(self.manifest_path)
        if doc is not None and doc.get("version") != MANIFEST_VERSION:
            doc = None
        if doc is not None and doc.get("fingerprint") != self.fingerprint:
            self._refuse_foreign_output(doc)
            doc = None  # the same task asks something else now: start over
        if doc is not None and doc.get("total") == self.total:
            if doc.get("complete") and self.store.size(self.out) == doc.get("bytes"):
                self._restore(doc)
                self.already_complete = True
                self.store.remove_folder(self.parts_dir)  # left over if a kill came right after publishing
                return
            if not doc.get("complete") and self._parts_intact(doc):
                self._restore(doc)
                return
        # Fresh start. The manifest goes first: a crash of this run must not resume from it.
        self.store.remove(self.manifest_path)
        self.store.remove_folder(self.parts_dir)
        self.store.makedirs(self.parts_dir)

    # -- writing ---------------------------------------------------------------------------------

    def write(self, records: list[dict[str, Any]], tokens: int) -> None:
        if self.lease.lost:
            self.lease.check()
        if not self._buffer:
            self._part_started = self._clock()
        self._buffer.append(b"".join(encode(r) for r in records))
        self._buffered_records += len(records)
        self._buffered_batches += 1
        self.counts.add(records, tokens)
        if (
            self._buffered_batches >= self.part_batches
            or self._clock() - self._part_started >= self.part_seconds
        ):
            self._flush()

    def _flush(self) -> None:
        """Write the buffered records as the next part, then the manifest that lists it."""
        if not self._buffer:
            return
        self.lease.check()  # a task that lost its lease writes nothing more
        if not self.attempts or self.attempts[-1][1] != self.attempt:
            self.attempts.append([self.parts, self.attempt])
        data = b"".join(self._buffer)
        self.store.write(f"{self.parts_dir}/{_part_name(self.parts, self.attempt)}", data, atomic=False)
        self.parts += 1
        self.parts_bytes += len(data)
        self._buffer, self._buffered_records, self._buffered_batches = [], 0, 0
        self._save(complete=False)

    def _save(self, complete: bool, size: int | None = None) -> None:
        doc = {
            "version": MANIFEST_VERSION,
            "fingerprint": self.fingerprint,
            "total": self.total,
            "complete": complete,
            "bytes": size,
            "owner": asdict(self.owner),
            **asdict(self.counts),
            "parts": self.parts,
            "parts_bytes": self.parts_bytes,
            "attempts": self.attempts,
        }
        self.store.write(self.manifest_path, json.dumps(doc, default=str).encode())

    def _publish(self) -> int:
        """Stream the parts, in order, into ``output_path``; return its size."""
        fs = self.store.fs
        target = f"{self.out}.tmp-{self.attempt}" if self.store.local else self.out
        size = 0
        with fs.open(target, "wb", block_size=_UPLOAD_BLOCK) as out:
            for name in part_names({"parts": self.parts, "attempts": self.attempts}):
                for chunk in self.store.chunks(f"{self.parts_dir}/{name}"):
                    out.write(chunk)
                    size += len(chunk)
        if self.store.local:
            os.replace(target, self.out)
        return size

    def close(self, complete: bool) -> None:
        """Write what is buffered; when ``complete``, publish ``output_path``, then mark the manifest complete.

        :raises OutputConflictError: when ``complete`` and another task took the output over meanwhile
            (with ``complete=False`` the caller is already failing: the conflict is only not written over).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if not complete:
                if not self.lease.lost:
                    try:
                        self._flush()
                    except OutputConflictError:
                        pass
                    except Exception as exc:
                        # The task is failing already; its own error says why. Losing this part
                        # only means its records are sent again by the next attempt.
                        log.warning("Could not checkpoint the last records beside %s: %s", self.path, exc)
                return
            self._flush()
            self.lease.check()
            size = self._publish() if self.parts else self._publish_empty()
            self._save(complete=True, size=size)  # last: only now is the output complete
            self.store.remove_folder(self.parts_dir)
        finally:
            self.lease.release()

    def _publish_empty(self) -> int:
        self.store.write(self.out, b"")  # no inputs: an empty result
        return 0
