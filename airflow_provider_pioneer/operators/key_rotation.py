"""PioneerKeyRotationOperator: rotate the Pioneer API key every DAG depends on, crash-safely.

Modelled on how AWS Secrets Manager rotates a secret (create, test, promote, retire):

1. **preflight** with the current key: 402 or the spend cap fail before anything changes; the
   old key's name must be known (unless ``revoke_old=False``) and alive;
2. **create** ``{key_name_prefix}-{UTC timestamp}`` (never retried: a retried create whose first
   answer was lost makes a second key under the same name);
3. **verify** the new key answers an authenticated call; if not, delete it and change nothing;
4. **store** it in the Variable and read it back; a value that does not read back (a secrets
   backend shadows the Variable) writes back the value read before, then deletes the new key
   (kept alive if that restore failed: the metastore may hold it) and fails;
5. **revoke** the old key, names an earlier run left pending, and managed keys nobody holds
   (orphans of a crashed run), with the NEW key; 404 counts as done;
6. return ``{name, created_at, revoked}``, never the key.

Every step is safe to repeat, and at every point the Variable holds a working key, so a rerun
after a crash anywhere converges to exactly one live managed key, stored and working.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator, Variable
from airflow.sdk.log import mask_secret

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerConfigurationError,
    PioneerError,
    PioneerNotFoundError,
    PioneerPaymentRequiredError,
    PioneerSpendCapError,
)
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators._rotation import (
    StoredKey,
    build_document,
    check_key_name_prefix,
    check_variable_key,
    default_key_name_prefix,
    key_names,
    managed_name,
    orphans,
    parse_stored,
    still_pending,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PioneerKeyRotationOperator"]

# A key Pioneer has just created may take a moment to be accepted everywhere: a 401 on the
# verification call is retried this many times (waiting 1 s, 2 s, ...) before the key is discarded.
_VERIFY_ATTEMPTS = 3
# Budget failures: waiting or retrying the task does not help, and must not create anything.
_BUDGET_ERRORS = (PioneerPaymentRequiredError, PioneerSpendCapError)


@dataclass(frozen=True)
class _Preflight:
    """What the run knows before it changes anything."""

    current_key: str = field(repr=False)
    key_source: str
    stored: StoredKey
    old_name: str | None
    old_name_source: str
    live_names: tuple[str, ...]


@dataclass(frozen=True)
class _NewKey:
    key: str = field(repr=False)
    name: str
    created_at: str


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


class PioneerKeyRotationOperator(BaseOperator):
    """Rotate the Pioneer API key stored in an Airflow Variable (run it nightly).

    The Variable holds ``{"api_key", "name", "created_at", "pending_revoke", ...}`` as JSON. Point
    the connection's extra ``api_key_variable`` at it and every DAG using the connection picks the
    new key up on its next call (and a run in flight, on its next 401), without a redeploy.

    Run at most one rotation at a time (``max_active_tis_per_dag=1``, or a pool of one slot).
    Returns ``{"name", "created_at", "revoked"}``; the key itself is never returned or logged.

    :param variable_key: the Variable to store the key in; its name must contain ``api_key`` so
        Airflow masks it. Must equal the connection's extra ``api_key_variable``. (templated)
    :param key_name_prefix: new keys are named ``{key_name_prefix}-{UTC timestamp}``; live keys
        with such names that are neither stored nor new are revoked as orphans, so every rotation
        sharing a Pioneer account needs its own prefix. Default: ``airflow-`` and the Variable's
        name (``airflow-pioneer_api_key``). (templated)
    :param revoke_old: revoke the key being replaced. With ``False`` it stays alive (but older
        managed keys are still revoked).
    :param old_key_name: Pioneer-side name of the current key, for the first rotation when neither
        the Variable nor the connection extra ``key_name`` says it. (templated)
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
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Catch a bad literal when the DAG is parsed; templated values are checked after rendering.
        if not _templated(variable_key):
            check_variable_key(variable_key)
        if key_name_prefix is not None and not _templated(key_name_prefix):
            check_key_name_prefix(key_name_prefix)
        self.variable_key = variable_key
        self.key_name_prefix = key_name_prefix
        self.revoke_old = revoke_old
        self.old_key_name = old_key_name
        self.pioneer_conn_id = pioneer_conn_id

    @property
    def _prefix(self) -> str:
        """The managed-key prefix in force (read after rendering: variable_key may be templated)."""
        if self.key_name_prefix is None:
            return default_key_name_prefix(self.variable_key)
        return self.key_name_prefix

    @cached_property
    def hook(self) -> PioneerHook:
        """The hook on the current key (its client re-reads the Variable once on a 401)."""
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
        pre = self._preflight()
        new = self._create(pre)
        verified_names = self._verify(new, pre)
        pending = still_pending(
            pre.old_name if self.revoke_old else None,
            pre.stored.pending_revoke,
            set(pre.live_names),
            new.name,
        )
        document = build_document(new.key, new.name, new.created_at, pending, previous_name=pre.old_name)
        self._store(document, new, pre)
        revoked = self._revoke(new, pre, pending, verified_names)
        self.log.info(
            "Pioneer key rotated: %s is stored in Variable %r; revoked %s.",
            new.name,
            self.variable_key,
            revoked or "nothing",
        )
        return {"name": new.name, "created_at": new.created_at, "revoked": revoked}

    def _preflight(self) -> _Preflight:
        """Step 1: check the setup and the current key; nothing changes here."""
        hook = self.hook
        if hook.api_key_variable != self.variable_key:
            raise AirflowFailException(
                f"Connection {self.pioneer_conn_id!r} must read the key this task rotates: set its extra "
                f"api_key_variable to {self.variable_key!r} (it is {hook.api_key_variable!r}). Otherwise "
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
        checker = hook.client_for_key(current)  # this exact key, no re-read: it must work itself
        try:
            records = checker.list_api_keys()
        except _BUDGET_ERRORS as exc:
            raise AirflowFailException(
                f"Pioneer key rotation stopped at preflight, nothing was changed: {exc.message}"
            ) from exc
        except PioneerAuthError as exc:
            raise AirflowFailException(
                f"The current Pioneer key (from {key_source}) is rejected (HTTP {exc.status}), so it "
                f"cannot create its successor. Put a working key in Variable {self.variable_key!r} "
                "(or the connection's API key field) and rerun. Nothing was changed."
            ) from exc
        finally:
            checker.close()
        live_names = tuple(key_names(records))

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
        self.log.info(
            "Preflight: the current key (from %s) works; it is %s; %d live keys on the account.",
            key_source,
            f"{old_name!r} (from {source})" if old_name else "unnamed",
            len(live_names),
        )
        return _Preflight(current, key_source, stored, old_name, source, live_names)

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

    def _create(self, pre: _Preflight) -> _NewKey:
        """Step 2: create the new key (one attempt only) and mask it at once."""
        name = managed_name(self._prefix)
        # No retries: if the server committed and the answer was lost, a retry would make a
        # second key under the same name, and revoking by name would then hit both.
        creator = self.hook.client_for_key(pre.current_key, max_retries=0)
        try:
            record = creator.create_api_key(name)
        except _BUDGET_ERRORS as exc:
            raise AirflowFailException(
                f"Pioneer refused to create a key, nothing was changed: {exc.message}"
            ) from exc
        except PioneerError as exc:
            # The server may have created the key anyway; its name is unique to this attempt,
            # so revoking by name cannot hit anything else.
            outcome = self._discard(name, pre.current_key)
            raise AirflowException(
                f"Creating Pioneer key {name!r} failed: {exc.message} {outcome} The stored key is "
                "unchanged; rerun the task."
            ) from exc
        finally:
            creator.close()
        key = record["key"]
        mask_secret(key)
        created_at = str(record.get("created_at") or datetime.now(UTC).isoformat())
        self.log.info("Created Pioneer key %s.", name)
        return _NewKey(key, name, created_at)

    def _verify(self, new: _NewKey, pre: _Preflight) -> list[str]:
        """Step 3: the new key must answer an authenticated call and see itself; else delete it."""
        client = self.hook.client_for_key(new.key)
        try:
            for attempt in range(1, _VERIFY_ATTEMPTS + 1):
                try:
                    records = client.list_api_keys()
                    break
                except PioneerAuthError as exc:
                    if attempt == _VERIFY_ATTEMPTS:
                        self._fail_verification(new, pre, exc.message, budget=False)
                    time.sleep(attempt)
                except PioneerError as exc:
                    self._fail_verification(new, pre, exc.message, budget=isinstance(exc, _BUDGET_ERRORS))
        finally:
            client.close()
        names = key_names(records)
        if new.name not in names:
            self._fail_verification(new, pre, "it works but does not list itself (another account?).", False)
        self.log.info("Verified the new key %s.", new.name)
        return names

    def _fail_verification(self, new: _NewKey, pre: _Preflight, reason: str, budget: bool) -> NoReturn:
        outcome = self._discard(new.name, pre.current_key)
        cls = AirflowFailException if budget else AirflowException
        raise cls(
            f"The new Pioneer key {new.name!r} failed its check: {reason} {outcome} The stored key "
            "is unchanged."
        )

    def _store(self, document: str, new: _NewKey, pre: _Preflight) -> None:
        """Step 4: write the Variable and read it back; undo everything if it does not read back."""
        write_error: str | None = None
        try:
            self._write_variable(document)
        except Exception as exc:
            # The write may or may not have landed; the read-back below decides.
            write_error = type(exc).__name__
            self.log.warning(
                "Writing Variable %r raised %s; checking what it holds.", self.variable_key, write_error
            )
        self._read_back(new, pre, write_error)

    def _write_variable(self, document: str) -> None:
        Variable.set(
            self.variable_key,
            document,
            description="Pioneer API key, rotated by PioneerKeyRotationOperator. Do not edit by hand.",
        )

    def _read_back(self, new: _NewKey, pre: _Preflight, write_error: str | None = None) -> None:
        stored = self._read_variable()
        if stored.api_key == new.key:
            self.log.info("Stored the new key in Variable %r and read it back.", self.variable_key)
            return
        env = f"AIRFLOW_VAR_{self.variable_key.upper()}"
        if write_error:
            shadowed = f"Writing Variable {self.variable_key!r} failed ({write_error}) and it does not hold the new key."
            fix = "Check that Airflow can write Variables (metastore, API server), then rerun."
        else:
            shadowed = (
                f"Wrote Variable {self.variable_key!r} but a different value reads back: a secrets backend "
                f"(an environment variable {env}, Vault, AWS Secrets Manager, ...) shadows it, so DAGs "
                "would never see the new key."
            )
            fix = (
                "Remove the shadowing entry, or point variable_key and the connection's api_key_variable "
                "at a Variable the rotation can own."
            )
        restored, how = self._restore_variable(pre.stored)
        if not restored:
            # The metastore may keep the new key: deleting it would leave a dead key there, to
            # surface the day the shadowing entry is removed. Keep it alive instead.
            raise AirflowFailException(
                f"{shadowed} Restoring the Variable then failed too ({how}), so the metastore may hold the "
                f"new key {new.name!r}: it was kept alive and works (a later run revokes it if it was never "
                f"stored). The old key is untouched. {fix}"
            )
        outcome = self._discard(new.name, pre.current_key)
        raise AirflowFailException(
            f"{shadowed} {outcome} Variable {self.variable_key!r} was restored. The old key is "
            f"untouched. {fix}"
        )

    def _restore_variable(self, before: StoredKey) -> tuple[bool, str]:
        """Put back what readers saw before the write; ``(done, how it went)``."""
        # Ideally the metastore's own earlier value; but a task cannot read the metastore behind a
        # shadowing backend: Variable.get asks the backends first, and so does the Execution API's
        # variable endpoint on the server side. So this writes the value every reader saw, the
        # shadow's: the key DAGs use now, working, so the metastore never keeps a deleted key (it
        # would surface the day the shadowing entry is removed). The metastore's own earlier value
        # is overwritten; the key it named stays alive, untouched.
        try:
            if before.present and before.raw is not None:
                Variable.set(self.variable_key, before.raw)
            else:
                Variable.delete(self.variable_key)
        except Exception as exc:
            return False, f"{type(exc).__name__}"
        return True, "restored"

    def _revoke(
        self, new: _NewKey, pre: _Preflight, pending: list[str], verified_names: list[str]
    ) -> list[str]:
        """Step 5: revoke the old key, leftovers of earlier runs, and orphans, with the NEW key."""
        client = self.hook.client_for_key(new.key)
        try:
            try:
                live = key_names(client.list_api_keys())
            except PioneerError:
                live = verified_names
            keep = {new.name, *pending}
            if self.revoke_old:
                strays = orphans(live, self._prefix, keep)
            elif pre.old_name:
                strays = orphans(live, self._prefix, keep | {pre.old_name})
            else:
                # The kept old key has no known name: it could be any managed key, so touch none.
                self.log.info("revoke_old=False and the old key's name is unknown: no orphan sweep.")
                strays = []
            if strays:
                self.log.info("Revoking managed keys nobody holds (orphans of earlier runs): %s.", strays)
            revoked: list[str] = []
            failed: list[str] = []
            for name in [*pending, *strays]:
                if name == new.name:  # never, whatever the bookkeeping says
                    continue
                try:
                    client.delete_api_key(name)
                except PioneerNotFoundError:
                    pass  # gone already: done
                except PioneerError as exc:
                    self.log.warning("Could not revoke Pioneer key %s: %s", name, exc.message)
                    failed.append(name)
                    continue
                revoked.append(name)
        finally:
            client.close()
        if pending != failed:
            self._record_pending(new, pre, failed)
        if failed:
            raise AirflowException(
                f"Rotated to key {new.name!r} (stored and working) but could not revoke {failed}; they stay "
                f"in the pending_revoke list of Variable {self.variable_key!r} and the next run revokes them."
            )
        return revoked

    def _record_pending(self, new: _NewKey, pre: _Preflight, failed: list[str]) -> None:
        # Bookkeeping only: a stale list is harmless (names no longer alive are skipped).
        try:
            self._write_variable(
                build_document(new.key, new.name, new.created_at, failed, previous_name=pre.old_name)
            )
        except Exception as exc:
            self.log.warning(
                "Could not update pending_revoke in Variable %r (%s).", self.variable_key, type(exc).__name__
            )

    # -- helpers --------------------------------------------------------------------------------

    def _read_variable(self) -> StoredKey:
        stored = parse_stored(Variable.get(self.variable_key, default=None))
        if stored.api_key:
            mask_secret(stored.api_key)
        return stored

    def _discard(self, name: str, current_key: str) -> str:
        """Revoke a key this run created and will not use (with the current key); say how that went."""
        client = self.hook.client_for_key(current_key)
        try:
            client.delete_api_key(name)
        except PioneerNotFoundError:
            return f"No key named {name!r} exists."
        except PioneerError as exc:
            self.log.warning("Could not delete Pioneer key %s: %s", name, exc.message)
            return f"Deleting key {name!r} failed too; the next rotation revokes it as an orphan."
        finally:
            client.close()
        self.log.info("Deleted the unused Pioneer key %s.", name)
        return f"Key {name!r} was deleted."
