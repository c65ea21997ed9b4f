"""The key rotation's stored document: ``{"api_key", "name", "created_at", "pending_revoke", ...}``.

What every key store holds (the Airflow Variable's value, a secret's string). One reader for both
sides of it: the hook (which only needs the key) and the rotation (which also keeps its
bookkeeping there). A plain key string is accepted too. A value that is neither
(malformed JSON, a document without a key, Airflow's masked ``***`` placeholder saved back from
the UI) is reported as a ``problem`` with a message that says how to recover, never silently
skipped: falling back to the connection's password then would send a key that may be revoked.
Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from airflow_provider_pioneer import safe_json

__all__ = [
    "Problem",
    "StoredKey",
    "build_document",
    "is_masked_placeholder",
    "parse_iso_time",
    "parse_stored",
    "problem_message",
]

#: Why a present value holds no usable key.
Problem = Literal["malformed", "not_a_document", "masked"]


@dataclass(frozen=True)
class StoredKey:
    """What the Variable holds: the rotation document, a plain key, or nothing.

    :param present: whether the Variable exists at all.
    :param api_key: the key in it (never shown in the repr).
    :param name: the key's Pioneer-side name, when the rotation document says.
    :param created_at: when Pioneer created it, when the document says.
    :param pending_revoke: names an earlier run meant to revoke and may not have.
    :param created_recently: names of keys the rotation created lately (its creation budget).
    :param raw: the value exactly as read (to restore it); never shown in the repr.
    :param problem: why a present value holds no usable key (``None`` when it does, or is absent).
    :param version: the store's own id of this value, opaque to the rotation (a secret's version
        id, for a compare-and-set promotion); ``None`` for a store without versions (the Variable).
    """

    present: bool = False
    api_key: str | None = field(default=None, repr=False)
    name: str | None = None
    created_at: str | None = None
    pending_revoke: tuple[str, ...] = ()
    created_recently: tuple[str, ...] = ()
    raw: str | None = field(default=None, repr=False)
    problem: Problem | None = None
    version: str | None = None


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(v for v in value if isinstance(v, str) and v))


def is_masked_placeholder(value: str) -> bool:
    """Whether ``value`` is Airflow's mask (``***``) rather than a key: only asterisks."""
    text = value.strip()
    return bool(text) and set(text) == {"*"}


def parse_stored(value: Any) -> StoredKey:
    """Read the Variable's value: the JSON document of a rotation, or a plain key string."""
    if value is None:
        return StoredKey()
    raw = value if isinstance(value, str) else json.dumps(value)
    doc = value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return StoredKey(present=True, raw=raw, problem="not_a_document")
        if is_masked_placeholder(text):
            return StoredKey(present=True, raw=raw, problem="masked")
        if not text.startswith(("{", "[")):
            return StoredKey(present=True, api_key=text, raw=raw)
        try:
            doc = safe_json.loads(text)
        except ValueError:
            # It starts like JSON (the rotation's document): a broken one, never a key.
            return StoredKey(present=True, raw=raw, problem="malformed")
    if not isinstance(doc, dict):
        return StoredKey(present=True, raw=raw, problem="not_a_document")
    key = doc.get("api_key")
    name = doc.get("name")
    created_at = doc.get("created_at")
    fields: dict[str, Any] = {
        "present": True,
        "name": name if isinstance(name, str) and name else None,
        "created_at": str(created_at) if created_at else None,
        "pending_revoke": _names(doc.get("pending_revoke")),
        "created_recently": _names(doc.get("created_recently")),
        "raw": raw,
    }
    if isinstance(key, str) and is_masked_placeholder(key):
        return StoredKey(**fields, problem="masked")
    if not (isinstance(key, str) and key.strip()):
        return StoredKey(**fields, problem="not_a_document")
    return StoredKey(**fields, api_key=key.strip())


def problem_message(
    variable: str, stored: StoredKey, lost_name: str | None = None, info_variable: str | None = None
) -> str | None:
    """What is wrong with the Variable and how to fix it, or ``None`` when it is usable (or absent).

    :param variable: the Variable's name, quoted in the message.
    :param stored: what :func:`parse_stored` read from it.
    :param lost_name: the lost key's name, as the rotation's unmasked companion Variable records it
        (the masked document's own ``name`` is ``***`` too, when saved from the UI).
    :param info_variable: that companion Variable's name (see :mod:`~airflow_provider_pioneer.rotation.companion`).
    """
    if stored.problem == "masked":
        name = lost_name or (stored.name if stored.name and not is_masked_placeholder(stored.name) else None)
        if name:
            where = f" (recorded in Variable {info_variable!r})" if lost_name and info_variable else ""
            lost = f" The lost key is named {name!r}{where}; it is still alive on Pioneer."
        else:
            lost = " Its name on Pioneer is not known here" + (
                f" (Variable {info_variable!r}, which records it, is not set)." if info_variable else "."
            )
        return (
            f"Variable {variable!r} holds Airflow's masked placeholder '***' instead of an API key: it was "
            "saved from the UI's edit dialog, which shows every value of a Variable whose name contains "
            f"'api_key' as '***' (the key, and its name and dates too), so the stored key is lost.{lost} "
            f"To recover: set Variable {variable!r} to a working key, as "
            '{"api_key": "<key>", "name": "<its name in Pioneer>"} (create one in the Pioneer console '
            "and note its name, if none is at hand), typing the whole value: no '***' may stay in it. Or "
            "delete the Variable, but only if the connection's own API key was never revoked (the first "
            "rotation revokes it). Then run the key "
            "rotation: it stores a fresh key and revokes the key you set; a lost key named by the "
            "rotation (its key_name_prefix) is revoked as an orphan once older than orphan_grace_period, "
            "any other must be revoked in the Pioneer console."
        )
    if stored.problem == "malformed":
        return (
            f"Variable {variable!r} holds malformed JSON: it starts like the key rotation's document "
            '({"api_key": ..., "name": ...}) but does not parse, so it holds no usable API key. Set it to '
            'a working key, as {"api_key": "<key>", "name": "<its name in Pioneer>"} (or delete it '
            "to use the connection's API key); the next key rotation rewrites it."
        )
    if stored.problem == "not_a_document":
        return (
            f"Variable {variable!r} holds no API key: it is neither a plain key nor the key rotation's "
            'JSON document with a non-empty "api_key". Set it to a working key, or delete it to use the '
            "connection's API key."
        )
    return None


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


def parse_iso_time(value: Any) -> datetime | None:
    """A stored ``created_at`` (ISO 8601, ``Z`` allowed; naive means UTC), or ``None`` if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
