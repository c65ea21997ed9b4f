"""Where the texts come from: an in-memory list, or a JSONL file read as a stream.

Both sources yield :class:`Item` one at a time, so a file of a million lines never sits
in memory. Each source also produces a digest of its content (the file's bytes, streamed),
which keys the checkpoint: a checkpoint left by different inputs is never reused.

Both check every input before the first request (the list when it is given, the file in
its counting pass), so nothing that cannot be written back is discovered after it was billed:

* an id that standard JSON in UTF-8 cannot hold (``NaN``/``Infinity``, which Python's
  ``json`` reads, or a lone surrogate such as ``"\\ud83d"``, which JSON's escapes allow)
  refuses the run, naming the line or the position: its record could not carry it;
* a text that is not valid Unicode (a lone surrogate) gets an error record and is not sent;
* ids that repeat are counted (:attr:`Source.duplicate_ids`): allowed, each input still gets
  its own record in input order, but a join on the id downstream will see them twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from airflow_provider_pioneer import safe_json

__all__ = [
    "DUPLICATE_CHECK_LIMIT",
    "FileSource",
    "InputError",
    "Item",
    "ListSource",
    "Source",
    "json_problem",
    "request_fingerprint",
]

_CHUNK = 1 << 20
#: Distinct ids checked for duplicates per run (about 60 MB of hashes); past it the check stops.
DUPLICATE_CHECK_LIMIT = 1_000_000
_SHOWN_DUPLICATES = 3


class InputError(ValueError):
    """The inputs cannot be read (not JSON, wrong shape); the message says where and what to do."""


@dataclass(frozen=True)
class Item:
    """One input text.

    :param index: position in the input (0-based), the output's order.
    :param id: the record's id, or its index when it has none.
    :param text: the text to send, or ``None`` when the record has no usable text.
    :param problem: why the record cannot be sent (becomes an error record without a request).
    """

    index: int
    id: Any
    text: str | None
    problem: str | None = None


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be written as standard JSON in UTF-8, or ``None`` when it can.

    The output is written with ``default=str`` (a datetime id becomes its string), so only
    non-finite numbers and text that is not valid Unicode are problems.
    """
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
        return f"holds {bad!a}, a lone surrogate, which is not valid Unicode"
    except ValueError:
        if _has_non_finite(value):
            return "holds NaN or Infinity, which standard JSON cannot hold"
        return "cannot be written as JSON"  # e.g. a circular structure
    except (TypeError, RecursionError):
        return "cannot be written as JSON"
    return None


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"text is not valid Unicode (a lone surrogate {text[exc.start]!a} at character "
            f"{exc.start}); fix the text, e.g. decode its source with errors='replace'"
        )
    return None


def _item(index: int, value: Any, id_field: str, text_field: str) -> Item:
    if isinstance(value, str):
        return Item(index, index, value, _text_problem(value))
    if isinstance(value, dict):
        ident = value.get(id_field, index)
        text = value.get(text_field)
        if isinstance(text, str):
            return Item(index, ident, text, _text_problem(text))
        return Item(index, ident, None, f"record has no string field {text_field!r}")
    return Item(index, index, None, f"input is a {type(value).__name__}, not a string or a record")


class _InputCheck:
    """Checks each item's id before anything is sent and counts ids seen more than once."""

    def __init__(self, id_field: str) -> None:
        self._id_field = id_field
        self._seen: set[int] = set()
        self.duplicates = 0
        self.first_duplicates: list[Any] = []
        self.complete = True  # False once more distinct ids came than the check keeps

    def add(self, item: Item, where: str) -> None:
        problem = json_problem(item.id)
        if problem:
            raise InputError(
                f"{where}: the id ({self._id_field!r}) {problem}, so its output record could not be "
                f"written. Fix that id (or give every record a string id); nothing was sent."
            )
        ident = item.id
        # Typed, so that the id 1 and the id "1" (different in the output) are not duplicates.
        key = hash(
            ("s", ident) if isinstance(ident, str) else ("j", json.dumps(ident, sort_keys=True, default=str))
        )
        if key in self._seen:
            self.duplicates += 1
            if len(self.first_duplicates) < _SHOWN_DUPLICATES and ident not in self.first_duplicates:
                self.first_duplicates.append(ident)
        elif len(self._seen) < DUPLICATE_CHECK_LIMIT:
            self._seen.add(key)
        else:
            self.complete = False


class Source:
    """A stream of :class:`Item`, with its length, a digest of its content and its duplicate ids.

    :ivar duplicate_ids: inputs whose id an earlier input already had.
    :ivar first_duplicates: a few of those ids, for the log.
    :ivar duplicates_checked_all: ``False`` when more than :data:`DUPLICATE_CHECK_LIMIT`
        distinct ids came and later ones were not checked.
    """

    total: int
    digest: str
    duplicate_ids: int = 0
    first_duplicates: tuple[Any, ...] = ()
    duplicates_checked_all: bool = True

    def items(self) -> Iterator[Item]:  # pragma: no cover - interface
        raise NotImplementedError

    def _keep(self, check: _InputCheck) -> None:
        self.duplicate_ids = check.duplicates
        self.first_duplicates = tuple(check.first_duplicates)
        self.duplicates_checked_all = check.complete


class ListSource(Source):
    """Texts given directly (or through an XComArg): strings, or records with ``id_field``/``text_field``.

    :param texts: the inputs.
    :param id_field: key of the id in a record.
    :param text_field: key of the text in a record.
    """

    def __init__(self, texts: Sequence[Any], id_field: str = "id", text_field: str = "text") -> None:
        if isinstance(texts, Mapping):
            raise InputError("texts is one record (a dict); pass a list of records: texts=[record].")
        if isinstance(texts, str | bytes) or not isinstance(texts, Sequence | Iterable):
            hint = (
                " If it came from a template, pass the XComArg itself (task.output) or set "
                "render_template_as_native_obj=True on the DAG."
                if isinstance(texts, str) and texts.lstrip()[:1] in ("[", "{")
                else " For a single text pass [text]."
            )
            raise InputError(
                f"texts must be a list of strings or of records, not {type(texts).__name__}.{hint}"
            )
        self._texts = texts if isinstance(texts, Sequence) else list(texts)
        self._id_field = id_field
        self._text_field = text_field
        self.total = len(self._texts)
        check = _InputCheck(id_field)
        h = hashlib.sha256(b"list\n")
        for index, value in enumerate(self._texts):
            check.add(_item(index, value, id_field, text_field), f"texts[{index}]")
            # surrogatepass: a text that is not valid Unicode still hashes (it gets an error record).
            doc = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
            h.update(doc.encode("utf-8", "surrogatepass"))
            h.update(b"\n")
        self.digest = h.hexdigest()
        self._keep(check)

    def items(self) -> Iterator[Item]:
        for index, value in enumerate(self._texts):
            yield _item(index, value, self._id_field, self._text_field)


class FileSource(Source):
    """A JSONL file (any ``ObjectStoragePath`` URL), one record or JSON string per line; blank lines skipped.

    Opening the file twice is the price of flat memory: a first streamed pass checks every
    line and id, counts the items (for progress and ETA) and hashes the bytes (for the
    checkpoint); the second pass yields the items.

    :param path: the file, e.g. ``file:///data/in.jsonl`` or ``s3://bucket/in.jsonl``.
    :param id_field: key of the id in a record.
    :param text_field: key of the text in a record.
    """

    def __init__(self, path: Any, id_field: str = "id", text_field: str = "text") -> None:
        self._path = path
        self._id_field = id_field
        self._text_field = text_field
        self.total, self.digest = self._scan()

    def _open(self) -> IO[bytes]:
        try:
            return self._path.open("rb")
        except FileNotFoundError:
            raise InputError(f"input_path {self._path} does not exist.") from None

    @staticmethod
    def _lines(handle: IO[bytes], hasher: Any = None) -> Iterator[tuple[int, bytes]]:
        # Bounded chunks; a partial last line waits for the next chunk.
        rest = b""
        lineno = 0
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            if hasher is not None:
                hasher.update(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                lineno += 1
                yield lineno, line
        if rest:
            yield lineno + 1, rest

    def _values(
        self, handle: IO[bytes], hasher: Any, invalid: Callable[[int], InputError]
    ) -> Iterator[tuple[int, Any]]:
        # The non-blank lines as JSON values; ``invalid(lineno)`` is the error for a line that is not.
        for lineno, line in self._lines(handle, hasher):
            if not line.strip():
                continue
            try:
                value = safe_json.loads(line)
            except ValueError:
                raise invalid(lineno) from None
            yield lineno, value

    def _scan(self) -> tuple[int, str]:
        h = hashlib.sha256(b"jsonl\n")
        check = _InputCheck(self._id_field)
        total = 0
        with self._open() as handle:
            for lineno, value in self._values(handle, h, self._not_json):
                check.add(
                    _item(total, value, self._id_field, self._text_field),
                    f"input_path {self._path}, line {lineno}",
                )
                total += 1
        self._keep(check)
        return total, h.hexdigest()

    def _not_json(self, lineno: int) -> InputError:
        return InputError(
            f"input_path {self._path}, line {lineno}: not valid JSON. Each line must be a JSON "
            "record (or a JSON string)."
        )

    def items(self) -> Iterator[Item]:
        """The records, read a second time; the file must still be the one :attr:`digest` describes.

        :raises InputError: the file changed since it was counted and hashed (the checkpoint is
            keyed by that digest, so an output of other inputs would be filed under it). Raised at
            the latest when the file ends, before the output can be published as complete.
        """
        index = 0
        h = hashlib.sha256(b"jsonl\n")
        with self._open() as handle:
            for _lineno, value in self._values(
                handle, h, lambda lineno: self._changed(f"line {lineno} is no longer valid JSON")
            ):
                if index >= self.total:
                    raise self._changed(f"it now holds more than the {self.total} records it held")
                yield _item(index, value, self._id_field, self._text_field)
                index += 1
        if index != self.total or h.hexdigest() != self.digest:
            raise self._changed(
                f"it now holds {index} records" if index != self.total else "its bytes differ"
            )

    def _changed(self, what: str) -> InputError:
        return InputError(
            f"input_path {self._path} changed while this task read it ({what}), so no output was "
            "published. Let the file be written whole before the task starts (write it elsewhere and "
            "move it into place); an Airflow retry then reads the new file from the start."
        )


def request_fingerprint(source_digest: str, **request: Any) -> str:
    """What was asked, as one hash: the inputs' digest plus model, schema, options and field names."""
    # ASCII escapes: a request holding text that is not valid Unicode still hashes (and is refused later).
    doc = json.dumps({"inputs": source_digest, **request}, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(doc.encode()).hexdigest()
