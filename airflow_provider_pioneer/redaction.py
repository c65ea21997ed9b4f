"""Remove API keys, and every fragment of one, from text before it is shown anywhere.

Airflow's masker replaces a registered secret only where it appears whole. A server that
echoes the key inside a long error body, cut to length for a message, leaves most of the
key behind the cut's edge; a server that echoes only part of it never shows it whole. So
this redactor replaces every run of text that shares :data:`FRAGMENT` or more consecutive
characters with a known key, and callers redact *before* they cut, summarise or log.
Standard library only (the hook imports it at DAG parse time).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["FRAGMENT", "MASK", "Redactor"]

#: Shortest piece of a key that is treated as the key (shorter runs are ordinary text).
FRAGMENT = 8
MASK = "***"


class Redactor:
    """Knows the keys in use and scrubs them, whole or in pieces, from any text. Thread-safe.

    :param secrets: keys to scrub from the start.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        self._grams: tuple[str, ...] = ()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Scrub ``secret`` from now on (idempotent)."""
        if not secret:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.append(secret)
            grams = {secret[i : i + FRAGMENT] for i in range(max(0, len(secret) - FRAGMENT + 1))}
            self._grams = tuple(sorted(set(self._grams) | grams))

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self.redact(text) != text

    def redact(self, text: str) -> str:
        """``text`` with each run covered by a key (or an 8+ character piece of one) replaced by ``***``."""
        if not text:
            return text
        with self._lock:
            secrets, grams = list(self._secrets), self._grams
        for secret in secrets:
            if len(secret) < FRAGMENT and secret in text:  # too short for fragments: whole only
                text = text.replace(secret, MASK)
        if not grams or len(text) < FRAGMENT:
            return text
        # str.find scans in C: one pass per piece of the key is far cheaper than a Python loop
        # over every position of a long body.
        hits: list[int] = []
        for gram in grams:
            at = text.find(gram)
            while at != -1:
                hits.append(at)
                at = text.find(gram, at + 1)
        if not hits:
            return text
        spans: list[tuple[int, int]] = []
        for start in sorted(hits):
            end = start + FRAGMENT
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for start, end in spans:
            out.append(text[last:start])
            out.append(MASK)
            last = end
        out.append(text[last:])
        return "".join(out)
