"""The checkpoint's parts: how they are named, and how a resume checks each one before trusting it.

A part's name carries what a resume must check it against, so the manifest stays the same
size however long the run (it is rewritten after every part)::

    part-00007-<attempt>-<records>r-<tokens>t-<digest>.jsonl

``digest`` is the first 32 hex digits of the SHA-256 of the part's bytes. The manifest names
the parts by number and attempt (``attempts``); a part is found in one listing by that prefix,
never by the listing's order.

A resume reads every listed part once (streamed, flat memory) and trusts it only when its bytes
still hash to the digest in its name, hold exactly ``records`` lines, end with a newline, and
every line it parses is a record with an ``id``; the first and last ids are then checked against
the inputs at the part's position (:meth:`FileSink.skip_done`). The counts a resume reports are
derived from the parts that passed (records and failures from their bytes, tokens from their
names), never taken from the manifest's totals.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer.batching.sinks import KEEP_ERRORS
from airflow_provider_pioneer.batching.store import Store

__all__ = [
    "PartCheck",
    "digest_of",
    "expected",
    "find_parts",
    "hexdigest",
    "part_name",
    "part_prefixes",
    "scan",
]

_DIGEST_HEX = 32
_NAME = re.compile(r"^part-(\d+)-([0-9a-f]+)-(\d+)r-(\d+)t-([0-9a-f]{32})\.jsonl$")
_ERROR_KEY = b'"error":'


def digest_of(data: bytes) -> str:
    """The digest a part's name carries."""
    return hexdigest(hashlib.sha256(data))


def hexdigest(hasher: Any) -> str:
    """The digest a part's name carries, of the bytes fed to a ``hashlib.sha256()``."""
    return str(hasher.hexdigest()[:_DIGEST_HEX])


def part_name(number: int, attempt: str, records: int, tokens: int, digest: str) -> str:
    """The object name of part ``number`` written by ``attempt`` (see the module docstring)."""
    return f"part-{number:05d}-{attempt}-{records}r-{tokens}t-{digest}.jsonl"


def part_prefixes(manifest: Mapping[str, Any]) -> list[tuple[int, str]]:
    """``(number, attempt)`` of each of a manifest's parts, in order.

    :raises KeyError, TypeError, ValueError: the manifest's ``parts`` or ``attempts`` are malformed.
    """
    attempts = [(int(first), str(attempt)) for first, attempt in manifest["attempts"]]
    if int(manifest["parts"]) and (not attempts or attempts[0][0] != 0):
        raise ValueError("the first attempt does not start at part 0")
    prefixes, current = [], 0
    for number in range(int(manifest["parts"])):
        while current + 1 < len(attempts) and attempts[current + 1][0] <= number:
            current += 1
        prefixes.append((number, attempts[current][1]))
    return prefixes


def find_parts(manifest: Mapping[str, Any], listed: Iterable[str]) -> list[str | None]:
    """The object name of each of the manifest's parts among ``listed`` names (``None``: not found).

    Found by number and attempt, not by the listing's order; a part of another attempt or a
    number past the manifest's (a kill between a part and its manifest) is not one of them.
    """
    by_prefix: dict[tuple[int, str], str] = {}
    for name in listed:
        m = _NAME.match(name)
        if m:
            by_prefix[(int(m[1]), m[2])] = name
    return [by_prefix.get(prefix) for prefix in part_prefixes(manifest)]


@dataclass
class PartCheck:
    """One part as read back from the store, or why it cannot be trusted (``problem``).

    :param name: the part's object name.
    :param start: the input index of its first record.
    """

    name: str
    start: int
    records: int = 0
    tokens: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    first_id: Any = None
    last_id: Any = None
    problem: str | None = None


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        rec = safe_json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and "id" in rec else None


def expected(name: str) -> tuple[int, int, str] | None:
    """``(records, tokens, digest)`` that part ``name`` was written with (``None``: not a part name)."""
    m = _NAME.match(name)
    return (int(m[3]), int(m[4]), m[5]) if m else None


def scan(store: Store, path: str, *, records: int, digest: str, start: int = 0) -> PartCheck:
    """Read ``path`` whole and check it holds ``records`` lines hashing to ``digest``; see the module docstring.

    :param start: the input index its first record must have (for the caller's id check).
    """
    check = PartCheck(path.rsplit("/", 1)[-1], start)
    want_records, want_digest = records, digest
    hasher = hashlib.sha256()
    lines, carry, last, first = 0, b"", b"", None
    try:
        for chunk in store.chunks(path):
            hasher.update(chunk)
            check.size += len(chunk)
            lines += chunk.count(b"\n")
            buffer = carry + chunk
            pieces = buffer.split(b"\n")
            carry = pieces.pop()  # the unfinished line (b"" when the chunk ends with a newline)
            if pieces:
                first = pieces[0] if first is None else first
                last = pieces[-1]
            if _ERROR_KEY in buffer:  # only error records are parsed: a resume stays cheap
                for line in pieces:
                    if _ERROR_KEY in line:
                        rec = _record(line)
                        if rec is not None and "error" in rec:
                            check.failed += 1
                            if len(check.errors) < KEEP_ERRORS:
                                check.errors.append(rec)
    except FileNotFoundError:
        check.problem = "is missing"
        return check
    check.records = lines
    first_rec, last_rec = _record(first or b""), _record(last)
    if carry:
        check.problem = "ends in a truncated line"
    elif lines != want_records:
        check.problem = f"holds {lines} records, not the {want_records} it was written with"
    elif hexdigest(hasher) != want_digest:
        check.problem = "does not hash to the digest it was written with (its bytes changed)"
    elif lines and (first_rec is None or last_rec is None):
        check.problem = "does not start and end with output records"
    elif first_rec is not None and last_rec is not None:
        check.first_id, check.last_id = first_rec["id"], last_rec["id"]
    return check


def parts_before(n: int) -> str:
    """``the 3 parts`` (for the messages of a resume)."""
    return "the part" if n == 1 else f"the {n} parts" if n else "no part"


def verified_prefix(
    store: Store, folder: str, manifest: Mapping[str, Any], total: int, distrust: Callable[[str, str], None]
) -> list[PartCheck]:
    """The longest run of the manifest's parts, from the first, that each read back as written.

    :param folder: ``<output_path>.parts``.
    :param total: the number of inputs (no part may hold records past the last).
    :param distrust: told ``(what does not add up, what is done about it)``.
    """
    listed = store.sizes(folder)
    try:
        names = find_parts(manifest, listed)
    except (KeyError, TypeError, ValueError):
        distrust("its list of parts is malformed", "Starting afresh.")
        return []
    good: list[PartCheck] = []
    start = 0
    for number, name in enumerate(names):
        want = expected(name) if name else None
        found = None
        if name is None or want is None:
            problem: str | None = f"part {number} is missing"
        elif want[0] < 1:
            problem = f"part {number} ({name}) holds no records (this provider never writes such a part)"
        elif start + want[0] > total:
            problem = f"part {number} ({name}) holds records past the last of the {total} inputs"
        else:
            found = scan(store, f"{folder}/{name}", records=want[0], digest=want[2], start=start)
            found.tokens = want[1]
            problem = f"part {number} ({name}) {found.problem}" if found.problem else None
        if problem or found is None:
            distrust(
                problem or f"part {number} is missing",
                f"Keeping {parts_before(number)} before it ({start} records); the rest is sent again.",
            )
            break
        good.append(found)
        start += found.records
    claimed = manifest.get("records")
    if len(good) == len(names) and claimed != start:
        distrust(
            f"the manifest counts {claimed!r} records, its parts hold {start}",
            f"Resuming after the {start} records the parts hold.",
        )
    return good
