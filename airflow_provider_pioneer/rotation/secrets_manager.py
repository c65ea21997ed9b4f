"""The rotated key in AWS Secrets Manager: the second key store (the Variable is the first).

The secret holds the same JSON document as the key Variable (``{"api_key", "name", "created_at",
"pending_revoke", ...}``, :mod:`~airflow_provider_pioneer.stored_key`), so Airflow's
``SecretsManagerBackend`` serves it as that Variable unchanged. Writes follow Secrets Manager's
own versioning, as its rotation functions do:

1. the new document goes in as a new version labelled ``AWSPENDING`` (``PutSecretValue``), with a
   ``ClientRequestToken`` derived from the new key's name: a retried or repeated put of the same
   key is the same version, never a second one;
2. that version is read back (``GetSecretValue`` by ``VersionId``): the key to verify and promote
   is the one the store holds, not the one this process remembers;
3. it is promoted (``UpdateSecretVersionStage`` moves ``AWSCURRENT`` to it, *from the version the
   rotation read*): Secrets Manager refuses the move when ``AWSCURRENT`` is on another version by
   then, so two rotations at once cannot both promote; the old version becomes ``AWSPREVIOUS``;
4. its ``AWSPENDING`` label is dropped.

Every call goes through the Amazon provider's :class:`SecretsManagerHook` (its boto3 client, the
AWS connection's credentials, region and endpoint). Errors name the secret and the AWS error code,
never a value: a botocore message may quote a parameter, and the parameter may be the key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow_provider_pioneer.exceptions import PioneerConfigurationError
from airflow_provider_pioneer.stored_key import StoredKey, parse_stored

__all__ = [
    "KIND",
    "CurrentVersion",
    "SecretsManagerError",
    "SecretsManagerKeyStore",
    "store_from_extras",
]

#: The connection extra ``key_store`` that selects this store.
KIND = "aws_secrets_manager"
CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
# Namespace of the ClientRequestTokens (UUIDs derived from the secret and the key's name).
_TOKENS = uuid.UUID("8d6f1c2e-4a7b-5e0f-9c3d-2b1a0e9f8d7c")


class SecretsManagerError(PioneerConfigurationError):
    """A Secrets Manager call failed; the message names the secret and the error code, no value."""

    def __init__(self, action: str, secret_id: str, exc: BaseException) -> None:
        self.code = _error_code(exc)
        super().__init__(
            f"AWS Secrets Manager {action} of secret {secret_id!r} failed ({self.code}). Check the AWS "
            "connection's credentials and region, the secret's name, and that the worker's role allows "
            f"secretsmanager:{action} on it (docs: key rotation, AWS Secrets Manager)."
        )


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


@dataclass(frozen=True)
class CurrentVersion:
    """What ``AWSCURRENT`` holds: the parsed document and the version's id (``None``: no version)."""

    stored: StoredKey
    version_id: str | None
    created: datetime | None = None


class SecretsManagerKeyStore:
    """The key document in one Secrets Manager secret (which must exist: create it once, by hand).

    :param secret_id: the secret's name or ARN (with Airflow's ``SecretsManagerBackend`` reading
        Variables under ``variables_prefix``, ``{variables_prefix}/{key_variable}``).
    :param aws_conn_id: the Airflow AWS connection (credentials, region, ``endpoint_url``);
        ``None``: boto3's own credential chain (the worker's role).
    :param region_name: overrides the connection's region.
    """

    kind = KIND

    def __init__(
        self, secret_id: str, aws_conn_id: str | None = "aws_default", region_name: str | None = None
    ):
        if not secret_id or not isinstance(secret_id, str):
            raise PioneerConfigurationError(
                f"key_store {KIND!r} needs the name or ARN of the secret holding the key (extra key_store_id)."
            )
        self.secret_id = secret_id
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def __repr__(self) -> str:
        return f"SecretsManagerKeyStore(secret_id={self.secret_id!r}, aws_conn_id={self.aws_conn_id!r})"

    @property
    def label(self) -> str:
        """How messages name this store."""
        return f"AWS Secrets Manager secret {self.secret_id!r}"

    @cached_property
    def client(self) -> Any:
        """The boto3 client of the Amazon provider's hook (built in the task, never at parse time)."""
        from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

        return SecretsManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).get_conn()

    def _call(self, action: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, _snake(action))
        try:
            return dict(method(SecretId=self.secret_id, **kwargs))
        except Exception as exc:
            raise SecretsManagerError(action, self.secret_id, exc) from None

    # -- reads ----------------------------------------------------------------------------------

    def current(self) -> CurrentVersion:
        """``AWSCURRENT`` now (asked for by label: what every reader of the secret gets)."""
        try:
            answer = self.client.get_secret_value(SecretId=self.secret_id, VersionStage=CURRENT)
        except Exception as exc:
            if _error_code(exc) == "ResourceNotFoundException" and self._exists():
                return CurrentVersion(StoredKey(), None)  # the secret has no version yet
            raise SecretsManagerError("GetSecretValue", self.secret_id, exc) from None
        created = answer.get("CreatedDate")
        return CurrentVersion(
            parse_stored(answer.get("SecretString")),
            str(answer["VersionId"]),
            created if isinstance(created, datetime) else None,
        )

    def read(self) -> StoredKey:
        """The document ``AWSCURRENT`` holds (``StoredKey()`` when the secret has no version)."""
        return self.current().stored

    def version(self, version_id: str) -> StoredKey:
        """The document of one version, by id."""
        answer = self._call("GetSecretValue", VersionId=version_id)
        return parse_stored(answer.get("SecretString"))

    def _exists(self) -> bool:
        try:
            self.client.describe_secret(SecretId=self.secret_id)
        except Exception:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """What the secret says about its current version without reading any value.

        ``{"current_version", "current_created", "last_changed", "stages"}`` (``DescribeSecret``
        and ``ListSecretVersionIds``).
        """
        described = self._call("DescribeSecret")
        stages = {k: list(v) for k, v in (described.get("VersionIdsToStages") or {}).items()}
        current = next((v for v, labels in stages.items() if CURRENT in labels), None)
        created = None
        if current is not None:
            versions = self._call("ListSecretVersionIds", IncludeDeprecated=False)
            for entry in versions.get("Versions", []):
                if entry.get("VersionId") == current:
                    created = entry.get("CreatedDate")
        return {
            "current_version": current,
            "current_created": created,
            "last_changed": described.get("LastChangedDate"),
            "stages": stages,
        }

    # -- writes ---------------------------------------------------------------------------------

    def version_id_for(self, key_name: str) -> str:
        """The version (and ClientRequestToken) a rotation to ``key_name`` writes: one per key."""
        return str(uuid.uuid5(_TOKENS, f"{self.secret_id}\n{key_name}"))

    def put_pending(self, document: str, key_name: str) -> str:
        """Step 1: the document as a new ``AWSPENDING`` version; returns its id."""
        version_id = self.version_id_for(key_name)
        self._call(
            "PutSecretValue",
            SecretString=document,
            ClientRequestToken=version_id,
            VersionStages=[PENDING],
        )
        return version_id

    def promote(self, version_id: str, replacing: str | None) -> bool:
        """Step 3: move ``AWSCURRENT`` from ``replacing`` to ``version_id``.

        :returns: ``False`` (nothing changed) when ``AWSCURRENT`` is no longer on ``replacing``:
            another writer (a concurrent rotation) moved it since it was read.
        """
        labels = self.describe()["stages"]
        if CURRENT in labels.get(version_id, []):
            return True  # the first version of a secret is current from its put on
        holder = next((v for v, stages in labels.items() if CURRENT in stages), None)
        if holder != replacing:
            return False
        kwargs: dict[str, Any] = {"VersionStage": CURRENT, "MoveToVersionId": version_id}
        if replacing is not None:
            kwargs["RemoveFromVersionId"] = replacing
        try:
            self.client.update_secret_version_stage(SecretId=self.secret_id, **kwargs)
        except Exception as exc:
            if _error_code(exc) == "InvalidParameterException" and self.current().version_id != replacing:
                return False  # moved between the look and the move: Secrets Manager refused
            raise SecretsManagerError("UpdateSecretVersionStage", self.secret_id, exc) from None
        return True

    def drop_pending(self, version_id: str) -> bool:
        """Step 4: take ``AWSPENDING`` off a promoted (or abandoned) version; ``False`` if that failed."""
        try:
            self.client.update_secret_version_stage(
                SecretId=self.secret_id, VersionStage=PENDING, RemoveFromVersionId=version_id
            )
        except Exception:  # a label left behind is moved by the next put; never fail a rotation for it
            return False
        return True


def _snake(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")


def store_from_extras(extras: dict[str, Any], conn_id: str) -> SecretsManagerKeyStore | None:
    """The key store a Pioneer connection's extras name, or ``None`` (the key Variable, as before).

    ``{"key_store": "aws_secrets_manager", "key_store_id": <secret name or ARN>, "aws_conn_id":
    "aws_default", "region_name": ...}``. Not ``secret_id``: Airflow masks the values of extras
    whose names hold ``secret``, and the secret's name would read ``***`` in every log line.
    """
    kind = extras.get("key_store")
    if not kind or kind == "variable":
        return None
    if kind != KIND:
        raise PioneerConfigurationError(
            f"Connection {conn_id!r}: extra key_store is {kind!r}; it must be 'variable' (the default) or "
            f"{KIND!r}."
        )
    secret_id = extras.get("key_store_id")
    if not secret_id or not isinstance(secret_id, str):
        raise PioneerConfigurationError(
            f"Connection {conn_id!r}: key_store {KIND!r} needs the extra key_store_id, the name or ARN of "
            "the secret holding the key."
        )
    aws_conn_id = extras.get("aws_conn_id", "aws_default")
    region = extras.get("region_name")
    return SecretsManagerKeyStore(
        str(secret_id), aws_conn_id=str(aws_conn_id) if aws_conn_id else None, region_name=region or None
    )
