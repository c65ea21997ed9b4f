"""PioneerKeyRotationOperator: rotate the Pioneer API key every DAG depends on, crash-safely.

Modelled on how AWS Secrets Manager rotates a secret: **preflight** with the current key,
**create** its successor (one attempt), **verify** it, **store** it (the store's one write of the
current value, read back), **revoke** the old key, returning ``{name, created_at, revoked}``, never
the key. The steps, what each guarantees and why, are in :mod:`airflow_provider_pioneer.rotation`
(``steps``, ``revoke``); the store, in ``rotation.store``. This module checks the arguments and runs
the steps in order. Every step is safe to repeat, and at every point the store holds a working key,
whatever runs at the same time, so a rerun after a crash anywhere converges to one live managed key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_pioneer._compat import AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerConfigurationError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.rotation import revoke, steps
from airflow_provider_pioneer.rotation.naming import (
    check_key_name_prefix,
    check_variable_key,
    default_key_name_prefix,
)
from airflow_provider_pioneer.rotation.run import Policy, Run, SupersededBeforeStart

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_pioneer.rotation.store import KeyStore

__all__ = ["PioneerKeyRotationOperator"]


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _check_key_store(kind: str | None) -> None:
    """Refuse an unknown ``key_store`` when the DAG is parsed (the argument is not templated)."""
    from airflow_provider_pioneer.rotation.store import kinds, unknown_kind

    unknown = unknown_kind(kind)
    if unknown is None:
        return
    templated = " (key_store is not templated: name the store itself)" if _templated(kind) else ""
    raise ValueError(
        f"key_store {kind!r} is no known key store; use one of {', '.join(kinds())}, or leave it "
        f"unset for the connection's extra key_store{templated}."
    )


def _as_timedelta(value: timedelta | float) -> timedelta:
    grace = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    if grace < timedelta(0):
        raise ValueError(f"orphan_grace_period must be zero or positive, not {value!r}.")
    return grace


class PioneerKeyRotationOperator(BaseOperator):
    """Rotate the Pioneer API key stored in an Airflow Variable (run it nightly).

    The Variable holds ``{"api_key", "name", "created_at", "pending_revoke", ...}`` as JSON. Point
    the connection's extra ``key_variable`` at it and every DAG using the connection picks the
    new key up on its next call (and a run in flight, on its next 401), without a redeploy.

    Two rotations of one Variable at once (two DAGs, a manual ``airflow tasks test`` during the
    nightly run) are safe: the Variable always holds a working key, and the run whose key was
    overwritten deletes it and reports the key the Variable holds (``superseded``).
    Returns ``{"name", "created_at", "revoked"}``; the key itself is never returned or logged.

    It has no ``on_kill``, by design: each step is one short call, a kill (even ``kill -9``) at
    any point leaves a state the next run converges from (every step is recorded in the Variable
    before the next starts), and stopping early on a kill could only add an unstored key to clean.

    :param variable_key: the Variable to store the key in; its name must contain ``api_key`` so
        Airflow masks it. Must equal the connection's extra ``key_variable``. (templated)
    :param key_name_prefix: new keys are named ``{key_name_prefix}-{UTC timestamp}``; live keys
        with such names that are neither stored nor new are revoked as orphans, so every rotation
        sharing a Pioneer account needs its own prefix. Default: ``airflow-`` and the Variable's
        name (``airflow-pioneer_api_key``). (templated)
    :param revoke_old: revoke the key being replaced. With ``False`` it stays alive (but older
        managed keys are still revoked).
    :param old_key_name: Pioneer-side name of the current key, for the first rotation when neither
        the Variable nor the connection extra ``key_name`` says it. (templated)
    :param orphan_grace_period: an unstored managed key younger than this is never revoked as an
        orphan: it may be a concurrent rotation's, created and not yet stored. A run that needs
        more than half of it between creating its key and storing it deletes the key and fails
        instead. A ``timedelta`` or seconds; default 15 minutes. ``0`` turns the protection off
        (only for a rotation that can never run concurrently).
    :param max_keys_created_per_hour: refuse to create a key (``AirflowFailException``, nothing
        changed) when this many managed keys of the prefix were created in the last hour, so a
        retry loop cannot spend the account's 50 creates per hour. Default 10.
    :param pioneer_conn_id: the Pioneer connection.
    :param key_store: where the key is stored (a kind of :mod:`~airflow_provider_pioneer.rotation.store`);
        default the connection's extra ``key_store``, else ``variable`` (the Variable ``variable_key``).
        Not templated: an unknown kind is refused when the DAG is parsed, naming the known ones.
    """

    template_fields: Sequence[str] = ("variable_key", "key_name_prefix", "old_key_name")
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        variable_key: str = "pioneer_api_key",
        key_name_prefix: str | None = None,
        revoke_old: bool = True,
        old_key_name: str | None = None,
        orphan_grace_period: timedelta | float = timedelta(minutes=15),
        max_keys_created_per_hour: int = 10,
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        key_store: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Catch a bad literal when the DAG is parsed; templated values are checked after rendering.
        if not _templated(variable_key):
            check_variable_key(variable_key)
        if key_name_prefix is not None and not _templated(key_name_prefix):
            check_key_name_prefix(key_name_prefix)
        _check_key_store(key_store)
        if not isinstance(max_keys_created_per_hour, int) or max_keys_created_per_hour < 1:
            raise ValueError(
                f"max_keys_created_per_hour must be a positive integer, not {max_keys_created_per_hour!r}."
            )
        self.variable_key = variable_key
        self.key_name_prefix = key_name_prefix
        self.revoke_old = revoke_old
        self.old_key_name = old_key_name
        self.orphan_grace_period = _as_timedelta(orphan_grace_period)
        self.max_keys_created_per_hour = max_keys_created_per_hour
        self.pioneer_conn_id = pioneer_conn_id
        self.key_store = key_store

    @property
    def _prefix(self) -> str:
        """The managed-key prefix in force (read after rendering: variable_key may be templated)."""
        if self.key_name_prefix is None:
            return default_key_name_prefix(self.variable_key)
        return self.key_name_prefix

    @cached_property
    def hook(self) -> PioneerHook:
        """The hook: connection settings, and one client per key (current and new)."""
        return PioneerHook(self.pioneer_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            check_variable_key(self.variable_key)
            check_key_name_prefix(self._prefix)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        # A retry in the same process must not reuse a client holding the key of an earlier try.
        self.__dict__.pop("hook", None)
        grace, budget = self.orphan_grace_period, self.max_keys_created_per_hour
        policy = Policy(self.pioneer_conn_id, self._prefix, self.revoke_old, self.old_key_name, grace, budget)
        run = Run(policy, self._open_store(), self.hook, self.log)
        try:
            result = self._rotate(run)
            from airflow_provider_pioneer.metrics import emit_key_age, task_tags

            emit_key_age(result.get("created_at"), task_tags(context))
            return result
        finally:
            run.close()

    def _open_store(self) -> KeyStore:
        try:
            store = self.hook.open_key_store(self.key_store, name=self.variable_key, log=self.log)
        except PioneerConfigurationError as exc:
            raise AirflowFailException(f"{exc.message} Nothing was changed.") from None
        if store is None:
            raise AirflowFailException(
                f"Connection {self.pioneer_conn_id!r} names no key store to rotate. Nothing was changed."
            )
        return store

    def _rotate(self, run: Run) -> dict[str, Any]:
        try:
            pre = steps.preflight(run)
            steps.check_create_budget(run, pre)
            started = time.monotonic()
            new = steps.create(run, pre)
        except SupersededBeforeStart as exc:
            return revoke.superseded_before_start(run, exc.holder)
        records = steps.verify(run, new)
        steps.check_in_time(run, new, started)
        document, pending, replaced = steps.prepare_store(run, pre, new)
        winner = steps.store(run, document, new, pre, replaced)
        if winner is not None:
            return revoke.superseded(run, new, pending, winner, stored=False)
        run.store.record(new.name, new.created_at, pre.old_name, pending)
        revoked, failed = revoke.revoke(run, new, pre, pending, records)
        return revoke.confirm(run, new, pre, revoked, failed)
