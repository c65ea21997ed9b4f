"""Where the records go, in input order: a list (small runs) or JSONL on any object store, resumable.

The pieces live in one module each: :mod:`.store` (the few store operations), :mod:`.lease`
(who writes), :mod:`.sinks` (the counts and the in-memory list), :mod:`.checkpoint` (how parts
are named and checked on resume) and :mod:`.file_sink` (parts, manifest, publishing). This module keeps the design in one place and re-exports their names,
the import path the operator, the tests and users use.

One design for every ``ObjectStoragePath`` store (``file://``, ``s3://``, ``gs://``, ``memory://``
...), using only what every store can do: write a whole object, read it, list a folder, delete.
Nothing is appended to or truncated in place. Beside ``output_path`` (``<out>``):

``<out>.parts/part-00000-<attempt>-<records>r-<tokens>t-<digest>.jsonl`` ...
    the records, in input order, in numbered parts; the name carries what the part was written
    with (record count, tokens billed, a SHA-256 digest of its bytes). A part is written whole, once: after every
    batch on a local disk (cheap), every ``part_batches`` batches (default 4) or ``part_seconds``
    (1 s) on an object store, whichever comes first. Memory stays flat, and a killed task loses
    at most that much finished work besides the batches in flight.
``<out>.manifest.json``
    rewritten after each part is durably written: the request's fingerprint, how many parts
    there are and their total size, the attempts that wrote them (which names the parts), the
    counts, and which task wrote it. Its size does not grow with the run. A part that a kill
    left out of the manifest is ignored. A retry trusts none of it unchecked: it finds each
    listed part (by number and attempt, never by listing order), reads it whole and checks its
    digest, record count and that it ends with a whole line; it checks the first and last ids of
    each part against the inputs at its place; and it derives the counts from the parts that
    pass, not from the manifest's totals. The parts before the first that fails are kept (not
    billed again), the rest is sent again (a warning says which part and why).
``<out>``
    the result, one JSONL file, published when every input has its record: the parts are
    streamed into it (flat memory; locally into a temporary file renamed into place, on an
    object store as one upload that appears only when complete), each checked again against its
    digest and the records counted against the inputs' total (else nothing is published:
    :class:`CheckpointError`, retryable), then the manifest is marked ``complete`` with the
    output's size and digest (last), then the parts are deleted. A rerun takes the output as
    complete only if it still has that size, digest and one line per input.
``<out>.lease.json``
    who is writing: dag, task, run, map index, try, host, pid and a heartbeat renewed every
    ``LEASE_HEARTBEAT_S`` seconds. A task that finds a live lease of another task instance fails
    at once, without touching the output. A lease is taken over when it is stale (no heartbeat
    for ``LEASE_TTL_S``: its task died), when its process is gone from this very host, or when
    it belongs to an earlier try of the same task instance (that is the resume case). A lease
    whose heartbeat is not a time (not written by this provider) proves no owner: taken over.

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

from airflow_provider_pioneer.batching.file_sink import (
    MANIFEST_VERSION,
    CheckpointError,
    FileSink,
    part_names,
)
from airflow_provider_pioneer.batching.lease import (
    LEASE_HEARTBEAT_S,
    LEASE_SETTLE_LOCAL_S,
    LEASE_SETTLE_S,
    LEASE_TTL_S,
    OutputConflictError,
    Owner,
)
from airflow_provider_pioneer.batching.sinks import ListSink, OutputCounts, Sink

__all__ = [
    "LEASE_HEARTBEAT_S",
    "LEASE_SETTLE_LOCAL_S",
    "LEASE_SETTLE_S",
    "LEASE_TTL_S",
    "MANIFEST_VERSION",
    "CheckpointError",
    "FileSink",
    "ListSink",
    "OutputConflictError",
    "OutputCounts",
    "Owner",
    "Sink",
    "part_names",
]
