"""The resumable JSONL output on any object store: parts, the manifest, publishing.

See :mod:`airflow_provider_pioneer.batching.output` for the design and its guarantees.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from airflow_provider_pioneer._compat import AirflowException
from airflow_provider_pioneer.batching import checkpoint
from airflow_provider_pioneer.batching.checkpoint import PartCheck
from airflow_provider_pioneer.batching.lease import Lease, OutputConflictError, Owner, template_advice
from airflow_provider_pioneer.batching.sinks import KEEP_ERRORS, OutputCounts, Sink, encode
from airflow_provider_pioneer.batching.store import Store

if TYPE_CHECKING:
    from airflow_provider_pioneer.batching.inputs import Item

__all__ = ["MANIFEST_VERSION", "CheckpointError", "FileSink", "part_names"]

log = logging.getLogger(__name__)

#: 3: each part's name carries its record count, tokens and digest, checked on resume. A manifest
#: of version 2 (whose parts cannot be checked) is not resumed: that run starts afresh.
MANIFEST_VERSION = 3
_UPLOAD_BLOCK = 8 << 20  # multipart chunk of the published file on object stores (min 5 MiB on S3)


class CheckpointError(AirflowException):
    """The output's parts stopped adding up while this task ran; nothing was published.

    Retryable: the retry checks every part again and sends only the records of those that fail.
    """


def part_names(manifest: Mapping[str, Any], listed: Iterable[str]) -> list[str]:
    """The object names of a manifest's parts, in order, among the ``listed`` names of ``<output_path>.parts/``.

    :raises ValueError: one of them is not listed.
    """
    names = checkpoint.find_parts(manifest, listed)
    if None in names:
        raise ValueError(f"part {names.index(None)} of the manifest is not in the listing")
    return [n for n in names if n is not None]


def _same_id(item: Item, written: Any) -> bool:
    """Is ``written`` (an id read back from the output) the id of ``item``, as the output writes it?"""
    return bool(json.loads(encode({"id": item.id}))["id"] == written)


# -- the resumable file sink ----------------------------------------------------------------------


class FileSink(Sink):
    """Ordered JSONL output on any object store, resumable; see :mod:`.output` for the design.

    A resume trusts nothing it reads back without checking it (see :mod:`.checkpoint`): each
    part against the digest, record count and token count it was written with and, in
    :meth:`skip_done`, its first and last ids against the inputs at its position; the counts are
    re-derived from the parts that pass. Parts hold consecutive inputs in order, so the parts
    before the first one that fails are exactly what a clean run would have written: they are
    kept (not billed again) and everything from the first failing part on is sent again. An
    error instead would leave the user a choice between deleting the checkpoint (billing all of
    it again) or editing it by hand; a short output is never published (the publish counts the
    records again and fails with :class:`CheckpointError` when they are not the inputs' total).

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
        #: ``[first part number, attempt]`` of each attempt that wrote parts (in the manifest).
        self.attempts: list[list[Any]] = []
        #: The object names of the durable parts, in order (what is published).
        self.names: list[str] = []
        self._resumed_parts: list[PartCheck] = []  # their ids are checked against the inputs
        self._buffer: list[bytes] = []
        self._buffered_records = 0
        self._buffered_tokens = 0
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

    def _distrust(self, what: str, resent: str) -> None:
        log.warning("The checkpoint beside %s does not add up: %s. %s", self.path, what, resent)

    def _complete_output(self, doc: dict[str, Any]) -> PartCheck | None:
        """The published output read back whole, if it is still what was published (size, digest, lines)."""
        if self.store.size(self.out) != doc.get("bytes") or not isinstance(doc.get("digest"), str):
            return None
        # A rerun of a finished task reads its output once: a HEAD alone passed a same-size change.
        found = checkpoint.scan(self.store, self.out, records=self.total, digest=doc["digest"])
        return None if found.problem else found

    def _restore(self, doc: dict[str, Any], parts: list[PartCheck]) -> None:
        self.attempts = [list(a) for a in doc["attempts"]]
        self.names = [p.name for p in parts]
        self._resumed_parts = parts
        self._keep(len(parts), save=len(parts) < int(doc["parts"]))

    def _keep(self, n: int, save: bool) -> None:
        """Keep the first ``n`` resumed parts; the counts are derived from them, not from the manifest."""
        parts = self._resumed_parts = self._resumed_parts[:n]
        self.names, self.parts = self.names[:n], n
        self.attempts = [a for a in self.attempts if int(a[0]) < n]
        records = sum(p.records for p in parts)
        failed = sum(p.failed for p in parts)
        errors = list(itertools.chain.from_iterable(p.errors for p in parts))[:KEEP_ERRORS]
        self.counts = OutputCounts(records, records - failed, failed, sum(p.tokens for p in parts), errors)
        self.parts_bytes = sum(p.size for p in parts)
        self.resumed = records
        if save:  # the parts dropped are not listed again, should this attempt die before its first part
            self._save(complete=False)

    def _open(self) -> None:
        doc = self.store.read_json(self.manifest_path)
        if doc is not None and doc.get("version") != MANIFEST_VERSION:
            log.info(
                "The checkpoint beside %s is of another version of this provider: starting afresh.", self.path
            )
            doc = None
        if doc is not None and doc.get("fingerprint") != self.fingerprint:
            self._refuse_foreign_output(doc)
            doc = None  # the same task asks something else now: start over
        if doc is not None and doc.get("total") == self.total:
            if doc.get("complete"):
                found = self._complete_output(doc)
                if found is not None:
                    tokens = doc.get("token_usage")
                    self.counts = OutputCounts(
                        found.records, found.records - found.failed, found.failed,
                        tokens if isinstance(tokens, int) else 0, found.errors,
                    )  # fmt: skip
                    self.resumed = found.records
                    self.already_complete = True
                    # Left over if a kill came right after publishing.
                    self.store.remove_folder(self.parts_dir)
                    return
                self._distrust("the published output changed since it was written", "Making it again.")
            else:
                parts = checkpoint.verified_prefix(
                    self.store, self.parts_dir, doc, self.total, self._distrust
                )
                if parts:
                    self._restore(doc, parts)
                    return
        # Fresh start. The manifest goes first: a crash of this run must not resume from it.
        self.store.remove(self.manifest_path)
        self.store.remove_folder(self.parts_dir)
        self.store.makedirs(self.parts_dir)

    def skip_done(self, items: Iterator[Item]) -> Iterator[Item]:
        """Consume the inputs the checkpoint covers; return the rest, to be sent.

        Each resumed part's first and last ids must be those of the inputs at its position. At the
        first part where they are not, that part and the ones after it are dropped, and their
        inputs are returned to be sent again.
        """
        for number, part in enumerate(self._resumed_parts):
            held = list(itertools.islice(items, part.records))
            if (
                len(held) == part.records
                and _same_id(held[0], part.first_id)
                and _same_id(held[-1], part.last_id)
            ):
                continue
            self._distrust(
                f"part {number} ({part.name}) holds ids {part.first_id!r}..{part.last_id!r}, not those "
                f"of inputs {part.start}..{part.start + part.records - 1}",
                f"Keeping {checkpoint.parts_before(number)} before it ({part.start} records); the rest is sent again.",
            )
            self._keep(number, save=True)
            return itertools.chain(held, items)
        self._resumed_parts = []
        return items

    # -- writing ---------------------------------------------------------------------------------

    def write(self, records: list[dict[str, Any]], tokens: int) -> None:
        if self.lease.lost:
            self.lease.check()
        if not self._buffer:
            self._part_started = self._clock()
        self._buffer.append(b"".join(encode(r) for r in records))
        self._buffered_records += len(records)
        self._buffered_tokens += tokens
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
        name = checkpoint.part_name(
            self.parts,
            self.attempt,
            self._buffered_records,
            self._buffered_tokens,
            checkpoint.digest_of(data),
        )
        self.store.write(f"{self.parts_dir}/{name}", data, atomic=False)
        self.names.append(name)
        self.parts += 1
        self.parts_bytes += len(data)
        self._buffer, self._buffered_records, self._buffered_tokens, self._buffered_batches = [], 0, 0, 0
        self._save(complete=False)

    def _save(self, complete: bool, size: int | None = None, digest: str | None = None) -> None:
        doc = {
            "version": MANIFEST_VERSION,
            "fingerprint": self.fingerprint,
            "total": self.total,
            "complete": complete,
            "bytes": size,
            "digest": digest,
            "owner": asdict(self.owner),
            **asdict(self.counts),
            "parts": self.parts,
            "parts_bytes": self.parts_bytes,
            "attempts": self.attempts,
        }
        self.store.write(self.manifest_path, json.dumps(doc, default=str).encode())

    def _publish(self) -> tuple[int, str]:
        """Stream the parts, in order, into ``output_path``, checking each again; return its size and digest.

        :raises CheckpointError: a part no longer hashes to its digest, or the records are not
            the inputs' total. Nothing is published then.
        """
        fs = self.store.fs
        target = f"{self.out}.tmp-{self.attempt}" if self.store.local else self.out
        size, lines, whole = 0, 0, hashlib.sha256()
        out = fs.open(target, "wb", block_size=_UPLOAD_BLOCK)
        try:
            for name in self.names:
                part, want = hashlib.sha256(), checkpoint.expected(name)
                for chunk in self.store.chunks(f"{self.parts_dir}/{name}"):
                    out.write(chunk)
                    part.update(chunk)
                    whole.update(chunk)
                    size += len(chunk)
                    lines += chunk.count(b"\n")
                if want is None or checkpoint.hexdigest(part) != want[2]:
                    raise CheckpointError(
                        f"Part {name} beside {self.path} changed after this task wrote it, so the output "
                        "was not published. An Airflow retry checks every part again and sends only "
                        "the records of the parts that do not add up."
                    )
            if lines != self.total:
                raise CheckpointError(
                    f"The parts beside {self.path} hold {lines} records for {self.total} inputs, so "
                    "the output was not published. An Airflow retry checks every part again and sends "
                    "the records that are missing."
                )
        except BaseException:
            with contextlib.suppress(Exception):
                out.discard()  # s3fs: abort the multipart upload, so no object appears
            with contextlib.suppress(Exception):
                out.close()
            self.store.remove(target)
            raise
        out.close()
        if self.store.local:
            os.replace(target, self.out)
        return size, checkpoint.hexdigest(whole)

    def close(self, complete: bool) -> None:
        """Write what is buffered; when ``complete``, publish ``output_path``, then mark the manifest complete.

        :raises OutputConflictError: when ``complete`` and another task took the output over meanwhile
            (with ``complete=False`` the caller is already failing: the conflict is only not written over).
        :raises CheckpointError: when ``complete`` but the records are not one per input.
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
            if self.counts.records != self.total:
                raise CheckpointError(
                    f"This task wrote {self.counts.records} records for {self.total} inputs beside "
                    f"{self.path}, so the output was not published. An Airflow retry resumes from "
                    "the checkpoint after checking it."
                )
            self.lease.check()
            size, digest = self._publish() if self.parts else self._publish_empty()
            self._save(complete=True, size=size, digest=digest)  # last: only now is the output complete
            self.store.remove_folder(self.parts_dir)
        finally:
            self.lease.release()

    def _publish_empty(self) -> tuple[int, str]:
        self.store.write(self.out, b"")  # no inputs: an empty result
        return 0, checkpoint.digest_of(b"")
