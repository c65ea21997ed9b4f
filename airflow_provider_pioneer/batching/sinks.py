"""Where the records go, in input order: the interface, the counts, and the in-memory list.

The resumable JSONL output on any object store is :class:`~airflow_provider_pioneer.batching.file_sink.FileSink`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_pioneer.batching.inputs import Item

__all__ = ["KEEP_ERRORS", "ListSink", "OutputCounts", "Sink", "encode"]

#: Error records kept for the failure message.
KEEP_ERRORS = 5


def encode(record: dict[str, Any]) -> bytes:
    """One output line: compact JSON in UTF-8, ended by a newline."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()


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
                if len(self.first_errors) < KEEP_ERRORS:
                    self.first_errors.append(rec)
            else:
                self.succeeded += 1


class Sink:
    """Receives records in input order."""

    counts: OutputCounts

    def write(self, records: list[dict[str, Any]], tokens: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def skip_done(self, items: Iterator[Item]) -> Iterator[Item]:
        """The inputs still to send: ``items`` past those an earlier attempt's checkpoint covers."""
        return items

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
