"""PioneerKeyRotationOperator: rotate the Pioneer API key every DAG depends on, crash-safely.

Modelled on how AWS Secrets Manager rotates a secret (create, test, promote, retire):

1. **preflight** with the current key: the Variable must hold a usable value (not malformed JSON,
   not Airflow's masked ``***``); 402 or the spend cap fail before anything changes; the old
   key's name must be known (unless ``revoke_old=False``) and alive; and fewer than
   ``max_keys_created_per_hour`` managed keys may have been created in the last hour;
2. **create** ``{key_name_prefix}-{UTC timestamp}``: one attempt, never retried (a retried create
   whose first answer was lost makes a second key under the same name; and Pioneer allows 50
   creates per hour per account);
3. **verify** the new key answers an authenticated call; if not, delete it and change nothing;
4. **store** it: the run's only Variable write, then read it back. Another rotation's key read
   back means a concurrent rotation won: this run deletes its own key, writes nothing, and
   reports the key the Variable holds. Its own earlier value read back means the write failed
   (delete the new key, fail, write nothing) or a secrets backend shadows the Variable (write back
   the value read before, delete the new key, fail);
5. **revoke** the old key, names an earlier run left pending, and managed keys nobody holds that
   are older than ``orphan_grace_period`` (a young one may be a concurrent run's, not yet stored),
   with the NEW key; the Variable is re-read before each revocation and the key it holds is never
   revoked; 404 counts as done;
6. return ``{name, created_at, revoked}``, never the key.

Every step is safe to repeat, and at every point the Variable holds a working key, whatever runs
at the same time, so a rerun after a crash anywhere converges to one live managed key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator, Variable
from airflow.sdk.log import mask_secret

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerBillingError,
    PioneerConfigurationError,
    PioneerError,
    PioneerNotFoundError,
    PioneerRateLimitError,
)
from airflow_provider_pioneer.hooks.pioneer import PioneerHook, recorded_key_name
from airflow_provider_pioneer.key_info import info_variable_name
from airflow_provider_pioneer.operators._rotation import (
    StoredKey,
    build_document,
    check_key_name_prefix,
    check_variable_key,
    created_within,
    default_key_name_prefix,
    is_managed,
    key_birth,
    key_names,
    managed_name,
    orphans,
    problem_message,
    still_pending,
)
from airflow_provider_pioneer.operators._rotation_io import read_stored, restore, write_info

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_pioneer.client import PioneerClient

__all__ = ["PioneerKeyRotationOperator"]

# A key Pioneer has just created may take a moment to be accepted everywhere: a 401 on the
# verification call is retried this many times (waiting 1 s, 2 s, ...) before the key is discarded.
_VERIFY_ATTEMPTS = 3
# Budget failures: waiting or retrying the task does not help, and must not create anything.
_BUDGET_ERRORS = (PioneerBillingError,)
# Pioneer allows 50 POST /create-api-key per hour per account (CHANGES-2026-08.md).
_CREATE_WINDOW = timedelta(hours=1)
_PIONEER_CREATE_LIMIT = 50


@dataclass(frozen=True)
class _Preflight:
    """What the run knows before it changes anything."""

    current_key: str = field(repr=False)
    key_source: str
    stored: StoredKey
    old_name: str | None
    old_name_source: str
    records: tuple[dict[str, Any], ...]
    created_recently: tuple[str, ...]

    @property
    def live_names(self) -> list[str]:
        return key_names(list(self.records))


@dataclass(frozen=True)
class _NewKey:
    key: str = field(repr=False)
    name: str
    created_at: str


class _SupersededBeforeStart(Exception):
    """The current key was revoked since preflight read it: a concurrent rotation replaced it."""

    def __init__(self, holder: StoredKey) -> None:
        super().__init__(holder.name)
        self.holder = holder


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Catch a bad literal when the DAG is parsed; templated values are checked after rendering.
        if not _templated(variable_key):
            check_variable_key(variable_key)
        if key_name_prefix is not None and not _templated(key_name_prefix):
            check_key_name_prefix(key_name_prefix)
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
        self._current: PioneerClient | None = None
        self._fresh: PioneerClient | None = None

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

    # -- the protocol ---------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            check_variable_key(self.variable_key)
            check_key_name_prefix(self._prefix)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        # A retry in the same process must not reuse a client holding the key of an earlier try.
        self.__dict__.pop("hook", None)
        try:
            result = self._rotate()
            from airflow_provider_pioneer.metrics import emit_key_age, task_tags

            emit_key_age(result.get("created_at"), task_tags(context))
            return result
        finally:
            for client in (self._current, self._fresh):
                if client is not None:
                    client.close()
            self._current = self._fresh = None

    def _rotate(self) -> dict[str, Any]:
        try:
            pre = self._preflight()
            self._check_create_budget(pre)
            started = time.monotonic()
            new = self._create(pre)
        except _SupersededBeforeStart as exc:
            holder = exc.holder
            self.log.warning(
                "Another rotation replaced the key in Variable %r while this run was starting: it now "
                "holds %s, a working key. This run created and revoked nothing.",
                self.variable_key,
                holder.name,
            )
            return {
                "name": holder.name,
                "created_at": holder.created_at,
                "revoked": [],
                "superseded": True,
                "discarded": None,
            }
        records = self._verify(new, pre)
        self._check_in_time(new, started)
        pending = still_pending(
            pre.old_name if self.revoke_old else None,
            pre.stored.pending_revoke,
            set(pre.live_names),
            new.name,
        )
        # Someone may have rotated since preflight: the key the Variable holds right before this
        # write is replaced by it, so it is revoked too (a run that finished in between would
        # otherwise leave its key alive and stored nowhere).
        replaced = self._read_variable(strict=False)
        if self.revoke_old and self._is_concurrent_rotation(replaced, pre) and replaced.name:
            self.log.info(
                "Variable %r was rotated to %s since preflight; replacing it.",
                self.variable_key,
                replaced.name,
            )
            pending = [*pending, replaced.name]
        recent = [*pre.created_recently, new.name]
        document = build_document(
            new.key,
            new.name,
            new.created_at,
            pending,
            previous_name=pre.old_name,
            created_recently=list(dict.fromkeys(recent)),
        )
        winner = self._store(document, new, pre)
        if winner is not None:
            return self._superseded(new, pending, winner, stored=False)
        write_info(self.variable_key, new.name, new.created_at, pre.old_name, pending, self.log)
        revoked, failed = self._revoke(new, pre, pending, records)
        now_held = self._read_variable(strict=False)
        if now_held.api_key != new.key:
            if now_held.api_key and now_held.name and is_managed(now_held.name, self._prefix):
                # Stored, then replaced by a concurrent rotation while this run was revoking (which
                # may have revoked this run's key too: then some revocations failed with 401).
                return self._superseded(new, failed, now_held, stored=True, revoked=revoked)
            raise AirflowFailException(
                f"Rotated to key {new.name!r} and stored it in Variable {self.variable_key!r} (revoked "
                f"{revoked or 'nothing'}), but the Variable was then changed to a value this rotation did "
                f"not write. Key {new.name!r} is kept alive. Make the rotation the only writer of the "
                "Variable, check what it holds now, then rerun."
            )
        write_info(
            self.variable_key, new.name, new.created_at, pre.old_name, failed, self.log, revoked=revoked
        )
        self.log.info(
            "Pioneer key rotated: %s is stored in Variable %r; revoked %s.",
            new.name,
            self.variable_key,
            revoked or "nothing",
        )
        if failed:
            raise AirflowException(
                f"Rotated to key {new.name!r} (stored and working) but could not revoke {failed}; they stay "
                f"in the pending_revoke list of Variable {self.variable_key!r} and the next run revokes them."
            )
        return {"name": new.name, "created_at": new.created_at, "revoked": revoked}

    def _preflight(self) -> _Preflight:
        """Step 1: check the setup and the current key; nothing changes here."""
        hook = self.hook
        if hook.key_variable != self.variable_key:
            raise AirflowFailException(
                f"Connection {self.pioneer_conn_id!r} must read the key this task rotates: set its extra "
                f"key_variable to {self.variable_key!r} (it is {hook.key_variable!r}). Otherwise "
                "DAGs keep using a key that this rotation revokes. Nothing was changed."
            )
        stored = self._read_variable()
        try:
            # One read decides: the key in the Variable is the one every DAG uses now.
            current = stored.api_key or hook.get_api_key()
        except PioneerConfigurationError as exc:
            raise AirflowFailException(f"{exc.message} Nothing was changed.") from None
        mask_secret(current)
        key_source = (
            f"Variable {self.variable_key!r}"
            if stored.api_key and stored.api_key == current
            else f"connection {self.pioneer_conn_id!r}"
        )
        # One client per key: this one (the current key, no Variable re-read: it must work itself)
        # lists, creates and discards; the new key's client verifies and revokes.
        self._current = hook.client_for_key(current)
        try:
            records = self._current.list_api_keys()
        except _BUDGET_ERRORS as exc:
            raise AirflowFailException(
                f"Pioneer key rotation stopped at preflight, nothing was changed: {exc.message}"
            ) from exc
        except PioneerAuthError as exc:
            self._raise_if_rotated_meanwhile(current)
            raise AirflowFailException(
                f"The current Pioneer key (from {key_source}) is rejected (HTTP {exc.status}), so it "
                f"cannot create its successor. Put a working key in Variable {self.variable_key!r} "
                "(or the connection's API key field) and rerun. Nothing was changed."
            ) from exc
        live_names = key_names(records)

        old_name, source = self._old_key_name(stored, current)
        if self.revoke_old:
            if not old_name:
                hint = ""
                if self.hook.key_name:
                    hint = (
                        f" (The connection extra key_name names the key in the connection's password, "
                        f"but the current key comes from Variable {self.variable_key!r}.)"
                    )
                raise AirflowFailException(
                    "Cannot tell which key this rotation replaces, so it could not revoke it: give the "
                    "current key's Pioneer-side name in one of three ways: the operator argument "
                    "old_key_name, the connection extra key_name, or a Variable "
                    f"{self.variable_key!r} holding the rotation JSON with its 'name'.{hint} "
                    "(Or pass revoke_old=False to keep the old key.) Nothing was created."
                )
            if old_name not in live_names:
                raise AirflowFailException(
                    f"No live key named {old_name!r} (from {source}) on the account, yet the current key "
                    f"works: that is not its name. Fix {source} (the names are listed by "
                    "GET /list-api-keys). Nothing was created."
                )
        recent = created_within(
            records, stored.created_recently, self._prefix, now=datetime.now(UTC), window=_CREATE_WINDOW
        )
        self.log.info(
            "Preflight: the current key (from %s) works; it is %s; %d live keys on the account.",
            key_source,
            f"{old_name!r} (from {source})" if old_name else "unnamed",
            len(live_names),
        )
        valid = tuple(r for r in records if isinstance(r, dict))
        return _Preflight(current, key_source, stored, old_name, source, valid, tuple(recent))

    def _old_key_name(self, stored: StoredKey, current: str) -> tuple[str | None, str]:
        # The Variable's document describes exactly the key in use; the explicit argument and the
        # connection extra are for the first rotation, before any document exists.
        if stored.name and stored.api_key == current:
            return stored.name, f"Variable {self.variable_key!r}"
        if self.old_key_name:
            return self.old_key_name, "argument old_key_name"
        # key_name describes the key in the connection's password, nothing else: for a key set by
        # hand in the Variable it would name (and revoke) the wrong key and leave this one unmanaged.
        if self.hook.key_name and self._is_connection_password(current):
            return self.hook.key_name, f"connection {self.pioneer_conn_id!r} extra key_name"
        return None, "nowhere"

    def _is_connection_password(self, key: str) -> bool:
        # Compared, never logged.
        password = self.hook.get_connection(self.pioneer_conn_id).password or ""
        return bool(password) and password == key

    def _check_create_budget(self, pre: _Preflight) -> None:
        """Refuse to create when this prefix already created its hourly budget of keys."""
        recent = pre.created_recently
        if len(recent) < self.max_keys_created_per_hour:
            return
        births = [b for b in (key_birth(n, self._prefix) for n in recent) if b is not None]
        free_at = (min(births) + _CREATE_WINDOW).strftime("%H:%M UTC") if births else "within the hour"
        raise AirflowFailException(
            f"Pioneer key rotation refused to create a key: {len(recent)} keys named {self._prefix}-... "
            f"were created in the last hour, and max_keys_created_per_hour is "
            f"{self.max_keys_created_per_hour} (Pioneer allows {_PIONEER_CREATE_LIMIT} per hour per "
            "account). Something rotates in a loop or retries too often: check this DAG's schedule, "
            f"retries and manual runs. Nothing was changed; a rotation can run again after {free_at}."
        )

    def _create(self, pre: _Preflight) -> _NewKey:
        """Step 2: create the new key (one attempt only) and mask it at once."""
        assert self._current is not None
        name = managed_name(self._prefix)
        # The client never retries a create: if the server committed and the answer was lost, a
        # retry would make a second key under the same name, and revoking by name would hit both.
        try:
            record = self._current.create_api_key(name)
        except _BUDGET_ERRORS as exc:
            raise AirflowFailException(
                f"Pioneer refused to create a key, nothing was changed: {exc.message}"
            ) from exc
        except PioneerRateLimitError as exc:
            # A 429 creates nothing; it is most likely the 50-per-hour limit, which a retry in a
            # few minutes would only hit again.
            wait = f" (Pioneer asks to wait {exc.retry_after:.0f} s)" if exc.retry_after else ""
            raise AirflowFailException(
                f"Pioneer refused to create key {name!r} with HTTP 429{wait}: POST /create-api-key "
                f"allows {_PIONEER_CREATE_LIMIT} keys per hour per account. Nothing was created or "
                "changed; the stored key still works. Rerun later, and check what else creates keys "
                "on this account."
            ) from exc
        except PioneerError as exc:
            if isinstance(exc, PioneerAuthError):
                # A 401 creates nothing. The key worked at preflight: most likely a concurrent
                # rotation revoked it since.
                self._raise_if_rotated_meanwhile(pre.current_key)
            # The server may have created the key anyway; its name is unique to this attempt,
            # so revoking by name cannot hit anything else.
            _, outcome = self._discard(name)
            raise AirflowException(
                f"Creating Pioneer key {name!r} failed: {exc.message} {outcome} The stored key is "
                "unchanged; rerun the task."
            ) from exc
        key = record["key"]
        mask_secret(key)
        created_at = str(record.get("created_at") or datetime.now(UTC).isoformat())
        self.log.info("Created Pioneer key %s.", name)
        return _NewKey(key, name, created_at)

    def _verify(self, new: _NewKey, pre: _Preflight) -> list[dict[str, Any]]:
        """Step 3: the new key must answer an authenticated call and see itself; else delete it."""
        self._fresh = self.hook.client_for_key(new.key)
        records: list[dict[str, Any]] = []
        for attempt in range(1, _VERIFY_ATTEMPTS + 1):
            try:
                records = self._fresh.list_api_keys()
                break
            except PioneerAuthError as exc:
                if attempt == _VERIFY_ATTEMPTS:
                    self._fail_verification(new, exc.message, budget=False)
                time.sleep(attempt)
            except PioneerError as exc:
                self._fail_verification(new, exc.message, budget=isinstance(exc, _BUDGET_ERRORS))
        if new.name not in key_names(records):
            self._fail_verification(new, "it works but does not list itself (another account?).", False)
        self.log.info("Verified the new key %s.", new.name)
        return records

    def _fail_verification(self, new: _NewKey, reason: str, budget: bool) -> NoReturn:
        _, outcome = self._discard(new.name)
        cls = AirflowFailException if budget else AirflowException
        raise cls(
            f"The new Pioneer key {new.name!r} failed its check: {reason} {outcome} The stored key "
            "is unchanged."
        )

    def _check_in_time(self, new: _NewKey, started: float) -> None:
        """A key older than the grace period may be swept as an orphan by a concurrent run."""
        if not self.orphan_grace_period:
            return
        elapsed = time.monotonic() - started
        limit = self.orphan_grace_period.total_seconds() / 2
        if elapsed <= limit:
            return
        _, outcome = self._discard(new.name)
        raise AirflowException(
            f"Creating and checking the new Pioneer key {new.name!r} took {elapsed:.0f} s, more than half of "
            f"orphan_grace_period ({limit * 2:.0f} s): a concurrent rotation may already count it as an "
            f"orphan and revoke it, so it is not stored. {outcome} The stored key is unchanged; rerun "
            "the task (or raise orphan_grace_period if Pioneer is this slow)."
        )

    def _store(self, document: str, new: _NewKey, pre: _Preflight) -> StoredKey | None:
        """Step 4: the run's only Variable write, then read it back.

        Returns ``None`` when the Variable holds the new key; the Variable's value when a
        concurrent rotation stored its key instead. Fails (changing nothing) otherwise.
        """
        write_error: str | None = None
        try:
            self._write_variable(document)
        except Exception as exc:
            # The write may or may not have landed; the read-back below decides.
            write_error = type(exc).__name__
            self.log.warning(
                "Writing Variable %r raised %s; checking what it holds.", self.variable_key, write_error
            )
        after = self._read_variable(strict=False)
        if after.api_key == new.key:
            self.log.info("Stored the new key in Variable %r and read it back.", self.variable_key)
            return None
        if self._is_concurrent_rotation(after, pre):
            return after
        if after.raw != pre.stored.raw:
            # Someone changed the Variable (not a rotation of this prefix): leave their value alone.
            _, outcome = self._discard(new.name)
            raise AirflowFailException(
                f"Variable {self.variable_key!r} changed while this rotation stored its key, to a value "
                f"it did not write and that holds no key named {self._prefix}-...: someone edits it by "
                f"hand, or another tool writes it. The Variable is left as it is. {outcome} Nothing was "
                "revoked. Make the rotation the only writer of the Variable, then rerun."
            )
        self._shadowed(new, pre, write_error)

    def _raise_if_rotated_meanwhile(self, used_key: str) -> None:
        """After a 401 on a key that worked: a concurrent rotation may have replaced and revoked it."""
        now = self._read_variable(strict=False)
        if now.api_key and now.api_key != used_key and now.name and is_managed(now.name, self._prefix):
            raise _SupersededBeforeStart(now)

    def _is_concurrent_rotation(self, after: StoredKey, pre: _Preflight) -> bool:
        """Whether the Variable now holds another rotation's new key (not what preflight read)."""
        return bool(
            after.api_key
            and after.name
            and is_managed(after.name, self._prefix)
            and after.name != pre.stored.name
            and after.api_key != pre.current_key
        )

    def _write_variable(self, document: str) -> None:
        Variable.set(
            self.variable_key,
            document,
            description="Pioneer API key, rotated by PioneerKeyRotationOperator. Do not edit by hand.",
        )

    def _shadowed(self, new: _NewKey, pre: _Preflight, write_error: str | None) -> NoReturn:
        """The Variable reads back what preflight read: the write failed, or a backend shadows it."""
        env = f"AIRFLOW_VAR_{self.variable_key.upper()}"
        if write_error:
            # The write did not land (the Variable reads back unchanged). Nothing to put back: a
            # write now could overwrite the key a concurrent rotation stored meanwhile.
            _, outcome = self._discard(new.name)
            raise AirflowException(
                f"Writing Variable {self.variable_key!r} failed ({write_error}) and it does not hold the "
                f"new key. {outcome} The stored key is unchanged. Check that Airflow can write Variables "
                "(metastore, API server), then rerun."
            )
        shadowed = (
            f"Wrote Variable {self.variable_key!r} but a different value reads back: a secrets backend "
            f"(an environment variable {env}, Vault, AWS Secrets Manager, ...) shadows it, so DAGs "
            "would never see the new key."
        )
        fix = (
            "Remove the shadowing entry, or point variable_key and the connection's key_variable "
            "at a Variable the rotation can own."
        )
        restored, how = restore(self.variable_key, pre.stored)
        if not restored:
            # The metastore may keep the new key: deleting it would leave a dead key there, to
            # surface the day the shadowing entry is removed. Keep it alive instead.
            raise AirflowFailException(
                f"{shadowed} Restoring the Variable then failed too ({how}), so the metastore may hold the "
                f"new key {new.name!r}: it was kept alive and works (a later run revokes it if it was never "
                f"stored). The old key is untouched. {fix}"
            )
        _, outcome = self._discard(new.name)
        raise AirflowFailException(
            f"{shadowed} {outcome} Variable {self.variable_key!r} was restored. The old key is "
            f"untouched. {fix}"
        )

    def _revoke(
        self, new: _NewKey, pre: _Preflight, pending: list[str], records: list[dict[str, Any]]
    ) -> tuple[list[str], list[str]]:
        """Step 5: revoke the old key, leftovers of earlier runs, and orphans, with the NEW key.

        Returns ``(revoked, failed)``.
        """
        assert self._fresh is not None
        with suppress(PioneerError):  # if this fails, the listing from the verification will do
            records = self._fresh.list_api_keys()
        keep = {new.name, *pending}
        if not self.revoke_old and pre.old_name:
            keep.add(pre.old_name)
        if self.revoke_old or pre.old_name:
            strays = orphans(
                records,
                self._prefix,
                keep,
                now=datetime.now(UTC),
                grace=self.orphan_grace_period,
                before=key_birth(new.name, self._prefix, new.created_at),
            )
        else:
            # The kept old key has no known name: it could be any managed key, so touch none.
            self.log.info("revoke_old=False and the old key's name is unknown: no orphan sweep.")
            strays = []
        if strays:
            self.log.info(
                "Revoking managed keys nobody holds, older than %s (orphans of earlier runs): %s.",
                self.orphan_grace_period,
                strays,
            )
        return self._revoke_names([*pending, *strays], spare=new.name)

    def _revoke_names(self, names: list[str], spare: str | None) -> tuple[list[str], list[str]]:
        """Revoke each name, unless the Variable holds it right now; ``(revoked, failed)``."""
        revoked: list[str] = []
        failed: list[str] = []
        for name in dict.fromkeys(names):
            if name == spare:  # never, whatever the bookkeeping says
                continue
            holder = self._read_variable(strict=False)
            if holder.name is None:
                # A plain key or an unreadable value: which key it is cannot be told, so none of
                # the candidates can be proven unused.
                self.log.warning(
                    "Variable %r no longer holds a rotation document; not revoking %s.",
                    self.variable_key,
                    name,
                )
                failed.append(name)
                continue
            if holder.name == name:
                self.log.warning("Variable %r holds %s now; not revoking it.", self.variable_key, name)
                continue
            try:
                self._delete_key(name)
            except PioneerNotFoundError:
                pass  # gone already: done
            except PioneerError as exc:
                self.log.warning("Could not revoke Pioneer key %s: %s", name, exc.message)
                failed.append(name)
                continue
            revoked.append(name)
        return revoked, failed

    def _superseded(
        self,
        new: _NewKey,
        pending: list[str],
        holder: StoredKey,
        *,
        stored: bool,
        revoked: list[str] | None = None,
    ) -> dict[str, Any]:
        """A concurrent rotation stored its key: drop this run's own key, keep theirs.

        Nothing is written back. This run still revokes the names it was to revoke (never the one
        the Variable holds): the winner may have read the Variable after this run's write and
        have another old key on its list, and these would then stay alive forever.
        """
        revoked = list(revoked or [])
        more, failed = self._revoke_names(pending, spare=new.name)
        revoked += more
        deleted, outcome = self._discard(new.name)
        when = "after this run stored its own" if stored else "while this run was storing its own"
        fate = (
            "was discarded" if deleted else "could not be deleted (a later rotation revokes it as an orphan)"
        )
        self.log.warning(
            "Another rotation stored key %s in Variable %r %s (%s); this run's key %s. Variable %r holds "
            "%s, a working key. Revoked %s.",
            holder.name,
            self.variable_key,
            when,
            new.name,
            fate,
            self.variable_key,
            holder.name,
            revoked or "nothing",
        )
        self.log.info("%s", outcome)
        result: dict[str, Any] = {
            "name": holder.name,
            "created_at": holder.created_at,
            "revoked": revoked,
            "superseded": True,
            "discarded": new.name if deleted else None,
        }
        if not deleted:
            failed = [*failed, new.name]
        if failed:
            # The run that won stores the key; what it did not revoke, a later rotation sweeps
            # (managed names, once past the grace period). The task need not fail for it.
            self.log.warning(
                "Could not revoke %s (no key of this run may any more); a later rotation revokes managed "
                "keys among them as orphans, others must be revoked by hand.",
                failed,
            )
            result["not_revoked"] = failed
        return result

    # -- helpers --------------------------------------------------------------------------------

    def _read_variable(self, strict: bool = True) -> StoredKey:
        """The Variable now, past Airflow's secrets cache.

        :param strict: fail (``AirflowFailException``, nothing changed) on a value that holds no
            usable key, with how to fix it; else return it as read.
        """
        stored = read_stored(self.variable_key, self.log)
        if strict:
            lost = recorded_key_name(self.variable_key) if stored.problem == "masked" else None
            message = problem_message(self.variable_key, stored, lost, info_variable_name(self.variable_key))
            if message:
                raise AirflowFailException(
                    f"Pioneer key rotation did not start: {message} Nothing was changed."
                )
        return stored

    def _delete_key(self, name: str) -> None:
        """Revoke ``name`` with the new key; with the current one if a concurrent rotation revoked it."""
        clients = [c for c in (self._fresh, self._current) if c is not None]
        for i, client in enumerate(clients):
            try:
                client.delete_api_key(name)
                return
            except PioneerAuthError:
                if i + 1 == len(clients):
                    raise

    def _discard(self, name: str) -> tuple[bool, str]:
        """Revoke a key this run created and will not use; ``(gone, a sentence saying how it went)``.

        With the current key first (the new one may not work); if that key was revoked meanwhile
        (a concurrent rotation), with the new key itself.
        """
        clients = [c for c in (self._current, self._fresh) if c is not None]
        for i, client in enumerate(clients):
            try:
                client.delete_api_key(name)
            except PioneerNotFoundError:
                return True, f"No key named {name!r} exists."
            except PioneerAuthError:
                if i + 1 < len(clients):
                    continue
                self.log.warning("Could not delete Pioneer key %s: no key of this run may.", name)
                return False, f"Deleting key {name!r} failed too; the next rotation revokes it as an orphan."
            except PioneerError as exc:
                self.log.warning("Could not delete Pioneer key %s: %s", name, exc.message)
                return False, f"Deleting key {name!r} failed too; the next rotation revokes it as an orphan."
            break
        self.log.info("Deleted the unused Pioneer key %s.", name)
        return True, f"Key {name!r} was deleted."
