"""Where the records go, in input order: a list (small runs) or JSONL on any object store, resumable.

One design for every ``ObjectStoragePath`` store (``file://``, ``s3://``, ``gs://``, ``memory://``
...), using only what every store can do: write a whole object, read it, list a folder, delete.
Nothing is appended to or truncated in place. Beside ``output_path`` (``<out>``):

``<out>.parts/part-00000-<attempt>.jsonl`` ...
    the records, in input order, in numbered parts. A part is written whole, once: after every
    batch on a local disk (cheap), every ``part_batches`` batches (default 4) or ``part_seconds``
    (1 s) on an object store, whichever comes first. Memory stays flat, and a killed task loses
    at most that much finished work besides the batches in flight.
``<out>.manifest.json``
    rewritten after each part is durably written: the request's fingerprint, how many parts
    there are and their total size, the attempts that wrote them (which names the parts), the
    counts, and which task wrote it. Its size does not grow with the run. A part that a kill
    left out of the manifest is ignored. A retry reads the manifest, checks (one listing) that
    every part exists and that their sizes add up, skips those records and writes the next part.
``<out>``
    the result, one JSONL file, published when every input has its record: the parts are
    streamed into it (flat memory; locally into a temporary file renamed into place, on an
    object store as one upload that appears only when complete), then the manifest is marked
    ``complete`` (last), then the parts are deleted.
``<out>.lease.json``
    who is writing: dag, task, run, map index, try, host, pid and a heartbeat renewed every
    ``LEASE_HEARTBEAT_S`` seconds. A task that finds a live lease of another task instance fails
    at once, without touching the output. A lease is taken over when it is stale (no heartbeat
    for ``LEASE_TTL_S``: its task died), when its process is gone from this very host, or when
    it belongs to an earlier try of the same task instance (that is the resume case).

Guarantees: every input has exactly one record in ``<out>``, in input order; a retry re-sends at
most the batches that were in flight plus the last unwritten part; a manifest of a different
request (fingerprint) is never resumed; a completed output of a different request is
overwritten only by the same task (same dag, task and map index: a rerun or the next run with
new options), never by another task. Two tasks starting on one path within
``LEASE_SETTLE_S`` seconds of each other are told apart by writing the lease, waiting, and
reading it back (S3 has read-after-write consistency); the loser fails. Should both
still pass (a store slower than that, or clocks more than ``LEASE_TTL_S`` apart), each writes
parts under its own attempt name, and the one that loses the lease stops at its next part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer._compat import AirflowFailException

__all__ = ["FileSink", "ListSink", "OutputConflictError", "OutputCounts", "Owner", "Sink", "part_names"]

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2
_KEEP_ERRORS = 5
#: A lease whose heartbeat is older than this belongs to a task that died.
LEASE_TTL_S = 90.0
#: How often a running task renews its lease.
LEASE_HEARTBEAT_S = 10.0
#: Wait between writing a lease and reading it back: two tasks that start within this time of
#: each other on one path see the same last writer, and the other one fails. Local disks and
#: memory are written synchronously, so a shorter wait covers the gap between a read and a write.
LEASE_SETTLE_S = 1.0
LEASE_SETTLE_LOCAL_S = 0.2
_COPY_CHUNK = 1 << 20
_UPLOAD_BLOCK = 8 << 20  # multipart chunk of the published file on object stores (min 5 MiB on S3)


class OutputConflictError(AirflowFailException):
    """Another task instance writes (or wrote) this ``output_path``; nothing of its output was touched."""


@dataclass
class OutputCounts:
    """What the output holds so far (checkpointed part included)."""

    records: int = 0
    succeeded: int = 0
    failed: int = 0
    token_usage: int = 0
    first_errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, records: list[dict[str, Any]], tokens: int) -> None:
        self.records += len(records)
        self.token_usage += tokens
        for rec in records:
            if "error" in rec:
                self.failed += 1
                if len(self.first_errors) < _KEEP_ERRORS:
                    self.first_errors.append(rec)
            else:
                self.succeeded += 1


class Sink:
    """Receives records in input order."""

    counts: OutputCounts

    def write(self, records: list[dict[str, Any]], tokens: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self, complete: bool) -> None:
        """Flush; ``complete`` when every input has its record."""


class ListSink(Sink):
    """Keeps the records in memory, for the task's return value."""

    def __init__(self) -> None:
        self.counts = OutputCounts()
        self.records: list[dict[str, Any]] = []

    def write(self, records: list[dict[str, Any]], tokens: int) -> None:
        self.records.extend(records)
        self.counts.add(records, tokens)


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()


# -- who writes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The task instance (and process) writing an output.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param run_id: the DAG run.
    :param map_index: the mapped task's index (-1 when not mapped).
    :param try_number: the attempt.
    """

    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Owner:
        """The running task instance, from the task's context."""
        ti = context.get("ti")

        def attr(name: str) -> Any:
            value = getattr(ti, name, None)
            return value if isinstance(value, str | int) else None

        return cls(attr("dag_id"), attr("task_id"), attr("run_id"), attr("map_index"), attr("try_number"))

    def same_task(self, doc: Mapping[str, Any]) -> bool:
        """Same dag, task and map index (any run)."""
        return all(doc.get(k) == getattr(self, k) for k in ("dag_id", "task_id", "map_index"))

    def same_task_instance(self, doc: Mapping[str, Any]) -> bool:
        """Same task instance (any try): a retry, or a task restarted after its worker died."""
        return self.same_task(doc) and doc.get("run_id") == self.run_id

    @staticmethod
    def describe(doc: Mapping[str, Any]) -> str:
        """``dag_id=..., task_id=..., ...`` of an owner record (for messages)."""
        keys = ("dag_id", "task_id", "run_id", "map_index", "try_number", "host", "pid")
        return ", ".join(f"{k}={doc.get(k)!r}" for k in keys if doc.get(k) is not None) or "an unknown task"


def _template_advice(path: Any) -> str:
    return (
        "Give every task its own output_path: template it with {{ ti.map_index }} for mapped tasks "
        f"and {{{{ run_id }}}} (or {{{{ ds }}}}) for runs that may overlap. The output is {path}."
    )


# -- the few store operations the sink needs ----------------------------------------------------------


class _Store:
    """Whole-object reads and writes on the filesystem behind an ``ObjectStoragePath``."""

    def __init__(self, path: Any) -> None:
        from fsspec.implementations.local import LocalFileSystem
        from fsspec.implementations.memory import MemoryFileSystem

        self.fs = path.fs
        self.local = isinstance(self.fs, LocalFileSystem)
        #: Writes are synchronous and cost next to nothing (a local disk, memory).
        self.cheap_writes = isinstance(self.fs, LocalFileSystem | MemoryFileSystem)
        self.settle_s = LEASE_SETTLE_LOCAL_S if self.cheap_writes else LEASE_SETTLE_S

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


def _process_gone(doc: Mapping[str, Any]) -> bool:
    """The lease's process ran on this host and is gone (killed): no need to wait for the TTL."""
    pid = doc.get("pid")
    if doc.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (owned by another user)
    return False


# -- the lease ---------------------------------------------------------------------------------------


class _Lease:
    """Who writes an output, renewed by a heartbeat thread; see the module docstring."""

    def __init__(self, store: _Store, path: str, owner: Owner, output: Any) -> None:
        self.store = store
        self.path = path
        self.owner = owner
        self.output = output
        self.token = uuid.uuid4().hex
        self.lost = False
        self.taker: dict[str, Any] | None = None  # the lease as found once lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _doc(self) -> dict[str, Any]:
        return {**asdict(self.owner), "token": self.token, "heartbeat": time.time()}

    def _refuse_if_foreign(self, doc: dict[str, Any] | None) -> None:
        if not doc or doc.get("token") == self.token or self.owner.same_task_instance(doc):
            return
        age = time.time() - float(doc.get("heartbeat") or 0)
        if age > LEASE_TTL_S or _process_gone(doc):
            return  # its task died without releasing it
        raise OutputConflictError(
            f"Another task is writing this output_path right now ({Owner.describe(doc)}; "
            f"heartbeat {max(age, 0):.0f} s ago). Refusing to start so its output stays intact. "
            f"{_template_advice(self.output)}"
        )

    def acquire(self) -> None:
        """Take the lease, or raise :class:`OutputConflictError` naming its live owner."""
        self._refuse_if_foreign(self.store.read_json(self.path))
        self.store.write(self.path, json.dumps(self._doc()).encode())
        time.sleep(self.store.settle_s)
        doc = self.store.read_json(self.path)
        if not doc or doc.get("token") != self.token:
            # Someone wrote after us: the last writer keeps it (if it is a live other task).
            self._refuse_if_foreign(doc)
            self.store.write(self.path, json.dumps(self._doc()).encode())
        self._thread = threading.Thread(target=self._beat, name="pioneer-output-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_HEARTBEAT_S):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.check()
                    self.store.write(self.path, json.dumps(self._doc()).encode())
                except OutputConflictError:
                    return
                except Exception:  # a failed renewal is retried at the next beat
                    continue

    def check(self) -> None:
        """Raise :class:`OutputConflictError` if another task took the lease over."""
        if not self.lost:
            doc = self.store.read_json(self.path)
            if doc is not None and doc.get("token") == self.token:
                return
            self.lost = True
            self.taker = doc
        raise OutputConflictError(
            f"Another task took over this output_path ({Owner.describe(self.taker or {})}) "
            f"while this one was writing it; this task stopped writing. {_template_advice(self.output)}"
        )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * 60)
        with self._lock:
            if not self.lost:
                doc = self.store.read_json(self.path)
                if doc is not None and doc.get("token") == self.token:
                    self.store.remove(self.path)


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
        self.store = _Store(path)
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
        self.lease = _Lease(self.store, f"{self.out}.lease.json", self.owner, path)
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
            f"different request. Refusing to overwrite it. {_template_advice(self.path)} "
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
        self._buffer.append(b"".join(_encode(r) for r in records))
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
                with fs.open(f"{self.parts_dir}/{name}", "rb") as part:
                    while chunk := part.read(_COPY_CHUNK):
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
