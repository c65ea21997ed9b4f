"""``json.loads`` whose every failure is a ``ValueError``.

A document nested deeper than Python's recursion limit (``[[[[...`` a few thousand times, a few
KB from a hostile server, a broken input line or a tampered Variable) makes ``json.loads`` raise
``RecursionError``, which the ``except ValueError`` around every parse in this provider would let
through as a raw traceback. Every parse goes through :func:`loads`, so each keeps its one clear
error path. Standard library only (imported at DAG parse time).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes | bytearray) -> Any:
    """Parse a JSON document; ``ValueError`` for anything that is not one, however it fails."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None
