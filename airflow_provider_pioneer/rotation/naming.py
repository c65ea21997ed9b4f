"""Pure bookkeeping of key rotation: managed key names, the checks on names, what to revoke.

No Airflow and no HTTP here, so every rule that decides which key lives or dies is
unit-testable on its own. The steps (:mod:`~airflow_provider_pioneer.rotation.steps`) do the calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_pioneer.rotation.document import parse_iso_time

__all__ = [
    "check_key_name_prefix",
    "check_variable_key",
    "created_within",
    "default_key_name_prefix",
    "is_managed",
    "key_birth",
    "key_names",
    "managed_name",
    "orphans",
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


def _name_time(name: str, prefix: str) -> datetime | None:
    if not is_managed(name, prefix):
        return None
    stamp = name[len(prefix) + 1 :]
    return datetime.strptime(stamp, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def key_birth(name: str, prefix: str, created_at: Any = None) -> datetime | None:
    """When a managed key was created: the later of its name's timestamp and Pioneer's ``created_at``.

    The later one, so that clock skew between the worker that named the key and Pioneer can only
    make a key look younger than it is (kept longer), never older (revoked too early).
    """
    times = [t for t in (_name_time(name, prefix), parse_iso_time(created_at)) if t is not None]
    return max(times) if times else None


def orphans(
    records: Any,
    prefix: str,
    keep: set[str],
    *,
    now: datetime,
    grace: timedelta,
    before: datetime | None = None,
) -> list[str]:
    """Managed keys alive on the account that nobody holds (a create whose response was lost).

    A young key may be a concurrent rotation's, created and not yet stored: it is an orphan only
    once older than ``grace`` (a run that took longer than half of it to store its key discards it
    instead), and created before ``before`` (the key the Variable holds), when that is known.

    :param records: the ``GET /list-api-keys`` answer.
    :param prefix: the managed-key prefix.
    :param keep: names never revoked (the stored key, the new key, names pending anyway).
    :param now: the current time (UTC).
    :param grace: the youngest age at which an unstored managed key counts as an orphan.
    :param before: only keys created before this moment.
    """
    found: list[str] = []
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            continue
        name = record["name"]
        if name in keep or name in found or not is_managed(name, prefix):
            continue
        born = key_birth(name, prefix, record.get("created_at"))
        if born is None or now - born < grace or (before is not None and born >= before):
            continue
        found.append(name)
    return found


def created_within(
    records: Any, remembered: Iterable[str], prefix: str, *, now: datetime, window: timedelta
) -> list[str]:
    """Managed keys created in the last ``window``: alive ones (listed) and remembered ones.

    ``GET /list-api-keys`` lists only live keys, so the keys earlier rotations created and then
    revoked are remembered in the Variable's document (``created_recently``).
    """
    names: dict[str, datetime | None] = {}
    for record in records if isinstance(records, list) else []:
        if (
            isinstance(record, dict)
            and isinstance(record.get("name"), str)
            and is_managed(record["name"], prefix)
        ):
            names[record["name"]] = key_birth(record["name"], prefix, record.get("created_at"))
    for name in (n for n in remembered if is_managed(n, prefix)):
        names.setdefault(name, key_birth(name, prefix))
    return sorted(n for n, born in names.items() if born is not None and now - born < window)
