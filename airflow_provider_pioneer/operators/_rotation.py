"""Pure bookkeeping of key rotation: the stored document, managed key names, what to revoke.

No Airflow and no HTTP here, so every rule that decides which key lives or dies is
unit-testable on its own. :mod:`~airflow_provider_pioneer.operators.key_rotation` does the calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "StoredKey",
    "build_document",
    "check_key_name_prefix",
    "check_variable_key",
    "default_key_name_prefix",
    "is_managed",
    "key_names",
    "managed_name",
    "orphans",
    "parse_stored",
    "still_pending",
]

# Microseconds and a fixed width: names sort by creation time and two runs never collide.
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_TIMESTAMP_RE = r"\d{8}T\d{12}Z"
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NOT_PREFIX_CHARS_RE = re.compile(r"[^A-Za-z0-9.-]+")


def check_variable_key(variable_key: str) -> None:
    """Airflow masks a Variable's value only when its name looks sensitive; insist on ``api_key``.

    :raises ValueError: naming what to do.
    """
    if not isinstance(variable_key, str) or "api_key" not in variable_key.lower():
        raise ValueError(
            f"variable_key {variable_key!r} must contain 'api_key' (e.g. 'pioneer_api_key') so that "
            "Airflow masks the Variable's value in logs and the UI."
        )


def check_key_name_prefix(prefix: str) -> None:
    """A prefix that makes managed names recognisable and safe to match.

    :raises ValueError: naming what to do.
    """
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"key_name_prefix {prefix!r} must be non-empty letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (e.g. 'airflow-pioneer-api-key')."
        )


def default_key_name_prefix(variable_key: str) -> str:
    """The prefix when none is given: one per Variable, e.g. ``airflow-pioneer-api-key``.

    The orphan sweep revokes every live ``{prefix}-{timestamp}`` key that is not stored, so two
    rotations sharing a prefix on one account (two Variables, or staging and prod) would revoke
    each other's current key. Deriving it from the Variable keeps them apart; ``is_managed``
    matches the whole name, so ``airflow-pioneer-api-key-staging-...`` is not ours either.
    """
    return "airflow-" + _NOT_PREFIX_CHARS_RE.sub("-", variable_key).strip("-")


def managed_name(prefix: str, now: datetime | None = None) -> str:
    """``{prefix}-{UTC timestamp}``, e.g. ``airflow-pioneer-20250101T020304123456Z``."""
    return f"{prefix}-{(now or datetime.now(UTC)).astimezone(UTC).strftime(_TIMESTAMP_FORMAT)}"


def is_managed(name: str, prefix: str) -> bool:
    """Whether ``name`` is one this rotation (with this prefix) created.

    The whole name must match ``{prefix}-{timestamp}``: a plain ``startswith`` would also claim
    the keys of another team whose prefix merely extends ours (``airflow-pioneer-staging-...``).
    """
    return re.fullmatch(re.escape(prefix) + "-" + _TIMESTAMP_RE, name) is not None


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


def key_names(records: Any) -> list[str]:
    """The names in a ``GET /list-api-keys`` answer (records without one are skipped)."""
    if not isinstance(records, list):
        return []
    return [str(r["name"]) for r in records if isinstance(r, dict) and r.get("name")]


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


def still_pending(
    old_name: str | None, stored_pending: tuple[str, ...], live_names: set[str], new_name: str
) -> list[str]:
    """Names to revoke once the new key is stored: the old key, then what earlier runs left behind.

    Names no longer alive are done already (a crash after their revocation) and drop out.
    """
    names = ([old_name] if old_name else []) + [n for n in stored_pending if n in live_names]
    return [n for n in dict.fromkeys(names) if n != new_name]


def orphans(live_names: list[str], prefix: str, keep: set[str]) -> list[str]:
    """Managed keys alive on the account that nobody holds (a create whose response was lost)."""
    return [n for n in dict.fromkeys(live_names) if is_managed(n, prefix) and n not in keep]
