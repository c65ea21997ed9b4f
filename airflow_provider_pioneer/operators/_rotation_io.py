"""The key rotation's Variable reads and writes (Airflow's Variable API; no HTTP here).

The key Variable is the one source of truth; the companion Variable
(:mod:`~airflow_provider_pioneer.key_info`) only tells a human, and the recovery advice, which key
it holds, under a name Airflow does not mask. A failed companion write never fails a rotation.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Variable
from airflow.sdk.log import mask_secret

from airflow_provider_pioneer.key_info import build_info, info_variable_name
from airflow_provider_pioneer.stored_key import StoredKey, parse_stored

__all__ = ["read_stored", "restore", "write_info"]


def read_stored(variable_key: str, log: logging.Logger | Any) -> StoredKey:
    """The Variable now, past Airflow's secrets cache; the key in it is masked at once."""
    try:
        from airflow.sdk.execution_time.cache import SecretCache

        SecretCache.invalidate_variable(variable_key)
    except Exception:  # the cache is an optimisation; a stale read is caught by the checks
        log.debug("Could not invalidate the cached Variable %r.", variable_key)
    stored = parse_stored(Variable.get(variable_key, default=None))
    if stored.api_key:
        mask_secret(stored.api_key)
    return stored


def restore(variable_key: str, before: StoredKey) -> tuple[bool, str]:
    """Put back what readers saw before the write; ``(done, how it went)``.

    Ideally the metastore's own earlier value; but a task cannot read the metastore behind a
    shadowing backend: Variable.get asks the backends first, and so does the Execution API's
    variable endpoint on the server side. So this writes the value every reader saw, the shadow's:
    the key DAGs use now, working, so the metastore never keeps a deleted key (it would surface the
    day the shadowing entry is removed). The metastore's own earlier value is overwritten; the key
    it named stays alive, untouched.
    """
    try:
        if before.present and before.raw is not None:
            Variable.set(variable_key, before.raw)
        else:
            Variable.delete(variable_key)
    except Exception as exc:
        return False, f"{type(exc).__name__}"
    return True, "restored"


def write_info(
    variable_key: str,
    name: str,
    created_at: str | None,
    previous_name: str | None,
    pending_revoke: list[str],
    log: logging.Logger | Any,
    **extra: Any,
) -> None:
    """Record in the companion Variable which key ``variable_key`` holds (never the key itself)."""
    info = info_variable_name(variable_key)
    if info is None:
        log.warning(
            "Variable %r: no unmasked companion name can be derived from it, so the stored key's name is "
            "kept only in its (masked) document.",
            variable_key,
        )
        return
    try:
        Variable.set(
            info,
            build_info(variable_key, name, created_at, previous_name, pending_revoke, **extra),
            description=f"Which Pioneer key Variable {variable_key!r} holds (no key here). Written by "
            "PioneerKeyRotationOperator; do not edit.",
        )
    except Exception as exc:  # advice only: the key itself is stored and read back already
        log.warning(
            "Could not write Variable %r (%s); the rotation itself is done.", info, type(exc).__name__
        )
