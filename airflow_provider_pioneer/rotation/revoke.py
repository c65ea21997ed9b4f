"""Step 5 of a rotation, and what a run that lost a race does.

**revoke** the old key, names an earlier run left pending, and managed keys nobody holds that are
older than ``orphan_grace_period`` (a young one may be a concurrent run's, not yet stored), with
the NEW key; the store is re-read before each revocation and the key it holds is never revoked;
404 counts as done. A run **superseded** by a concurrent rotation drops its own key, keeps theirs,
and still revokes what it was to revoke.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerError, PioneerNotFoundError
from airflow_provider_pioneer.rotation.document import StoredKey
from airflow_provider_pioneer.rotation.naming import is_managed, key_birth, orphans
from airflow_provider_pioneer.rotation.run import NewKey, Preflight, Run

__all__ = ["confirm", "revoke", "revoke_names", "superseded", "superseded_before_start"]


def revoke(
    run: Run, new: NewKey, pre: Preflight, pending: list[str], records: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """Step 5: revoke the old key, leftovers of earlier runs, and orphans, with the NEW key.

    Returns ``(revoked, failed)``.
    """
    assert run.fresh is not None
    policy = run.policy
    with suppress(PioneerError):  # if this fails, the listing from the verification will do
        records = run.fresh.list_api_keys()
    keep = {new.name, *pending}
    if not policy.revoke_old and pre.old_name:
        keep.add(pre.old_name)
    if policy.revoke_old or pre.old_name:
        strays = orphans(
            records,
            policy.prefix,
            keep,
            now=datetime.now(UTC),
            grace=policy.orphan_grace_period,
            before=key_birth(new.name, policy.prefix, new.created_at),
        )
    else:
        # The kept old key has no known name: it could be any managed key, so touch none.
        run.log.info("revoke_old=False and the old key's name is unknown: no orphan sweep.")
        strays = []
    if strays:
        run.log.info(
            "Revoking managed keys nobody holds, older than %s (orphans of earlier runs): %s.",
            policy.orphan_grace_period,
            strays,
        )
    return revoke_names(run, [*pending, *strays], spare=new.name)


def confirm(run: Run, new: NewKey, pre: Preflight, revoked: list[str], failed: list[str]) -> dict[str, Any]:
    """Step 6: the store must still hold the new key; record, report, and return ``{name, created_at, revoked}``.

    :raises AirflowException: some revocations failed (they stay pending; the next run revokes them).
    """
    store, label = run.store, run.store.label
    now_held = run.read(strict=False)
    if now_held.api_key != new.key:
        if now_held.api_key and now_held.name and is_managed(now_held.name, run.policy.prefix):
            # Stored, then replaced by a concurrent rotation while this run was revoking (which
            # may have revoked this run's key too: then some revocations failed with 401).
            return superseded(run, new, failed, now_held, stored=True, revoked=revoked)
        raise AirflowFailException(
            f"Rotated to key {new.name!r} and stored it in {label} (revoked "
            f"{revoked or 'nothing'}), but the {store.noun} was then changed to a value this rotation did "
            f"not write. Key {new.name!r} is kept alive. Make the rotation the only writer of the "
            f"{store.noun}, check what it holds now, then rerun."
        )
    store.record(new.name, new.created_at, pre.old_name, failed, revoked=revoked)
    run.log.info(
        "Pioneer key rotated: %s is stored in %s; revoked %s.", new.name, label, revoked or "nothing"
    )
    if failed:
        raise AirflowException(
            f"Rotated to key {new.name!r} (stored and working) but could not revoke {failed}; they stay "
            f"in the pending_revoke list of {label} and the next run revokes them."
        )
    return {"name": new.name, "created_at": new.created_at, "revoked": revoked}


def revoke_names(run: Run, names: list[str], spare: str | None) -> tuple[list[str], list[str]]:
    """Revoke each name, unless the store holds it right now; ``(revoked, failed)``."""
    revoked: list[str] = []
    failed: list[str] = []
    label = run.store.label
    for name in dict.fromkeys(names):
        if name == spare:  # never, whatever the bookkeeping says
            continue
        holder = run.read(strict=False)
        if holder.name is None:
            # A plain key or an unreadable value: which key it is cannot be told, so none of
            # the candidates can be proven unused.
            run.log.warning("%s no longer holds a rotation document; not revoking %s.", label, name)
            failed.append(name)
            continue
        if holder.name == name:
            run.log.warning("%s holds %s now; not revoking it.", label, name)
            continue
        try:
            run.delete_key(name)
        except PioneerNotFoundError:
            pass  # gone already: done
        except PioneerError as exc:
            run.log.warning("Could not revoke Pioneer key %s: %s", name, exc.message)
            failed.append(name)
            continue
        revoked.append(name)
    return revoked, failed


def superseded_before_start(run: Run, holder: StoredKey) -> dict[str, Any]:
    """The current key was replaced (and revoked) by a concurrent rotation before this run created one."""
    run.log.warning(
        "Another rotation replaced the key in %s while this run was starting: it now "
        "holds %s, a working key. This run created and revoked nothing.",
        run.store.label,
        holder.name,
    )
    return {
        "name": holder.name,
        "created_at": holder.created_at,
        "revoked": [],
        "superseded": True,
        "discarded": None,
    }


def superseded(
    run: Run,
    new: NewKey,
    pending: list[str],
    holder: StoredKey,
    *,
    stored: bool,
    revoked: list[str] | None = None,
) -> dict[str, Any]:
    """A concurrent rotation stored its key: drop this run's own key, keep theirs.

    Nothing is written back. This run still revokes the names it was to revoke (never the one
    the store holds): the winner may have read the store after this run's write and have
    another old key on its list, and these would then stay alive forever.
    """
    revoked = list(revoked or [])
    more, failed = revoke_names(run, pending, spare=new.name)
    revoked += more
    deleted, outcome = run.discard(new.name)
    when = "after this run stored its own" if stored else "while this run was storing its own"
    fate = "was discarded" if deleted else "could not be deleted (a later rotation revokes it as an orphan)"
    label = run.store.label
    run.log.warning(
        "Another rotation stored key %s in %s %s (%s); this run's key %s. %s holds "
        "%s, a working key. Revoked %s.",
        holder.name,
        label,
        when,
        new.name,
        fate,
        label,
        holder.name,
        revoked or "nothing",
    )
    run.log.info("%s", outcome)
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
        run.log.warning(
            "Could not revoke %s (no key of this run may any more); a later rotation revokes managed "
            "keys among them as orphans, others must be revoked by hand.",
            failed,
        )
        result["not_revoked"] = failed
    return result
