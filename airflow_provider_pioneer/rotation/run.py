"""One rotation run: its settings, its store, its two clients, and the helpers every step shares.

The steps (:mod:`~airflow_provider_pioneer.rotation.steps`, :mod:`~airflow_provider_pioneer.rotation.revoke`)
are functions over a :class:`Run`; the operator builds one per task try and orchestrates them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_pioneer._compat import AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerAuthError, PioneerError, PioneerNotFoundError
from airflow_provider_pioneer.rotation.document import StoredKey
from airflow_provider_pioneer.rotation.naming import is_managed, key_names

if TYPE_CHECKING:
    from airflow_provider_pioneer.client import PioneerClient
    from airflow_provider_pioneer.hooks.pioneer import PioneerHook
    from airflow_provider_pioneer.rotation.store import KeyStore

__all__ = ["NewKey", "Policy", "Preflight", "Run", "SupersededBeforeStart"]


@dataclass(frozen=True)
class Policy:
    """The operator's settings for one run (rendered and checked).

    :param conn_id: the Pioneer connection.
    :param prefix: the managed-key prefix in force.
    :param revoke_old: revoke the key being replaced.
    :param old_key_name: the current key's name as the operator argument gives it.
    :param orphan_grace_period: the youngest age at which an unstored managed key is an orphan.
    :param max_keys_created_per_hour: the create budget of the prefix.
    """

    conn_id: str
    prefix: str
    revoke_old: bool = True
    old_key_name: str | None = None
    orphan_grace_period: timedelta = timedelta(minutes=15)
    max_keys_created_per_hour: int = 10


@dataclass(frozen=True)
class Preflight:
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
class NewKey:
    """The key this run created (the key itself never in the repr)."""

    key: str = field(repr=False)
    name: str
    created_at: str


class SupersededBeforeStart(Exception):
    """The current key was revoked since preflight read it: a concurrent rotation replaced it."""

    def __init__(self, holder: StoredKey) -> None:
        super().__init__(holder.name)
        self.holder = holder


@dataclass
class Run:
    """One rotation: settings, store, hook, log, and one client per key (current and new).

    :param policy: the settings.
    :param store: where the key lives.
    :param hook: the connection's settings, and the clients.
    :param log: the task's log.
    """

    policy: Policy
    store: KeyStore
    hook: PioneerHook
    log: logging.Logger | Any
    #: The current key's client: lists, creates and discards.
    current: PioneerClient | None = None
    #: The new key's client: verifies and revokes.
    fresh: PioneerClient | None = None
    #: Whether this run asked the store to stage a document (a stage that raised may have landed).
    staged: bool = False

    def close(self) -> None:
        """Close both clients (a retry in the same process must not reuse one)."""
        for client in (self.current, self.fresh):
            if client is not None:
                client.close()
        self.current = self.fresh = None

    def read(self, strict: bool = True) -> StoredKey:
        """The store now, past any cache.

        :param strict: fail (``AirflowFailException``, nothing changed) on a value that holds no
            usable key, with how to fix it; else return it as read.
        """
        stored = self.store.read(fresh=True)
        if strict:
            message = self.store.explain(stored)
            if message:
                raise AirflowFailException(
                    f"Pioneer key rotation did not start: {message} Nothing was changed."
                )
        return stored

    def is_concurrent_rotation(self, after: StoredKey, pre: Preflight) -> bool:
        """Whether the store now holds another rotation's new key (not what preflight read)."""
        return bool(
            after.api_key
            and after.name
            and is_managed(after.name, self.policy.prefix)
            and after.name != pre.stored.name
            and after.api_key != pre.current_key
        )

    def raise_if_rotated_meanwhile(self, used_key: str) -> None:
        """After a 401 on a key that worked: a concurrent rotation may have replaced and revoked it."""
        now = self.read(strict=False)
        if now.api_key and now.api_key != used_key and now.name and is_managed(now.name, self.policy.prefix):
            raise SupersededBeforeStart(now)

    def delete_key(self, name: str) -> None:
        """Revoke ``name`` with the new key; with the current one if a concurrent rotation revoked it."""
        clients = [c for c in (self.fresh, self.current) if c is not None]
        for i, client in enumerate(clients):
            try:
                client.delete_api_key(name)
                return
            except PioneerAuthError:
                if i + 1 == len(clients):
                    raise

    def discard(self, name: str) -> tuple[bool, str]:
        """Revoke a key this run created and will not use; ``(gone, a sentence saying how it went)``.

        With the current key first (the new one may not work); if that key was revoked meanwhile
        (a concurrent rotation), with the new key itself. A document this run staged goes with it;
        a run that staged nothing leaves the store alone (what is staged there is another run's).
        """
        if self.staged:
            self.store.discard_staged()
            self.staged = False
        clients = [c for c in (self.current, self.fresh) if c is not None]
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
