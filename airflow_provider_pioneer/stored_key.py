"""The key rotation's Variable document: ``{"api_key", "name", "created_at", "pending_revoke", ...}``.

One reader for both sides of it: the hook (which only needs the key) and the rotation (which
also keeps its bookkeeping there). A plain key string is accepted too. Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StoredKey", "build_document", "parse_stored"]


@dataclass(frozen=True)
class StoredKey:
    """What the Variable holds: the rotation document, a plain key, or nothing.

    :param present: whether the Variable exists at all.
    :param api_key: the key in it (never shown in the repr).
    :param name: the key's Pioneer-side name, when the rotation document says.
    :param created_at: when Pioneer created it, when the document says.
    :param pending_revoke: names an earlier run meant to revoke and may not have.
    :param raw: the value exactly as read (to restore it); never shown in the repr.
    """

    present: bool = False
    api_key: str | None = field(default=None, repr=False)
    name: str | None = None
    created_at: str | None = None
    pending_revoke: tuple[str, ...] = ()
    raw: str | None = field(default=None, repr=False)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(v for v in value if isinstance(v, str) and v))


def parse_stored(value: Any) -> StoredKey:
    """Read the Variable's value: the JSON document of a rotation, or a plain key string."""
    if value is None:
        return StoredKey()
    raw = value if isinstance(value, str) else json.dumps(value)
    doc = value
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            return StoredKey(present=True, api_key=text or None, raw=raw)
        try:
            doc = json.loads(text)
        except ValueError:
            return StoredKey(present=True, raw=raw)
    if not isinstance(doc, dict):
        return StoredKey(present=True, raw=raw)
    key = doc.get("api_key")
    name = doc.get("name")
    created_at = doc.get("created_at")
    return StoredKey(
        present=True,
        api_key=key if isinstance(key, str) and key else None,
        name=name if isinstance(name, str) and name else None,
        created_at=str(created_at) if created_at else None,
        pending_revoke=_names(doc.get("pending_revoke")),
        raw=raw,
    )


def build_document(
    api_key: str, name: str, created_at: str | None, pending_revoke: list[str], **extra: Any
) -> str:
    """The Variable's value: ``{"api_key", "name", "created_at", "pending_revoke", ...}`` as JSON."""
    doc: dict[str, Any] = {
        "api_key": api_key,
        "name": name,
        "created_at": created_at,
        "pending_revoke": list(dict.fromkeys(pending_revoke)),
    }
    doc.update(extra)
    return json.dumps(doc)
