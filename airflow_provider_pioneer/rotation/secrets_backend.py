"""Whether the deployment's secrets backend serves the rotated secret as the key Variable.

A connection that reads its key as a Variable (extra ``key_variable``), while the rotation writes
a Secrets Manager secret, works only if Airflow's ``SecretsManagerBackend`` serves exactly that
secret under that name (``{variables_prefix}{sep}{key_variable}``). Otherwise the rotation would
promote a key no DAG reads, then revoke the one they use: the rotation's preflight refuses.
"""

from __future__ import annotations

import logging

__all__ = ["backend_mismatch", "backend_path"]

log = logging.getLogger(__name__)


def backend_path(key_variable: str) -> str | None:
    """The secret Airflow's configured ``SecretsManagerBackend`` reads ``key_variable`` from, or ``None``."""
    try:
        from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend
        from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

        for backend in ensure_secrets_backend_loaded():
            if isinstance(backend, SecretsManagerBackend) and backend.variables_prefix:
                return str(backend.build_path(backend.variables_prefix, key_variable, backend.sep))
    except Exception:  # an Airflow without these internals: the values must then agree
        log.debug("Could not find Airflow's SecretsManagerBackend settings.")
    return None


def backend_mismatch(
    key_variable: str, secret_id: str, current: str | None, label: str, conn_id: str
) -> str | None:
    """Why Variable ``key_variable`` is not the secret (the start of an error), or ``None`` if it is.

    :param current: the secret's ``AWSCURRENT`` value as read (``None``: no version yet); the
        Variable (read past Airflow's cache by the caller) must be exactly it. An empty secret
        cannot be compared: the backend's settings must then name it.
    """
    from airflow.sdk import Variable

    try:
        seen = Variable.get(key_variable, default=None)
    except Exception as exc:
        seen, why = None, type(exc).__name__
    else:
        why = "absent" if seen is None else "another value"
    if seen is not None and seen == current:
        return None
    if seen is None and current is None:
        if backend_path(key_variable) == secret_id:
            return None
        why = "no SecretsManagerBackend maps the Variable to this secret"
    return (
        f"Connection {conn_id!r} reads the key as Variable {key_variable!r}, which Airflow does not serve "
        f"from {label} ({why}). Configure Airflow's SecretsManagerBackend with variables_prefix so that "
        f"the Variable is this secret (secret '<variables_prefix>/{key_variable}'), or remove the extra "
        "key_variable so that the connection reads the secret itself."
    )
