"""AWS Secrets Manager for the key-rotation tests: moto's standalone server on loopback.

The same server as ``tests/object_stores.py``'s S3 (``tests/moto_server.py``), reached over HTTP
by boto3 (through the Amazon provider's ``SecretsManagerHook`` and Airflow's
``SecretsManagerBackend``), with an Airflow AWS connection in ``AIRFLOW_CONN_PIONEER_TEST_AWS``.
The server runs in the test process, so a child process the test SIGKILLs leaves the secret as the
child left it, as with the real service.

Two places where moto 5.2 is not the service, put right here (and only here) so that the tests
test the provider, not moto:

* ``UpdateSecretVersionStage`` moving ``AWSCURRENT`` does not change what ``GetSecretValue``
  without a stage returns (moto keeps serving the old version; AWS serves the version labelled
  ``AWSCURRENT``, which is what Airflow's ``SecretsManagerBackend`` asks for).
* moto's server answers requests in threads without a lock, so two concurrent
  ``UpdateSecretVersionStage`` calls could both pass its ``RemoveFromVersionId`` check; on AWS a
  label move is atomic. The race tests run two rotations at once against it.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.moto_server import CREDENTIALS, REGION, MotoServer, moto_server

AWS_CONN_ID = "pioneer_test_aws"
_LOCK = threading.Lock()


def _make_moto_faithful() -> None:
    """Patch moto's in-process backend where it differs from AWS (see the module docstring)."""
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.update_secret_version_stage
    if getattr(original, "_pioneer_faithful", False):
        return

    @functools.wraps(original)
    def update_secret_version_stage(
        self: Any, secret_id: str, version_stage: str, remove_from_version_id: str, move_to_version_id: str
    ) -> Any:
        with _LOCK:
            result = original(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
            if version_stage == "AWSCURRENT" and move_to_version_id:
                self.secrets[secret_id].default_version_id = move_to_version_id
            return result

    update_secret_version_stage._pioneer_faithful = True  # type: ignore[attr-defined]
    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage  # type: ignore[method-assign]


class MotoSecretsManager:
    """Secrets Manager on moto's server; ``new_secret()`` gives each test its own secret.

    :param server: the running server.
    """

    def __init__(self, server: MotoServer) -> None:
        self.server = server
        self.url, self.connection = server.url, server.connection

    def client(self) -> Any:
        return self.server.client()

    def new_secret(self, value: str | None, prefix: str = "pioneer/test") -> str:
        """A new secret (holding ``value`` as AWSCURRENT, or no version); returns its name."""
        name = f"{prefix}/{uuid.uuid4().hex[:12]}"
        if value is None:
            self.client().create_secret(Name=name)
        else:
            self.client().create_secret(Name=name, SecretString=value)
        return name

    def current(self, secret_id: str) -> str | None:
        """The AWSCURRENT value, as AWS serves it."""
        try:
            answer = self.client().get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
        except self.client().exceptions.ResourceNotFoundException:
            return None
        return str(answer["SecretString"])

    def stages(self, secret_id: str) -> dict[str, list[str]]:
        """Version id -> its staging labels (every version that still has one)."""
        described = self.client().describe_secret(SecretId=secret_id)
        return {k: sorted(v) for k, v in described.get("VersionIdsToStages", {}).items() if v}

    def value_of(self, secret_id: str, version_id: str) -> str:
        return str(self.client().get_secret_value(SecretId=secret_id, VersionId=version_id)["SecretString"])

    def backend_env(self, variables_prefix: str = "airflow/variables") -> dict[str, str]:
        """The ``[secrets]`` settings of a deployment reading Variables from this Secrets Manager."""
        kwargs = {
            "variables_prefix": variables_prefix,
            "connections_prefix": None,
            "config_prefix": None,
            "endpoint_url": self.url,
            "region_name": REGION,
            **CREDENTIALS,
        }
        return {
            "AIRFLOW__SECRETS__BACKEND": "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(kwargs),
        }


@pytest.fixture(scope="session")
def secrets_manager_server() -> Iterator[MotoSecretsManager]:
    """One moto Secrets Manager server per test process."""
    _make_moto_faithful()
    with moto_server("secretsmanager") as server:
        yield MotoSecretsManager(server)


@pytest.fixture
def secrets_manager(
    secrets_manager_server: MotoSecretsManager, monkeypatch: pytest.MonkeyPatch
) -> MotoSecretsManager:
    """The server, with its AWS connection in this test's environment only (import this fixture and
    ``secrets_manager_server`` into a test module). Set per test, not per session: a child process
    of any later test would inherit it (``test_local_setup`` checks that none does)."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}", secrets_manager_server.connection)
    return secrets_manager_server


@contextmanager
def deployment_backend(server: MotoSecretsManager, *, use_cache: bool = False) -> Iterator[None]:
    """This process reads Variables through Airflow's ``SecretsManagerBackend`` (and its cache)."""
    from airflow.sdk.execution_time.cache import SecretCache

    env = {**server.backend_env(), "AIRFLOW__SECRETS__USE_CACHE": str(use_cache)}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    _forget_backends()
    SecretCache.reset()
    SecretCache.init()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        SecretCache.reset()
        _forget_backends()


def _forget_backends() -> None:
    # Airflow builds the configured backends once per process: later tests must not inherit them.
    from airflow.sdk import configuration

    configuration.clear_secrets_backends_cache()
