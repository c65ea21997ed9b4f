"""Where the texts come from: an in-memory list, or a JSONL file read as a stream.

Both sources yield :class:`Item` one at a time, so a file of a million lines never sits
in memory. Each source also produces a digest of its content (the file's bytes, streamed),
which keys the checkpoint: a checkpoint left by different inputs is never reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["FileSource", "InputError", "Item", "ListSource", "Source", "request_fingerprint"]

_CHUNK = 1 << 20


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


def _item(index: int, value: Any, id_field: str, text_field: str) -> Item:
    if isinstance(value, str):
        return Item(index, index, value)
    if isinstance(value, dict):
        ident = value.get(id_field, index)
        text = value.get(text_field)
        if isinstance(text, str):
            return Item(index, ident, text)
        return Item(index, ident, None, f"record has no string field {text_field!r}")
    return Item(index, index, None, f"input is a {type(value).__name__}, not a string or a record")


class Source:
    """A stream of :class:`Item`, with its length and a digest of its content."""

    total: int
    digest: str

    def items(self) -> Iterator[Item]:  # pragma: no cover - interface
        raise NotImplementedError


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
        h = hashlib.sha256(b"list\n")
        for value in self._texts:
            h.update(json.dumps(value, sort_keys=True, default=str, ensure_ascii=False).encode())
            h.update(b"\n")
        self.digest = h.hexdigest()

    def items(self) -> Iterator[Item]:
        for index, value in enumerate(self._texts):
            yield _item(index, value, self._id_field, self._text_field)


class FileSource(Source):
    """A JSONL file (any ``ObjectStoragePath`` URL), one record or JSON string per line; blank lines skipped.

    Opening the file twice is the price of flat memory: a first streamed pass checks every
    line, counts the items (for progress and ETA) and hashes the bytes (for the checkpoint);
    the second pass yields the items.

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

    def _scan(self) -> tuple[int, str]:
        h = hashlib.sha256(b"jsonl\n")
        with self._open() as handle:
            total = sum(self._check(lineno, line) for lineno, line in self._lines(handle, h))
        return total, h.hexdigest()

    def _check(self, lineno: int, line: bytes) -> int:
        if not line.strip():
            return 0
        try:
            json.loads(line)
        except ValueError:
            raise InputError(
                f"input_path {self._path}, line {lineno}: not valid JSON. Each line must be a JSON "
                "record (or a JSON string)."
            ) from None
        return 1

    def items(self) -> Iterator[Item]:
        index = 0
        with self._open() as handle:
            for _, line in self._lines(handle):
                if not line.strip():
                    continue
                yield _item(index, json.loads(line), self._id_field, self._text_field)
                index += 1


def request_fingerprint(source_digest: str, **request: Any) -> str:
    """What was asked, as one hash: the inputs' digest plus model, schema, options and field names."""
    doc = json.dumps({"inputs": source_digest, **request}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()
