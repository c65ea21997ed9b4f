"""The hook's key from the store its connection names (extra ``key_store``), read straight from it.

Used when the connection names a key store other than the Variable, and no ``key_variable``.
With ``key_variable`` set, the hook reads that Variable the way Airflow does: a deployment whose
``SecretsManagerBackend`` serves Variables under ``variables_prefix`` reads the rotated secret
through it, past Airflow's secrets cache on a 401 (``PioneerHook._reread_variable_key``). Read here,
the store is asked every time (the 401 re-read included): it has no cache in front of it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_provider_pioneer.exceptions import PioneerConfigurationError, PioneerError
from airflow_provider_pioneer.rotation.store import DEFAULT_KIND, KeyStore, open_store

if TYPE_CHECKING:
    from airflow_provider_pioneer.hooks.pioneer import PioneerHook

__all__ = ["key_store_of", "read_store_key", "reread_store_key"]

log = logging.getLogger(__name__)


def key_store_of(hook: PioneerHook) -> KeyStore | None:
    """``PioneerHook.key_store``: the store the connection's extra ``key_store`` names, or ``None``
    (no such extra, or ``variable``: the key Variable, read as before)."""
    kind = str(hook._extras.get("key_store") or DEFAULT_KIND).strip().lower()
    if kind == DEFAULT_KIND:
        return None
    try:
        return open_store(None, hook._extras, conn_id=hook.pioneer_conn_id, log=log)
    except ValueError as exc:
        raise PioneerConfigurationError(str(exc)) from None


def read_store_key(store: KeyStore | None) -> str | None:
    """The key ``store`` holds now (masked); ``None`` without a store, or when it holds no value
    yet (the connection's password is used: the first rotation starts from it).

    :raises PioneerConfigurationError: the store cannot be read, or holds no usable key.
    """
    if store is None:
        return None
    stored = store.read()
    problem = store.explain(stored, consult_records=False)
    if problem:
        raise PioneerConfigurationError(problem)
    return stored.api_key


def reread_store_key(store: KeyStore | None) -> str | None:
    """After a 401: the store's key now; a failed read leaves the 401 to stand (with a warning)."""
    try:
        return read_store_key(store)
    except PioneerError as exc:
        log.warning("Could not re-read the Pioneer key after a 401: %s", exc.message)
        return None
