"""The Airflow Variable as a key store (kind ``variable``, the default).

The key Variable (named by the connection's extra ``key_variable`` and the operator's
``variable_key``) holds the rotation document and is the one source of truth; the companion
Variable (:mod:`~airflow_provider_pioneer.rotation.companion`) only tells a human, and the
recovery advice, which key it holds, under a name Airflow does not mask. A failed companion write
never fails a rotation. A Variable has no versions: staging is a no-op, the promotion is one
``Variable.set``, and the rotation's read-backs detect a concurrent writer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from airflow.sdk import Variable
from airflow.sdk.log import mask_secret

from airflow_provider_pioneer.rotation.companion import build_info, info_variable_name, lost_key_name
from airflow_provider_pioneer.rotation.document import StoredKey, parse_stored, problem_message
from airflow_provider_pioneer.rotation.store import KeyFacts, KeyStore, register

__all__ = ["VariableKeyStore", "parse_stored_key", "recorded_key_name"]

_DESCRIPTION = "Pioneer API key, rotated by PioneerKeyRotationOperator. Do not edit by hand."


def recorded_key_name(variable_key: str) -> str | None:
    """The key name the rotation's unmasked companion Variable records for ``variable_key`` (or ``None``)."""
    info = info_variable_name(variable_key)
    if info is None:
        return None
    try:
        return lost_key_name(Variable.get(info, default=None), variable_key)
    except Exception:  # advice only: never hide the real problem behind a read failure
        return None


def parse_stored_key(
    value: Any, variable: str = "the key Variable", lost_name: Callable[[], str | None] | None = None
) -> str | None:
    """The API key inside a Variable's value: a plain key, or the rotation JSON ``{"api_key": ...}``.

    :param value: the Variable's value (``None``: absent).
    :param variable: its name, for the error message.
    :param lost_name: reads the lost key's name from the rotation's unmasked companion Variable,
        called only for a masked value.
    :raises PioneerConfigurationError: the value holds no usable key (malformed JSON, a document
        without a key, Airflow's masked ``***`` placeholder), with how to fix it.
    """
    from airflow_provider_pioneer.exceptions import PioneerConfigurationError

    stored = parse_stored(value)
    recorded = lost_name() if stored.problem == "masked" and lost_name is not None else None
    message = problem_message(variable, stored, recorded, info_variable_name(variable))
    if message:
        raise PioneerConfigurationError(message)
    return stored.api_key


class VariableKeyStore(KeyStore):
    """The rotated key in an Airflow Variable, as a JSON rotation document (or a plain key).

    :param name: the Variable's name (it must contain ``api_key`` for a rotation, so Airflow masks it).
    :param log: where warnings go (the task's log).
    :param read_value: reads the Variable's raw value by name, for :meth:`describe` outside a task
        (the Pioneer view reads the metadata DB); default ``Variable.get``.
    """

    kind: ClassVar[str] = "variable"
    noun: ClassVar[str] = "Variable"
    write_advice: ClassVar[str] = (
        "Check that Airflow can write Variables (metastore, API server), then rerun."
    )

    def __init__(
        self,
        name: str,
        *,
        log: logging.Logger | Any = None,
        read_value: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__(log=log)
        self.name = name
        self._read_value = read_value

    def __repr__(self) -> str:
        return f"VariableKeyStore({self.name!r})"

    @property
    def label(self) -> str:
        return f"Variable {self.name!r}"

    def _get(self) -> Any:
        if self._read_value is not None:
            return self._read_value(self.name)
        return Variable.get(self.name, default=None)

    def read(self, *, fresh: bool = True) -> StoredKey:
        if fresh:
            # With [secrets] use_cache on, Variable.get may serve the pre-rotation key for the
            # cache's whole TTL.
            try:
                from airflow.sdk.execution_time.cache import SecretCache

                SecretCache.invalidate_variable(self.name)
            except Exception:  # the cache is an optimisation; a stale read is caught by the checks
                self.log.debug("Could not invalidate the cached Variable %r.", self.name)
        stored = parse_stored(self._get())
        if stored.api_key:
            mask_secret(stored.api_key)
        return stored

    def explain(self, stored: StoredKey, *, consult_records: bool = True) -> str | None:
        if not consult_records:
            return problem_message(self.name, stored)
        lost = recorded_key_name(self.name) if stored.problem == "masked" else None
        return problem_message(self.name, stored, lost, info_variable_name(self.name))

    def reader_mismatch(self, reader: KeyStore | None, conn_id: str) -> str | None:
        if reader is not None and not isinstance(reader, VariableKeyStore):
            # Its key_variable may well name this Variable: the store kind is what to fix.
            return (
                f"Connection {conn_id!r} must read the key this task rotates, {self.label}, but it reads "
                f"{reader.label} (its extra key_store): set key_store to {self.kind!r} (or remove it) and "
                f"key_variable to {self.name!r}."
            )
        held = reader.name if isinstance(reader, VariableKeyStore) else None
        if held == self.name:
            return None
        return (
            f"Connection {conn_id!r} must read the key this task rotates: set its extra "
            f"key_variable to {self.name!r} (it is {held!r})."
        )

    def promote(self, document: str, expected: StoredKey) -> None:
        # A Variable has no compare-and-set: the steps' read-back tells a concurrent writer.
        Variable.set(self.name, document, description=_DESCRIPTION)

    def restore(self, before: StoredKey) -> tuple[bool, str]:
        """Put back what readers saw before the write; ``(done, how it went)``.

        Ideally the metastore's own earlier value; but a task cannot read the metastore behind a
        shadowing backend: Variable.get asks the backends first, and so does the Execution API's
        variable endpoint on the server side. So this writes the value every reader saw, the
        shadow's: the key DAGs use now, working, so the metastore never keeps a deleted key (it
        would surface the day the shadowing entry is removed). The metastore's own earlier value
        is overwritten; the key it named stays alive, untouched.
        """
        try:
            if before.present and before.raw is not None:
                Variable.set(self.name, before.raw)
            else:
                Variable.delete(self.name)
        except Exception as exc:
            return False, f"{type(exc).__name__}"
        return True, "restored"

    def record(
        self,
        name: str,
        created_at: str | None,
        previous_name: str | None,
        pending_revoke: list[str],
        **extra: Any,
    ) -> None:
        """Record in the companion Variable which key this Variable holds (never the key itself)."""
        info = info_variable_name(self.name)
        if info is None:
            self.log.warning(
                "Variable %r: no unmasked companion name can be derived from it, so the stored key's name "
                "is kept only in its (masked) document.",
                self.name,
            )
            return
        try:
            Variable.set(
                info,
                build_info(self.name, name, created_at, previous_name, pending_revoke, **extra),
                description=f"Which Pioneer key Variable {self.name!r} holds (no key here). Written by "
                "PioneerKeyRotationOperator; do not edit.",
            )
        except Exception as exc:  # advice only: the key itself is stored and read back already
            self.log.warning(
                "Could not write Variable %r (%s); the rotation itself is done.", info, type(exc).__name__
            )

    def describe(self) -> KeyFacts:
        # The Variable's value is the document: it is parsed here and the key dropped at once.
        return KeyFacts.from_stored(parse_stored(self._get()))

    def unchanged_after_write(self) -> tuple[str, str]:
        env = f"AIRFLOW_VAR_{self.name.upper()}"
        return (
            f"Wrote {self.label} but a different value reads back: a secrets backend (an environment "
            f"variable {env}, Vault, AWS Secrets Manager, ...) shadows it, so DAGs would never see the "
            "new key.",
            "Remove the shadowing entry, or point variable_key and the connection's key_variable at a "
            "Variable the rotation can own.",
        )


def _open(extras: Mapping[str, Any], conn_id: str, name: str | None, log: Any) -> VariableKeyStore | None:
    # The operator names its Variable (variable_key); the hook reads the one the extra names.
    chosen = name or extras.get("key_variable")
    return VariableKeyStore(str(chosen), log=log) if chosen else None


register(VariableKeyStore.kind, _open)
