"""The hook's key in AWS Secrets Manager (moto's server over HTTP on loopback), and the store itself.

The rotation into it, end to end, is in ``tests/dags/test_rotation_dags.py`` (the ``store``
parametrisation); these are the reads every task does, and the store's promises.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_pioneer.exceptions import PioneerConfigurationError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.rotation.document import build_document, parse_stored
from airflow_provider_pioneer.rotation.secrets_manager import PromotionRefused, SecretsManagerKeyStore
from airflow_provider_pioneer.testing import PioneerEmulator
from tests.secret_stores import (
    AWS_CONN_ID,
    MotoSecretsManager,
    deployment_backend,
    secrets_manager,
    secrets_manager_server,
)

pytestmark = pytest.mark.providers
__all__ = ["secrets_manager", "secrets_manager_server"]  # the fixtures, imported


def connect(monkeypatch: pytest.MonkeyPatch, emu: PioneerEmulator, password: str, **extra: Any) -> None:
    conn = {"conn_type": "pioneer", "host": emu.url, "password": password, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(conn))


def store_extras(secret_id: str) -> dict[str, Any]:
    return {"key_store": "aws_secrets_manager", "key_store_id": secret_id, "aws_conn_id": AWS_CONN_ID}


def promote_by_hand(server: MotoSecretsManager, secret_id: str, document: str) -> None:
    """What a rotation leaves: a new AWSCURRENT version (the old one becomes AWSPREVIOUS)."""
    server.client().put_secret_value(SecretId=secret_id, SecretString=document)


def test_the_hook_reads_the_secret_the_connection_names_and_rereads_it_after_a_401(
    pioneer_emulator: PioneerEmulator, secrets_manager: MotoSecretsManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = pioneer_emulator.create_key("sm-1")
    secret = secrets_manager.new_secret(build_document(first, "sm-1", None, []))
    # The connection's own password is stale: only the secret's key works.
    connect(monkeypatch, pioneer_emulator, "pio_sk_stale", **store_extras(secret))
    hook = PioneerHook()
    assert hook.get_api_key() == first
    hook.list_api_keys()

    second = pioneer_emulator.create_key("sm-2")
    promote_by_hand(secrets_manager, secret, build_document(second, "sm-2", None, ["sm-1"]))
    hook.delete_api_key("sm-1")  # a rotation revokes the old key while this client still holds it
    assert hook.list_api_keys()  # 401, then the re-read finds the promoted version
    assert hook.client.stats.snapshot()["statuses"][401] == 1


def test_through_airflows_secrets_manager_backend_the_401_reread_skips_its_cache(
    pioneer_emulator: PioneerEmulator, secrets_manager: MotoSecretsManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deployment serves Variables from Secrets Manager (variables_prefix airflow/variables) with
    # [secrets] use_cache on; the connection reads the key Variable, which is the rotated secret.
    first = pioneer_emulator.create_key("backend-1")
    secret = "airflow/variables/pioneer_api_key_backend"
    secrets_manager.client().create_secret(
        Name=secret, SecretString=build_document(first, "backend-1", None, [])
    )
    try:
        connect(
            monkeypatch,
            pioneer_emulator,
            "pio_sk_stale",
            key_variable="pioneer_api_key_backend",
            **store_extras(secret),
        )
        with deployment_backend(secrets_manager, use_cache=True):
            hook = PioneerHook()
            hook.list_api_keys()  # read through the backend, now cached
            second = pioneer_emulator.create_key("backend-2")
            promote_by_hand(secrets_manager, secret, build_document(second, "backend-2", None, []))
            assert hook.read_variable_key() == first  # a plain read is served from the cache
            hook.delete_api_key("backend-1")
            assert hook.list_api_keys()  # 401, then past the cache to the promoted version
            assert hook.client.stats.snapshot()["statuses"][401] == 1
    finally:
        secrets_manager.client().delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)


def test_a_secret_that_holds_no_key_or_cannot_be_read_fails_clearly(
    pioneer_emulator: PioneerEmulator,
    secrets_manager: MotoSecretsManager,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    broken = secrets_manager.new_secret('{"api_key": ')
    connect(monkeypatch, pioneer_emulator, pioneer_emulator.api_key, **store_extras(broken))
    with pytest.raises(
        PioneerConfigurationError, match=f"secret {broken!r} holds malformed JSON in its AWSCURRENT version"
    ):
        PioneerHook().get_api_key()
    # A store that cannot be read (here: no such secret) falls back to the connection's key, as a
    # Variable that cannot be read does, and says so.
    connect(monkeypatch, pioneer_emulator, pioneer_emulator.api_key, **store_extras("pioneer/no-such-secret"))
    assert PioneerHook().get_api_key() == pioneer_emulator.api_key
    assert "Could not read AWS Secrets Manager secret 'pioneer/no-such-secret'" in capfd.readouterr().out
    # A secret with no version yet: the connection's own key (the first rotation starts from it).
    empty = secrets_manager.new_secret(None)
    connect(monkeypatch, pioneer_emulator, pioneer_emulator.api_key, **store_extras(empty))
    assert PioneerHook().get_api_key() == pioneer_emulator.api_key
    connect(monkeypatch, pioneer_emulator, pioneer_emulator.api_key, key_store="vault")
    with pytest.raises(
        PioneerConfigurationError, match="unknown key_store 'vault'; use one of aws_secrets_manager, variable"
    ):
        PioneerHook().get_api_key()
    assert pioneer_emulator.api_key not in capfd.readouterr().out


def test_promotion_moves_awscurrent_only_from_the_version_read(secrets_manager: MotoSecretsManager) -> None:
    # Secrets Manager's compare-and-swap: the rotation moves AWSCURRENT from the version it read; a
    # writer that read an older version changes nothing (two rotations at once cannot both win).
    secret = secrets_manager.new_secret(build_document("k0", "n0", None, []))
    mine, theirs = (SecretsManagerKeyStore(secret, aws_conn_id=AWS_CONN_ID) for _ in range(2))
    read = mine.read()
    mine.stage(build_document("k1", "n1", None, ["n0"]))
    assert mine.read().name == "n0"  # pending: nobody reads it yet
    (pending,) = [v for v, labels in secrets_manager.stages(secret).items() if labels == ["AWSPENDING"]]
    assert parse_stored(secrets_manager.value_of(secret, pending)).name == "n1"
    theirs.stage(build_document("k2", "n2", None, ["n0"]))
    theirs.promote(build_document("k2", "n2", None, ["n0"]), theirs.read())
    with pytest.raises(PromotionRefused):
        mine.promote(build_document("k1", "n1", None, ["n0"]), read)  # AWSCURRENT moved since
    after = mine.read()
    assert (after.name, after.api_key) == ("n2", "k2")
    # The old version is AWSPREVIOUS, the promoted one AWSCURRENT only; the loser's is unlabelled.
    assert sorted(secrets_manager.stages(secret).values()) == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    assert secrets_manager.stages(secret)[read.version] == ["AWSPREVIOUS"]
    mine.record("n2", "2026-12-07T03:00:00Z", "n0", [])
    facts = mine.describe()
    assert (facts.name, facts.created_at, facts.present) == ("n2", "2026-12-07T03:00:00Z", True)
    assert facts.last_rotated is not None
