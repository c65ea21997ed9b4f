"""AWS Secrets Manager as a key store (kind ``aws_secrets_manager``); the Variable is the first.

The secret holds the same JSON document as the key Variable (``{"api_key", "name", "created_at",
"pending_revoke", ...}``, :mod:`~airflow_provider_pioneer.rotation.document`), so Airflow's
``SecretsManagerBackend`` serves it as that Variable unchanged. Writes follow Secrets Manager's
own versioning, as its rotation functions do (create, set, test, finish):

* **stage**: the new document goes in as a new version labelled ``AWSPENDING``
  (``PutSecretValue``) before the key is verified; nobody reads it yet;
* **promote**: the promoted document (the staged one, or one naming more keys to revoke) is that
  pending version; ``UpdateSecretVersionStage`` moves ``AWSCURRENT`` to it *from the version
  read right before* (``RemoveFromVersionId``): Secrets Manager refuses when ``AWSCURRENT`` is on
  another version by then, so two rotations at once cannot both promote. The old version becomes
  ``AWSPREVIOUS``; the ``AWSPENDING`` label is then dropped.
* Each version's ``ClientRequestToken`` is derived from the document without its key (the key's
  name is unique to it): a retried put is the same version, never a second one.
* **record**: tags on the secret (``pioneer:key-name``, ``pioneer:key-created-at``...), which
  ``DescribeSecret`` returns: the Pioneer view reads them, and the current version's date, without
  reading the secret value.

Every call goes through the Amazon provider's ``SecretsManagerHook`` (its boto3 client: the AWS
connection's credentials, region and endpoint). Errors name the secret and the AWS error code,
never a value: a botocore message may quote a parameter, and the parameter may be the key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from airflow_provider_pioneer.exceptions import PioneerConfigurationError
from airflow_provider_pioneer.rotation.document import StoredKey, parse_stored
from airflow_provider_pioneer.rotation.store import KeyFacts, KeyStore, register

__all__ = ["KIND", "SecretsManagerError", "SecretsManagerKeyStore"]

#: The connection extra (or operator argument) ``key_store`` that selects this store.
KIND = "aws_secrets_manager"
CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
# Namespace of the ClientRequestTokens.
_TOKENS = uuid.UUID("8d6f1c2e-4a7b-5e0f-9c3d-2b1a0e9f8d7c")
#: The tags record() writes (what the view shows); values Secrets Manager tags accept.
TAGS = {
    "name": "pioneer:key-name",
    "created_at": "pioneer:key-created-at",
    "previous_name": "pioneer:previous-key-name",
}


class SecretsManagerError(PioneerConfigurationError):
    """A Secrets Manager call failed; the message names the secret and the error code, no value."""

    def __init__(self, action: str, secret_id: str, exc: BaseException) -> None:
        code = error_code(exc)
        super().__init__(
            f"AWS Secrets Manager {action} of secret {secret_id!r} failed ({code}). Check the AWS "
            "connection's credentials and region, the secret's name, and that the worker's role allows "
            f"secretsmanager:{action} on it (see the key rotation docs, AWS Secrets Manager).",
            code=code,
        )


class PromotionRefused(Exception):
    """``AWSCURRENT`` was not on the version the rotation read: another writer came first."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore error (else the exception's type): never its message."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


class SecretsManagerKeyStore(KeyStore):
    """The key document in one Secrets Manager secret (create the secret once, by hand or IaC).

    :param secret_id: the secret's name or ARN (the connection extra ``key_store_id``). With
        Airflow's ``SecretsManagerBackend`` reading Variables under ``variables_prefix``, it is
        ``{variables_prefix}/{key_variable}``.
    :param aws_conn_id: the Airflow AWS connection (credentials, region, ``endpoint_url``);
        ``None``: boto3's own credential chain (the worker's role).
    :param region_name: overrides the connection's region.
    :param key_variable: the Variable the connection reads the key as (served from this secret
        by the deployment's ``SecretsManagerBackend``), if any: checked to be this secret.
    :param log: where warnings go (the task's log).
    """

    kind: ClassVar[str] = KIND
    noun: ClassVar[str] = "secret"
    write_advice: ClassVar[str] = (
        "Check that the worker's AWS role may secretsmanager:PutSecretValue and "
        "secretsmanager:UpdateSecretVersionStage on the secret, then rerun."
    )

    def __init__(
        self,
        secret_id: str,
        *,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        key_variable: str | None = None,
        log: Any = None,
    ) -> None:
        super().__init__(log=log)
        self.secret_id = secret_id
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.key_variable = key_variable
        self._staged: str | None = None

    def __repr__(self) -> str:
        return f"SecretsManagerKeyStore(secret_id={self.secret_id!r}, aws_conn_id={self.aws_conn_id!r})"

    @property
    def label(self) -> str:
        return f"AWS Secrets Manager secret {self.secret_id!r}"

    @cached_property
    def client(self) -> Any:
        """The boto3 client of the Amazon provider's hook (built in the task, never at parse time)."""
        from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

        return SecretsManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).get_conn()

    def _call(self, action: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, "".join(f"_{c.lower()}" if c.isupper() else c for c in action)[1:])
        try:
            return dict(method(SecretId=self.secret_id, **kwargs))
        except Exception as exc:
            raise SecretsManagerError(action, self.secret_id, exc) from None

    # -- reads ----------------------------------------------------------------------------------

    def read(self, *, fresh: bool = True) -> StoredKey:
        """The current document.

        :param fresh: ``True`` (a rotation, a 401): ``AWSCURRENT`` asked of Secrets Manager by label,
            with its version id, and Airflow's cached copy of ``key_variable`` dropped, so that
            later reads through the backend see it too. ``False`` (a task's first read): with
            ``key_variable`` set, that Variable the way Airflow reads it (the deployment's
            ``SecretsManagerBackend``, its cache); else the secret, as with ``True``.
        """
        from airflow.sdk.log import mask_secret

        if self.key_variable:
            if not fresh:
                from airflow.sdk import Variable

                stored = parse_stored(Variable.get(self.key_variable, default=None))
                if stored.api_key:
                    mask_secret(stored.api_key)
                return stored
            self._forget_cached()
        try:
            answer = self.client.get_secret_value(SecretId=self.secret_id, VersionStage=CURRENT)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException" and self._exists():
                return StoredKey()  # the secret has no version yet: the connection's password is used
            raise SecretsManagerError("GetSecretValue", self.secret_id, exc) from None
        stored = parse_stored(answer.get("SecretString"))
        if stored.api_key:
            mask_secret(stored.api_key)
        return _with_version(stored, str(answer["VersionId"]))

    def _forget_cached(self) -> None:
        try:
            from airflow.sdk.execution_time.cache import SecretCache

            SecretCache.invalidate_variable(str(self.key_variable))
        except Exception:  # the cache is an optimisation
            self.log.debug("Could not invalidate the cached Variable %r.", self.key_variable)

    def _exists(self) -> bool:
        try:
            self.client.describe_secret(SecretId=self.secret_id)
        except Exception:
            return False
        return True

    def explain(self, stored: StoredKey, *, consult_records: bool = True) -> str | None:
        if stored.problem is None:
            return None
        what = {
            "malformed": "malformed JSON",
            "masked": "Airflow's masked placeholder '***'",
            "not_a_document": "no API key",
        }[stored.problem]
        return (
            f"{self.label} holds {what} in its AWSCURRENT version, not a usable API key. Put a new "
            'version holding {"api_key": "<key>", "name": "<its name in Pioneer>"} (a working key; '
            "create one in the Pioneer console if none is at hand), then rerun; the next rotation "
            "replaces it."
        )

    def reader_mismatch(self, reader: KeyStore | None, conn_id: str) -> str | None:
        if not isinstance(reader, SecretsManagerKeyStore) or reader.secret_id != self.secret_id:
            held = reader.label if reader is not None else "no store"
            return (
                f"Connection {conn_id!r} must read the key this task rotates: set its extras key_store "
                f"to {KIND!r} and key_store_id to {self.secret_id!r} (it reads {held})."
            )
        if not self.key_variable:
            return None
        from airflow_provider_pioneer.rotation.secrets_backend import backend_mismatch

        self._forget_cached()
        return backend_mismatch(self.key_variable, self.secret_id, self.read().raw, self.label, conn_id)

    def describe(self) -> KeyFacts:
        """Name and dates from the secret's tags and its current version's date; no value is read."""
        described = self._call("DescribeSecret")
        stages = described.get("VersionIdsToStages") or {}
        current = next((v for v, labels in stages.items() if CURRENT in labels), None)
        if current is None:
            return KeyFacts()
        tags = {t.get("Key"): t.get("Value") for t in described.get("Tags") or []}
        rotated = None
        versions = self._call("ListSecretVersionIds")
        for entry in versions.get("Versions", []):
            if entry.get("VersionId") == current:
                rotated = _iso(entry.get("CreatedDate"))
        return KeyFacts(
            present=True,
            name=tags.get(TAGS["name"]) or None,
            created_at=tags.get(TAGS["created_at"]) or None,
            last_rotated=rotated or _iso(described.get("LastChangedDate")),
        )

    # -- writes ---------------------------------------------------------------------------------

    def version_id_for(self, document: str) -> str:
        """The version (and ClientRequestToken) of ``document``: derived from all but its key."""
        parsed = json.loads(document)
        parsed.pop("api_key", None)
        return str(uuid.uuid5(_TOKENS, f"{self.secret_id}\n{json.dumps(parsed, sort_keys=True)}"))

    def _put_pending(self, document: str) -> str:
        version_id = self.version_id_for(document)
        self._call(
            "PutSecretValue", SecretString=document, ClientRequestToken=version_id, VersionStages=[PENDING]
        )
        return version_id

    def stage(self, document: str) -> None:
        """The new document as an ``AWSPENDING`` version (moving the label off any older one).

        Not in a secret without versions: Secrets Manager makes its first version ``AWSCURRENT``
        whatever the labels asked, and the key is not verified yet (the first rotation, from the
        connection's password, then writes once, at the promotion).
        """
        try:
            if self._current_version() is None:
                return
            self._staged = self._put_pending(document)
        except SecretsManagerError as exc:
            # The promotion puts the document itself and fails the same way, after which the
            # rotation deletes the new key; failing here would leave that key alive, unstored.
            self.log.warning("Could not stage the new key in %s (%s).", self.label, exc.code)

    def discard_staged(self) -> None:
        if self._staged is not None:
            self._drop_pending(self._staged)
            self._staged = None

    def _drop_pending(self, version_id: str) -> None:
        try:
            self.client.update_secret_version_stage(
                SecretId=self.secret_id, VersionStage=PENDING, RemoveFromVersionId=version_id
            )
        except Exception as exc:  # a label left behind is moved by the next put: never fail for it
            self.log.info("Left the AWSPENDING label on %s (%s).", self.label, error_code(exc))

    def promote(self, document: str, expected: StoredKey) -> None:
        """``AWSCURRENT`` moves to ``document``'s version only from ``expected.version``.

        :raises PromotionRefused: ``AWSCURRENT`` is on another version (another writer came first).
        """
        try:
            self._promote(document, expected)
        except SecretsManagerError as exc:
            # The steps only name the exception's type: say what AWS answered (never a value).
            self.log.warning("%s", exc.message)
            raise

    def _promote(self, document: str, expected: StoredKey) -> None:
        version_id = self._put_pending(document)
        kwargs: dict[str, Any] = {"VersionStage": CURRENT, "MoveToVersionId": version_id}
        if expected.version is not None:
            kwargs["RemoveFromVersionId"] = expected.version
        holder = self._current_version()
        if holder == version_id:
            pass  # the secret's first version is current from its put on
        elif holder != expected.version:
            raise PromotionRefused(f"AWSCURRENT of {self.label} moved since it was read")
        else:
            try:
                self.client.update_secret_version_stage(SecretId=self.secret_id, **kwargs)
            except Exception as exc:
                if error_code(exc) == "InvalidParameterException":
                    # Moved between the look and the move: Secrets Manager refused it.
                    raise PromotionRefused(f"AWSCURRENT of {self.label} moved since it was read") from None
                raise SecretsManagerError("UpdateSecretVersionStage", self.secret_id, exc) from None
        # The put moved AWSPENDING off any staged version that differs; only this one holds it.
        self._drop_pending(version_id)
        self._staged = None

    def _current_version(self) -> str | None:
        stages = self._call("DescribeSecret").get("VersionIdsToStages") or {}
        return next((v for v, labels in stages.items() if CURRENT in labels), None)

    def restore(self, before: StoredKey) -> tuple[bool, str]:
        """Move ``AWSCURRENT`` back to ``before``'s version (a promotion that read back unchanged
        never moved it: then there is nothing to do)."""
        try:
            holder = self._current_version()
            if before.version is None or holder in (None, before.version):
                return True, "restored"
            self.client.update_secret_version_stage(
                SecretId=self.secret_id,
                VersionStage=CURRENT,
                MoveToVersionId=before.version,
                RemoveFromVersionId=holder,
            )
        except Exception as exc:
            return False, error_code(exc)
        return True, "restored"

    def record(
        self,
        name: str,
        created_at: str | None,
        previous_name: str | None,
        pending_revoke: list[str],
        **extra: Any,
    ) -> None:
        """Tag the secret with the key's name and dates (never the key): what the view shows."""
        values = {"name": name, "created_at": created_at, "previous_name": previous_name}
        tags = [{"Key": TAGS[k], "Value": str(v)[:256]} for k, v in values.items() if v]
        try:
            self.client.tag_resource(SecretId=self.secret_id, Tags=tags)
        except Exception as exc:  # advice only: the key itself is promoted and read back already
            self.log.warning(
                "Could not tag %s (%s); the rotation itself is done.", self.label, error_code(exc)
            )

    def unchanged_after_write(self) -> tuple[str, str]:
        return (
            f"Promoted the new key in {self.label} but AWSCURRENT reads back the old version, so DAGs "
            "would never see the new key.",
            "Check the secret's versions (aws secretsmanager describe-secret) and that nothing else "
            "moves its AWSCURRENT label.",
        )


def _with_version(stored: StoredKey, version: str) -> StoredKey:
    from dataclasses import replace

    return replace(stored, version=version)


def _open(
    extras: Mapping[str, Any], conn_id: str, name: str | None, log: Any
) -> SecretsManagerKeyStore | None:
    # The secret is the connection's (key_store_id): the operator's variable_key names a Variable.
    # Not "secret_id": Airflow masks the values of extras whose names hold "secret", and the
    # secret's name would then read '***' in every log line.
    secret_id = extras.get("key_store_id")
    if not secret_id or not isinstance(secret_id, str):
        raise PioneerConfigurationError(
            f"Connection {conn_id!r}: key_store {KIND!r} needs the extra key_store_id, the name or ARN of "
            "the secret holding the key."
        )
    aws_conn_id = extras.get("aws_conn_id", "aws_default")
    key_variable = extras.get("key_variable")
    return SecretsManagerKeyStore(
        secret_id,
        aws_conn_id=str(aws_conn_id) if aws_conn_id else None,
        region_name=str(extras["region_name"]) if extras.get("region_name") else None,
        key_variable=str(key_variable) if key_variable else None,
        log=log,
    )


register(KIND, _open)
