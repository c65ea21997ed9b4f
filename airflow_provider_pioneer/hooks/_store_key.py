"""The hook's key from the store its connection names (extra ``key_store``), read straight from it.

Used when the connection names a key store and no ``key_variable``. With ``key_variable`` set, the
hook reads that Variable the way Airflow does (a deployment whose ``SecretsManagerBackend`` serves
Variables under ``variables_prefix`` reads the rotated secret through it, past its cache on a 401:
``PioneerHook._reread_variable_key``). Read here, the secret has no cache in front of it: every
read, the 401 re-read included, asks the store for its ``AWSCURRENT`` version.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow.sdk.log import mask_secret

from airflow_provider_pioneer.exceptions import PioneerConfigurationError, PioneerError
from airflow_provider_pioneer.rotation.secrets_manager import SecretsManagerKeyStore, store_from_extras

if TYPE_CHECKING:
    from airflow_provider_pioneer.hooks.pioneer import PioneerHook

__all__ = ["key_store_of", "read_store_key", "reread_store_key"]

log = logging.getLogger(__name__)


def key_store_of(hook: PioneerHook) -> SecretsManagerKeyStore | None:
    """``PioneerHook.key_store``: the store the connection's extra ``key_store`` names, or ``None``
    (the key Variable, as before). Read by the hook only when ``key_variable`` is unset."""
    return store_from_extras(hook._extras, hook.pioneer_conn_id)


def read_store_key(store: SecretsManagerKeyStore | None) -> str | None:
    """The key ``store`` holds now; ``None`` without a store, or when it holds no version yet
    (use the password).

    :raises PioneerConfigurationError: the store cannot be read, or holds no usable key.
    """
    if store is None:
        return None
    stored = store.read()
    if not stored.present:
        return None
    if stored.problem is not None or not stored.api_key:
        raise PioneerConfigurationError(
            f"{store.label} holds no usable API key ({stored.problem or 'no api_key'}): set its AWSCURRENT "
            'version to {"api_key": "<key>", "name": "<its name in Pioneer>"}, or a plain key.'
        )
    mask_secret(stored.api_key)
    return stored.api_key


def reread_store_key(store: SecretsManagerKeyStore | None) -> str | None:
    """After a 401: the store's key now; a failed read leaves the 401 to stand (with a warning)."""
    try:
        return read_store_key(store)
    except PioneerError as exc:
        log.warning("Could not re-read the Pioneer key after a 401: %s", exc.message)
        return None
