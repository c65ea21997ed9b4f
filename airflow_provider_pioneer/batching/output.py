"""Where the records go, in input order: a list (small runs) or a JSONL file with a checkpoint.

The file is written to ``<output_path>.partial`` and renamed to ``output_path`` only once
every record is in it, so a crash never leaves a file that looks complete. Beside it,
``<output_path>.checkpoint.json`` says which request the records answer (a fingerprint),
how many are written and up to which byte. The checkpoint is replaced (write + rename)
after each batch, *after* the batch's bytes are flushed: a kill between the two leaves
bytes past the checkpoint's offset, which the next attempt cuts off. Resuming therefore
re-sends at most the batches that were in flight or waiting to be written.

Local paths (plain or ``file://``) resume mid-run. Other object stores cannot append or
truncate, so there a run restarts from the first item unless the output is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FileSink", "ListSink", "OutputCounts", "Sink"]

CHECKPOINT_VERSION = 1
_KEEP_ERRORS = 5


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


class FileSink(Sink):
    """Ordered JSONL output with a checkpoint; see the module docstring.

    :param path: the final output, an ``ObjectStoragePath``.
    :param fingerprint: hash of what was asked (inputs, model, schema, options).
    :param total: number of inputs (a complete checkpoint must cover exactly these).
    """

    def __init__(self, path: Any, fingerprint: str, total: int) -> None:
        self.path = path
        self.partial = path.parent / f"{path.name}.partial"
        self.checkpoint = path.parent / f"{path.name}.checkpoint.json"
        self.fingerprint = fingerprint
        self.total = total
        self.local = path.protocol in ("", "file", "local")
        self.counts = OutputCounts()
        #: Records found done by an earlier attempt (skipped this time).
        self.resumed = 0
        #: The output was already complete for this very request: nothing to do.
        self.already_complete = False
        self._offset = 0
        self._handle: Any = None
        self._open()

    # -- start: complete, resume, or fresh -------------------------------------------------------

    def _read_checkpoint(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.checkpoint.read_text())
        except (FileNotFoundError, ValueError, OSError):
            return None
        ok = (
            isinstance(doc, dict)
            and doc.get("version") == CHECKPOINT_VERSION
            and doc.get("fingerprint") == self.fingerprint
        )
        return doc if ok else None

    def _size(self, p: Any) -> int | None:
        try:
            return int(p.stat().st_size) if p.exists() else None
        except (OSError, AttributeError, KeyError):
            return None

    def _restore(self, doc: dict[str, Any]) -> None:
        self.counts = OutputCounts(
            records=int(doc["records"]),
            succeeded=int(doc["succeeded"]),
            failed=int(doc["failed"]),
            token_usage=int(doc["token_usage"]),
            first_errors=list(doc.get("first_errors", [])),
        )
        self._offset = int(doc["offset"])
        self.resumed = self.counts.records

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = self._read_checkpoint()
        # "complete" may be missing if a kill fell between the rename and the last checkpoint write.
        if (
            doc
            and doc.get("records") == self.total
            and self._size(self.partial) is None
            and self._size(self.path) == int(doc["offset"])
        ):
            self._restore(doc)
            self.already_complete = True
            return
        if doc and not doc.get("complete") and self.local:
            size = self._size(self.partial)
            if size is not None and size >= int(doc["offset"]):
                self._restore(doc)
                self._handle = open(self.partial.path, "r+b")  # noqa: SIM115 - closed in close()
                self._handle.truncate(self._offset)  # drop bytes written after the last checkpoint
                self._handle.seek(self._offset)
                return
        # Fresh start: a stale checkpoint (other inputs or options) must not survive a crash of this run.
        self._remove(self.checkpoint)
        if self.local:
            self._handle = open(self.partial.path, "wb")  # noqa: SIM115 - closed in close()
        else:
            self._handle = self.partial.open("wb")

    @staticmethod
    def _remove(p: Any) -> None:
        try:
            if p.exists():
                p.unlink()
        except (FileNotFoundError, OSError):
            pass

    # -- writing ---------------------------------------------------------------------------------

    def write(self, records: list[dict[str, Any]], tokens: int) -> None:
        data = b"".join(_encode(r) for r in records)
        self._handle.write(data)
        self._offset += len(data)
        self.counts.add(records, tokens)
        if self.local:
            self._handle.flush()  # bytes reach the OS before the checkpoint claims them
            self._save(complete=False)

    def _save(self, complete: bool) -> None:
        doc = {"version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint, "complete": complete,
               "offset": self._offset, "total": self.total, **asdict(self.counts)}  # fmt: skip
        text = json.dumps(doc, default=str)
        if self.local:
            tmp = f"{self.checkpoint.path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.checkpoint.path)
        else:
            self.checkpoint.write_text(text)

    def close(self, complete: bool) -> None:
        """Flush; when ``complete``, move the partial file into place and mark the checkpoint complete."""
        if self.already_complete or self._handle is None:
            return
        self._handle.close()
        self._handle = None
        if complete:
            if self.local:
                os.replace(self.partial.path, self.path.path)
            else:
                self._remove(self.path)
                self.partial.rename(self.path)
            self._save(complete=True)
        elif self.local:
            self._save(complete=False)
