"""Pure bookkeeping of key rotation: the stored document, managed key names, what to revoke.

No Airflow and no HTTP here, so every rule that decides which key lives or dies is
unit-testable on its own. :mod:`~airflow_provider_pioneer.operators.key_rotation` does the calls.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from airflow_provider_pioneer.stored_key import StoredKey, build_document, parse_stored

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
_NOT_PREFIX_CHARS_RE = re.compile(r"[^A-Za-z0-9_.-]+")


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
            "starting with a letter or digit (e.g. 'airflow-pioneer_api_key')."
        )


def default_key_name_prefix(variable_key: str) -> str:
    """The prefix when none is given: one per Variable, e.g. ``airflow-pioneer_api_key``.

    The orphan sweep revokes every live ``{prefix}-{timestamp}`` key that is not stored, so two
    rotations sharing a prefix on one account would revoke each other's current key. Deriving it
    from the Variable's name (kept as it is, so distinct names give distinct prefixes) keeps two
    Variables apart; ``is_managed`` matches the whole name, so ``airflow-pioneer_api_key_staging-...``
    is not ours either. Two deployments that use the same Variable name on one account (staging and
    prod, say) must still set distinct prefixes.
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


def key_names(records: Any) -> list[str]:
    """The names in a ``GET /list-api-keys`` answer (records without one are skipped)."""
    if not isinstance(records, list):
        return []
    return [str(r["name"]) for r in records if isinstance(r, dict) and r.get("name")]


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
