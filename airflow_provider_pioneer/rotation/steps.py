"""The rotation's steps up to the store's write, modelled on AWS Secrets Manager's (create, test, promote):

1. **preflight** with the current key: the store must hold a usable value (not malformed JSON,
   not Airflow's masked ``***``); 402 or the spend cap fail before anything changes; the old
   key's name must be known (unless ``revoke_old=False``) and alive; and fewer than
   ``max_keys_created_per_hour`` managed keys may have been created in the last hour;
2. **create** ``{key_name_prefix}-{UTC timestamp}``: one attempt, never retried (a retried create
   whose first answer was lost makes a second key under the same name; and Pioneer allows 50
   creates per hour per account); the store **stages** the new document (a failed stage
   deletes the key, changing nothing);
3. **verify** the new key answers an authenticated call; if not, delete it and change nothing;
4. **store** it: the run's only write of the current value (the store's promotion), then read it
   back. Another rotation's key read back means a concurrent rotation won: this run deletes its
   own key, writes nothing, and reports the key the store holds. Its own earlier value read back
   means the write failed (delete the new key, fail, write nothing) or a secrets backend shadows
   the Variable (write back the value read before, delete the new key, fail).

Step 5, the revocations, is :mod:`~airflow_provider_pioneer.rotation.revoke`. Every step is safe to
repeat, and at every point the store holds a working key, whatever runs at the same time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.sdk.log import mask_secret

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerBillingError,
    PioneerConfigurationError,
    PioneerError,
    PioneerRateLimitError,
)
from airflow_provider_pioneer.rotation.document import StoredKey, build_document
from airflow_provider_pioneer.rotation.naming import (
    created_within,
    key_birth,
    key_names,
    managed_name,
    still_pending,
)
from airflow_provider_pioneer.rotation.run import NewKey, Preflight, Run

__all__ = [
    "check_create_budget",
    "check_in_time",
    "create",
    "new_document",
    "planned_revocations",
    "preflight",
    "prepare_store",
    "store",
    "verify",
]

# A key Pioneer has just created may take a moment to be accepted everywhere: a 401 on the
# verification call is retried this many times (waiting 1 s, 2 s, ...) before the key is discarded.
VERIFY_ATTEMPTS = 3
# Budget failures: waiting or retrying the task does not help, and must not create anything.
BUDGET_ERRORS = (PioneerBillingError,)
# Pioneer allows 50 POST /create-api-key per hour per account (CHANGES-2026-08.md).
CREATE_WINDOW = timedelta(hours=1)
PIONEER_CREATE_LIMIT = 50


def preflight(run: Run) -> Preflight:
    """Step 1: check the setup and the current key; nothing changes here."""
    hook, store, policy = run.hook, run.store, run.policy
    try:
        reader = hook.key_store
    except PioneerConfigurationError as exc:
        raise AirflowFailException(f"{exc.message} Nothing was changed.") from None
    mismatch = store.reader_mismatch(reader, policy.conn_id)
    if mismatch:
        raise AirflowFailException(
            f"{mismatch} Otherwise DAGs keep using a key that this rotation revokes. Nothing was changed."
        )
    stored = run.read()
    try:
        # One read decides: the key in the store is the one every DAG uses now.
        current = stored.api_key or hook.get_api_key()
    except PioneerConfigurationError as exc:
        raise AirflowFailException(f"{exc.message} Nothing was changed.") from None
    mask_secret(current)
    from_store = bool(stored.api_key and stored.api_key == current)
    key_source = store.label if from_store else f"connection {policy.conn_id!r}"
    # One client per key: this one (the current key, no store re-read: it must work itself)
    # lists, creates and discards; the new key's client verifies and revokes.
    run.current = hook.client_for_key(current)
    try:
        records = run.current.list_api_keys()
    except BUDGET_ERRORS as exc:
        raise AirflowFailException(
            f"Pioneer key rotation stopped at preflight, nothing was changed: {exc.message}"
        ) from exc
    except PioneerAuthError as exc:
        run.raise_if_rotated_meanwhile(current)
        raise AirflowFailException(
            f"The current Pioneer key (from {key_source}) is rejected (HTTP {exc.status}), so it "
            f"cannot create its successor. Put a working key in {store.label} "
            "(or the connection's API key field) and rerun. Nothing was changed."
        ) from exc
    live_names = key_names(records)

    old_name, source = _old_key_name(run, stored, current)
    if policy.revoke_old:
        if not old_name:
            hint = ""
            if hook.key_name:
                hint = (
                    f" (The connection extra key_name names the key in the connection's password, "
                    f"but the current key comes from {store.label}.)"
                )
            raise AirflowFailException(
                "Cannot tell which key this rotation replaces, so it could not revoke it: give the "
                "current key's Pioneer-side name in one of three ways: the operator argument "
                "old_key_name, the connection extra key_name, or a "
                f"{store.label} holding the rotation JSON with its 'name'.{hint} "
                "(Or pass revoke_old=False to keep the old key.) Nothing was created."
            )
        if old_name not in live_names:
            raise AirflowFailException(
                f"No live key named {old_name!r} (from {source}) on the account, yet the current key "
                f"works: that is not its name. Fix {source} (the names are listed by "
                "GET /list-api-keys). Nothing was created."
            )
    recent = created_within(
        records, stored.created_recently, policy.prefix, now=datetime.now(UTC), window=CREATE_WINDOW
    )
    run.log.info(
        "Preflight: the current key (from %s) works; it is %s; %d live keys on the account.",
        key_source,
        f"{old_name!r} (from {source})" if old_name else "unnamed",
        len(live_names),
    )
    valid = tuple(r for r in records if isinstance(r, dict))
    return Preflight(current, key_source, stored, old_name, source, valid, tuple(recent))


def _old_key_name(run: Run, stored: StoredKey, current: str) -> tuple[str | None, str]:
    # The store's document describes exactly the key in use; the explicit argument and the
    # connection extra are for the first rotation, before any document exists.
    if stored.name and stored.api_key == current:
        return stored.name, run.store.label
    if run.policy.old_key_name:
        return run.policy.old_key_name, "argument old_key_name"
    # key_name describes the key in the connection's password, nothing else: for a key set by
    # hand in the store it would name (and revoke) the wrong key and leave this one unmanaged.
    if run.hook.key_name and _is_connection_password(run, current):
        return run.hook.key_name, f"connection {run.policy.conn_id!r} extra key_name"
    return None, "nowhere"


def _is_connection_password(run: Run, key: str) -> bool:
    # Compared, never logged.
    password = run.hook.get_connection(run.policy.conn_id).password or ""
    return bool(password) and password == key


def check_create_budget(run: Run, pre: Preflight) -> None:
    """Refuse to create when this prefix already created its hourly budget of keys."""
    recent, prefix, budget = pre.created_recently, run.policy.prefix, run.policy.max_keys_created_per_hour
    if len(recent) < budget:
        return
    births = [b for b in (key_birth(n, prefix) for n in recent) if b is not None]
    free_at = (min(births) + CREATE_WINDOW).strftime("%H:%M UTC") if births else "within the hour"
    raise AirflowFailException(
        f"Pioneer key rotation refused to create a key: {len(recent)} keys named {prefix}-... "
        f"were created in the last hour, and max_keys_created_per_hour is "
        f"{budget} (Pioneer allows {PIONEER_CREATE_LIMIT} per hour per "
        "account). Something rotates in a loop or retries too often: check this DAG's schedule, "
        f"retries and manual runs. Nothing was changed; a rotation can run again after {free_at}."
    )


def create(run: Run, pre: Preflight) -> NewKey:
    """Step 2: create the new key (one attempt only), mask it at once, stage it in the store."""
    assert run.current is not None
    name = managed_name(run.policy.prefix)
    # The client never retries a create: if the server committed and the answer was lost, a
    # retry would make a second key under the same name, and revoking by name would hit both.
    try:
        record = run.current.create_api_key(name)
    except BUDGET_ERRORS as exc:
        raise AirflowFailException(
            f"Pioneer refused to create a key, nothing was changed: {exc.message}"
        ) from exc
    except PioneerRateLimitError as exc:
        # A 429 creates nothing; it is most likely the 50-per-hour limit, which a retry in a
        # few minutes would only hit again.
        wait = f" (Pioneer asks to wait {exc.retry_after:.0f} s)" if exc.retry_after else ""
        raise AirflowFailException(
            f"Pioneer refused to create key {name!r} with HTTP 429{wait}: POST /create-api-key "
            f"allows {PIONEER_CREATE_LIMIT} keys per hour per account. Nothing was created or "
            "changed; the stored key still works. Rerun later, and check what else creates keys "
            "on this account."
        ) from exc
    except PioneerError as exc:
        if isinstance(exc, PioneerAuthError):
            # A 401 creates nothing. The key worked at preflight: most likely a concurrent
            # rotation revoked it since.
            run.raise_if_rotated_meanwhile(pre.current_key)
        # The server may have created the key anyway; its name is unique to this attempt,
        # so revoking by name cannot hit anything else.
        _, outcome = run.discard(name)
        raise AirflowException(
            f"Creating Pioneer key {name!r} failed: {exc.message} {outcome} The stored key is "
            "unchanged; rerun the task."
        ) from exc
    key = record["key"]
    mask_secret(key)
    created_at = str(record.get("created_at") or datetime.now(UTC).isoformat())
    run.log.info("Created Pioneer key %s.", name)
    new = NewKey(key, name, created_at)
    try:
        document = new_document(pre, new, planned_revocations(run, pre, new))
        run.staged = True  # before the call: a stage that raises may have landed, and is dropped then
        run.store.stage(document)
    except Exception as exc:
        # A key that is not staged is never stored: left alive it would live, unstored and
        # counted against the create budget, until a later run sweeps it as an orphan.
        run.log.warning("Staging in %s raised %s; deleting the new key.", run.store.label, type(exc).__name__)
        _, outcome = run.discard(name)
        raise AirflowException(
            f"Staging the new Pioneer key {name!r} in {run.store.label} failed ({type(exc).__name__}). "
            f"{outcome} The stored key is unchanged. {run.store.write_advice}"
        ) from None
    return new


def verify(run: Run, new: NewKey) -> list[dict[str, Any]]:
    """Step 3: the new key must answer an authenticated call and see itself; else delete it."""
    run.fresh = run.hook.client_for_key(new.key)
    records: list[dict[str, Any]] = []
    for attempt in range(1, VERIFY_ATTEMPTS + 1):
        try:
            records = run.fresh.list_api_keys()
            break
        except PioneerAuthError as exc:
            if attempt == VERIFY_ATTEMPTS:
                _fail_verification(run, new, exc.message, budget=False)
            time.sleep(attempt)
        except PioneerError as exc:
            _fail_verification(run, new, exc.message, budget=isinstance(exc, BUDGET_ERRORS))
    if new.name not in key_names(records):
        _fail_verification(run, new, "it works but does not list itself (another account?).", False)
    run.log.info("Verified the new key %s.", new.name)
    return records


def _fail_verification(run: Run, new: NewKey, reason: str, budget: bool) -> NoReturn:
    _, outcome = run.discard(new.name)
    cls = AirflowFailException if budget else AirflowException
    raise cls(
        f"The new Pioneer key {new.name!r} failed its check: {reason} {outcome} The stored key is unchanged."
    )


def check_in_time(run: Run, new: NewKey, started: float) -> None:
    """A key older than the grace period may be swept as an orphan by a concurrent run."""
    grace = run.policy.orphan_grace_period
    if not grace:
        return
    elapsed = time.monotonic() - started
    limit = grace.total_seconds() / 2
    if elapsed <= limit:
        return
    _, outcome = run.discard(new.name)
    raise AirflowException(
        f"Creating and checking the new Pioneer key {new.name!r} took {elapsed:.0f} s, more than half of "
        f"orphan_grace_period ({limit * 2:.0f} s): a concurrent rotation may already count it as an "
        f"orphan and revoke it, so it is not stored. {outcome} The stored key is unchanged; rerun "
        "the task (or raise orphan_grace_period if Pioneer is this slow)."
    )


def planned_revocations(run: Run, pre: Preflight, new: NewKey) -> list[str]:
    """What the new document lists to revoke, as preflight saw the account."""
    old = pre.old_name if run.policy.revoke_old else None
    return still_pending(old, pre.stored.pending_revoke, set(pre.live_names), new.name)


def new_document(pre: Preflight, new: NewKey, pending: list[str]) -> str:
    """The new document: the new key, what it replaces and is to revoke, the create budget's memory."""
    recent = [*pre.created_recently, new.name]
    return build_document(
        new.key,
        new.name,
        new.created_at,
        pending,
        previous_name=pre.old_name,
        created_recently=list(dict.fromkeys(recent)),
    )


def prepare_store(run: Run, pre: Preflight, new: NewKey) -> tuple[str, list[str], StoredKey]:
    """Right before the write: ``(the document, the names it lists to revoke, the store as read now)``."""
    pending = planned_revocations(run, pre, new)
    # Someone may have rotated since preflight: the key the store holds right before this
    # write is replaced by it, so it is revoked too (a run that finished in between would
    # otherwise leave its key alive and stored nowhere).
    replaced = run.read(strict=False)
    if run.policy.revoke_old and run.is_concurrent_rotation(replaced, pre) and replaced.name:
        run.log.info("%s was rotated to %s since preflight; replacing it.", run.store.label, replaced.name)
        pending = [*pending, replaced.name]
    return new_document(pre, new, pending), pending, replaced


def store(run: Run, document: str, new: NewKey, pre: Preflight, expected: StoredKey) -> StoredKey | None:
    """Step 4: the run's only write of the current value (the store's promotion), then read it back.

    :param expected: the store as read right before (a store with versions promotes only over it).
    :returns: ``None`` when the store holds the new key; its value when a concurrent rotation
        stored its key instead. Fails (changing nothing) otherwise.
    """
    label = run.store.label
    write_error: str | None = None
    try:
        run.store.promote(document, expected)
    except Exception as exc:
        # The write may or may not have landed; the read-back below decides.
        write_error = type(exc).__name__
        run.log.warning("Writing %s raised %s; checking what it holds.", label, write_error)
    after = run.read(strict=False)
    if after.api_key == new.key:
        run.log.info("Stored the new key in %s and read it back.", label)
        return None
    if run.is_concurrent_rotation(after, pre):
        return after
    if after.raw != pre.stored.raw:
        # Someone changed the store (not a rotation of this prefix): leave their value alone.
        _, outcome = run.discard(new.name)
        noun = run.store.noun
        raise AirflowFailException(
            f"{label} changed while this rotation stored its key, to a value "
            f"it did not write and that holds no key named {run.policy.prefix}-...: someone edits it by "
            f"hand, or another tool writes it. The {noun} is left as it is. {outcome} Nothing was "
            f"revoked. Make the rotation the only writer of the {noun}, then rerun."
        )
    _unchanged(run, new, pre, write_error)


def _unchanged(run: Run, new: NewKey, pre: Preflight, write_error: str | None) -> NoReturn:
    """The store reads back what preflight read: the write failed, or a backend shadows it."""
    label = run.store.label
    if write_error:
        # The write did not land (the store reads back unchanged). Nothing to put back: a
        # write now could overwrite the key a concurrent rotation stored meanwhile.
        _, outcome = run.discard(new.name)
        raise AirflowException(
            f"Writing {label} failed ({write_error}) and it does not hold the "
            f"new key. {outcome} The stored key is unchanged. {run.store.write_advice}"
        )
    shadowed, fix = run.store.unchanged_after_write()
    restored, how = run.store.restore(pre.stored)
    if not restored:
        # The metastore may keep the new key: deleting it would leave a dead key there, to
        # surface the day the shadowing entry is removed. Keep it alive instead.
        raise AirflowFailException(
            f"{shadowed} Restoring the {run.store.noun} then failed too ({how}), so the metastore may hold the "
            f"new key {new.name!r}: it was kept alive and works (a later run revokes it if it was never "
            f"stored). The old key is untouched. {fix}"
        )
    _, outcome = run.discard(new.name)
    raise AirflowFailException(f"{shadowed} {outcome} {label} was restored. The old key is untouched. {fix}")
