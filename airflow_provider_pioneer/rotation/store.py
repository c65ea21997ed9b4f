"""Where the rotated key lives: the :class:`KeyStore` interface, and the registry of kinds.

A key store holds one rotation document (:mod:`~airflow_provider_pioneer.rotation.document`)
and offers what the rotation's steps and the hook need of it, nothing about Pioneer:

* **read** the current document (past any cache, when asked: after a 401, and always in a
  rotation), and **explain** a value that holds no usable key, with how to fix it;
* **stage** the new document before it is verified (Secrets Manager's ``AWSPENDING``; a no-op
  for a store without versions), then **promote** it to current, the rotation's one write of the
  current value, with the value read right before it as ``expected`` (a store with versions
  makes this a compare-and-set; the steps read the store back either way, which is how a
  concurrent rotation is detected);
* **restore** the value readers saw before, when the write read back unchanged;
* **record** which key it holds, for a person (never the key), and **describe** it for the
  Pioneer view without reading the secret value where the store can (name, created, last rotated).

The Airflow Variable is one implementation (:class:`~airflow_provider_pioneer.rotation.variable.VariableKeyStore`,
kind ``variable``, the default). A new store is a subclass in a module of this package,
registered with :func:`register` under the kind the connection's extra ``key_store`` (or the
operator's ``key_store``) names. Standard library only: a store's module imports its own client
(Airflow's Variable API, boto3) itself.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow_provider_pioneer.rotation.document import Problem, StoredKey, is_masked_placeholder

__all__ = [
    "DEFAULT_KIND",
    "KeyFacts",
    "KeyStore",
    "StoreFactory",
    "kinds",
    "open_store",
    "register",
]

#: The store when neither the operator nor the connection names one: the Airflow Variable.
DEFAULT_KIND = "variable"


@dataclass(frozen=True)
class KeyFacts:
    """What the Pioneer view may show of a store: never the key.

    :param present: whether the store holds a value at all.
    :param name: the stored key's Pioneer-side name, when known (never Airflow's ``***``).
    :param created_at: when Pioneer created it (ISO 8601), when known.
    :param last_rotated: when the store last took a new key (ISO 8601), when the store knows it
        apart from ``created_at`` (a secret's version date); else ``None``.
    :param pending_revoke: names the last writer was to revoke.
    :param problem: why a present value holds no usable key, or ``None``.
    """

    present: bool = False
    name: str | None = None
    created_at: str | None = None
    last_rotated: str | None = None
    pending_revoke: tuple[str, ...] = ()
    problem: Problem | None = None

    @classmethod
    def from_stored(cls, stored: StoredKey, last_rotated: str | None = None) -> KeyFacts:
        """The facts of a parsed document; a masked name or date (``***``) is dropped, not shown."""
        return cls(
            present=stored.present,
            name=_shown(stored.name),
            created_at=_shown(stored.created_at),
            last_rotated=last_rotated,
            pending_revoke=tuple(n for n in stored.pending_revoke if _shown(n)),
            problem=stored.problem,
        )


def _shown(value: str | None) -> str | None:
    """A name or date as stored, unless it is Airflow's mask (a masked document masks them all)."""
    return None if value is None or is_masked_placeholder(value) else value


class KeyStore(ABC):
    """One place the rotated key lives; the rotation's steps and the hook use only this.

    Every method that reads returns a :class:`StoredKey` whose key is already masked
    (``mask_secret``); none logs, raises or returns the key in a message.

    :param log: where the store's own warnings go (the task's log); default a module logger.
    """

    #: The registry name (``variable``, ``aws_secrets_manager``...).
    kind: ClassVar[str]
    #: What messages call this kind of store: ``Variable``, ``secret``.
    noun: ClassVar[str]

    def __init__(self, *, log: logging.Logger | Any = None) -> None:
        self.log = log if log is not None else logging.getLogger(__name__)

    @property
    @abstractmethod
    def label(self) -> str:
        """How messages name this store, e.g. ``Variable 'pioneer_api_key'`` (never a key)."""

    @abstractmethod
    def read(self, *, fresh: bool = True) -> StoredKey:
        """The current document.

        :param fresh: go past any cache (Airflow's secrets cache): after a 401, and in every
            read of a rotation. ``False`` for an ordinary task's first read.
        :raises Exception: the store cannot be read (the hook falls back to the connection's
            password on it; a rotation fails).
        """

    @abstractmethod
    def explain(self, stored: StoredKey, *, consult_records: bool = True) -> str | None:
        """What is wrong with ``stored`` and how to fix it, or ``None`` if it is usable (or absent).

        :param consult_records: also look up the lost key's name in what :meth:`record` wrote
            (a read; only in a task). ``False`` in the view, which has the facts in hand.
        """

    @abstractmethod
    def reader_mismatch(self, reader: KeyStore | None, conn_id: str) -> str | None:
        """Why the connection's DAGs would not read this store (``reader`` is the store the hook
        reads, ``None`` if none), as the start of an error message; ``None`` when they do."""

    def stage(self, document: str) -> None:  # noqa: B027 (a store without versions stages nothing)
        """Keep the new, not yet verified document where readers do not see it (``AWSPENDING``).

        Called once right after the key is created, before it is verified. The promoted
        document may differ from it (names of keys replaced meanwhile). Default: nothing.
        """

    def discard_staged(self) -> None:  # noqa: B027
        """Forget the document this store staged, whose key was deleted (best effort, never raises).

        Called only after :meth:`stage` was (even one that raised). Default: nothing.
        """

    @abstractmethod
    def promote(self, document: str, expected: StoredKey) -> None:
        """Make ``document`` the current value: the rotation's only write of it.

        :param expected: what :meth:`read` returned right before; a store with versions promotes
            only over it (compare-and-set) and raises when another writer came first. The steps
            read the store back after this call whatever it did (raised or not): the value read
            back decides.
        """

    @abstractmethod
    def restore(self, before: StoredKey) -> tuple[bool, str]:
        """Put back ``before`` after a write that read back unchanged; ``(done, how it went)``."""

    def record(  # noqa: B027 (a store whose metadata says it all records nothing)
        self,
        name: str,
        created_at: str | None,
        previous_name: str | None,
        pending_revoke: list[str],
        **extra: Any,
    ) -> None:
        """Note for a person (and :meth:`explain`) which key the store holds, never the key.

        Advice only: never raises. Default: nothing.
        """

    @abstractmethod
    def describe(self) -> KeyFacts:
        """The facts the Pioneer view shows (name, created, last rotated), never the key."""

    def unchanged_after_write(self) -> tuple[str, str]:
        """``(what happened, how to fix it)`` when a write reads back what was there before."""
        return (
            f"Wrote {self.label} but a different value reads back, so DAGs would never see the new key.",
            f"Make {self.label} writable by the rotation and read by the connection.",
        )

    #: How to fix a failed write, the end of its message.
    write_advice: ClassVar[str] = "Check that the store can be written, then rerun."


#: Builds a store: ``(connection extras, connection id, name the operator gives or None, log)``;
#: returns ``None`` when the extras name no such store (the hook then uses the password).
StoreFactory = Callable[[Mapping[str, Any], str, "str | None", Any], "KeyStore | None"]

_FACTORIES: dict[str, StoreFactory] = {}
#: Modules of this package that register a store when imported (a new store adds its module here).
_BUILTIN = ("variable", "secrets_manager")


def _kind(value: Any) -> str:
    """A kind as the registry keys it: the extra and the argument are matched case- and blank-insensitively."""
    return str(value or "").strip().lower()


def _origin(factory: StoreFactory) -> tuple[str, str] | int:
    """Which factory this is: its module and name, so that the same one registered again (a module
    imported anew, a DAG file parsed again in one process) replaces itself instead of failing."""
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", None)
    return (module, name) if isinstance(module, str) and isinstance(name, str) else id(factory)


def register(kind: str, factory: StoreFactory) -> None:
    """Make ``kind`` a value of the ``key_store`` extra and operator argument.

    :raises ValueError: ``kind`` is empty, or another factory has it already (one would silently
        replace the other, the built-in Variable store included, depending on import order). The
        same factory (same module and name) registered again replaces itself.
    """
    chosen = _kind(kind)
    if not chosen:
        raise ValueError(f"A key_store kind must not be empty (got {kind!r}).")
    known = _FACTORIES.get(chosen)
    if known is not None and _origin(known) != _origin(factory):
        raise ValueError(
            f"key_store kind {chosen!r} is registered already; register the store under a name of its own."
        )
    _FACTORIES[chosen] = factory


def kinds() -> list[str]:
    """The registered kinds."""
    _load_builtin()
    return sorted(_FACTORIES)


def open_store(
    kind: str | None,
    extras: Mapping[str, Any],
    *,
    conn_id: str,
    name: str | None = None,
    log: logging.Logger | Any = None,
) -> KeyStore | None:
    """The store of ``kind`` (``None``: the extra ``key_store``, else the Variable).

    :param extras: the connection's extras (a store reads its settings there).
    :param conn_id: the connection, for messages.
    :param name: where in the store the key is, as the operator says (``variable_key``); ``None``:
        as the extras say.
    :raises ValueError: an unknown kind, naming the known ones (a blank one is the default); a
        factory that fails (other than with its own ``PioneerError``), saying how.
    """
    _load_builtin()
    chosen = _kind(kind) or _kind(extras.get("key_store")) or DEFAULT_KIND
    factory = _FACTORIES.get(chosen)
    if factory is None:
        raise ValueError(
            f"Connection {conn_id!r}: unknown key_store {chosen!r}; use one of {', '.join(kinds())}."
        )
    try:
        store = factory(extras, conn_id, name, log)
    except ValueError:
        raise  # the store's own message: which setting to fix
    except Exception as exc:
        from airflow_provider_pioneer.exceptions import PioneerError  # here: no Airflow at import

        if isinstance(exc, PioneerError):
            raise  # the store's own message (PioneerConfigurationError: which setting to fix)
        # A factory failing otherwise (its client library missing...) is a setup problem too:
        # one line that says so, not a traceback from inside the store.
        raise ValueError(
            f"Connection {conn_id!r}: key_store {chosen!r} could not be opened ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Fix the connection's extras (or install what the store needs), then rerun."
        ) from None
    if store is not None and not isinstance(store, KeyStore):
        raise ValueError(
            f"Connection {conn_id!r}: key_store {chosen!r} gave a {type(store).__name__}, not a KeyStore "
            "(a bug in the store's factory)."
        )
    return store


def _load_builtin() -> None:
    # The built-in stores register themselves on import; imported here, not at the top, so that
    # this module stays importable without Airflow (and a store's client loads only when used).
    import importlib

    for module in _BUILTIN:
        importlib.import_module(f"{__package__}.{module}")
