"""The key rotation into AWS Secrets Manager, end to end: the Variable rotation's cases, on a secret.

Real DAG runs (``dag.test``, SQLite) of the same test DAGs as ``test_rotation_dags.py``, whose
machinery this reuses (runs, crashes, the race, the checks): only the connection differs, its
extras naming the store (``key_store: aws_secrets_manager``, ``key_store_id``, ``aws_conn_id``).
Secrets Manager is moto's server over HTTP on loopback (``tests/secret_stores.py``); it runs in
this process, so a child this test SIGKILLs leaves the secret as the service would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer.rotation.naming import default_key_name_prefix, is_managed
from airflow_provider_pioneer.rotation.secrets_manager import TAGS
from tests.dags.test_rotation_dags import (
    ROTATE,
    ROTATE_ONCE,
    SPEND_CAP,
    VAR,
    child_env,
    connect,
    crash,
    managed_alive,
    metastore_value,
    recorded_text,
    run,
    set_metastore,
    works,
)
from tests.rotation_race import race
from tests.secret_stores import (
    AWS_CONN_ID,
    MotoSecretsManager,
    deployment_backend,
    secrets_manager,
    secrets_manager_server,
)

pytestmark = [pytest.mark.dags, pytest.mark.providers]
__all__ = ["secrets_manager", "secrets_manager_server"]  # the fixtures, imported

EXAMPLE = "pioneer_key_rotation_secrets_manager"


class Secret:
    """The test's view of the rotated secret (read with its own boto3 client, as AWS serves it)."""

    def __init__(self, server: MotoSecretsManager, secret_id: str) -> None:
        self.server, self.id = server, secret_id

    def value(self) -> str | None:
        return self.server.current(self.id)

    def doc(self) -> dict[str, Any]:
        value = self.value()
        assert value is not None, f"secret {self.id!r} has no AWSCURRENT version"
        doc = json.loads(value)
        assert isinstance(doc, dict)
        return doc

    def labels(self) -> list[list[str]]:
        """Every version's staging labels, sorted: a settled secret is AWSCURRENT + AWSPREVIOUS."""
        return sorted(self.server.stages(self.id).values())

    def tags(self) -> dict[str, str]:
        described = self.server.client().describe_secret(SecretId=self.id)
        return {t["Key"]: t["Value"] for t in described.get("Tags", [])}


def sm_extras(secret_id: str, **more: Any) -> dict[str, Any]:
    # key_variable=None: the connection reads the secret itself (no deployment backend).
    return {
        "key_store": "aws_secrets_manager",
        "key_store_id": secret_id,
        "aws_conn_id": AWS_CONN_ID,
        "key_variable": None,
        **more,
    }


@pytest.fixture
def secret(
    airflow_db: Path,
    pioneer_emulator: Any,
    secrets_manager: MotoSecretsManager,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Secret]:
    """A new, empty secret; pioneer_default reads it (the first rotation starts from the password)."""
    secret_id = secrets_manager.new_secret(None)
    connect(monkeypatch, pioneer_emulator, **sm_extras(secret_id))
    set_metastore(None)
    yield Secret(secrets_manager, secret_id)
    secrets_manager.client().delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)


def settled(emu: Any, secret: Secret) -> dict[str, Any]:
    """The state every run must converge to: the secret's key works and is the one live managed
    key, no version is left AWSPENDING, and the metastore's Variable was never written."""
    doc = secret.doc()
    assert works(emu, doc["api_key"])
    assert managed_alive(emu) == [doc["name"]]
    assert ["AWSPENDING"] not in secret.labels() and all("AWSPENDING" not in ls for ls in secret.labels())
    assert metastore_value() is None
    return doc


# -- the happy path, twice --------------------------------------------------------------------------


def test_rotation_into_secrets_manager_promotes_verified_keys_and_leaks_nothing(
    pioneer_emulator: Any,
    secret: Secret,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu, old_key = pioneer_emulator, pioneer_emulator.api_key
    first = run(ROTATE)
    assert (first["state"], first["try_number"]) == ("success", 1)
    doc = settled(emu, secret)
    assert not works(emu, old_key) and emu.alive_key_names() == [doc["name"]]
    assert first["value"] == {"name": doc["name"], "created_at": doc["created_at"], "revoked": ["bootstrap"]}
    assert secret.labels() == [["AWSCURRENT"]]  # the secret's first version

    second = run(ROTATE)
    assert second["state"] == "success"
    doc2 = settled(emu, secret)
    assert doc2["name"] > doc["name"] and not works(emu, doc["api_key"])
    assert second["value"]["revoked"] == [doc["name"]] and doc2["pending_revoke"] == [doc["name"]]
    # Secrets Manager's own versioning: the replaced key's version is AWSPREVIOUS.
    assert secret.labels() == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    previous = next(v for v, ls in secret.server.stages(secret.id).items() if ls == ["AWSPREVIOUS"])
    assert json.loads(secret.server.value_of(secret.id, previous))["name"] == doc["name"]
    # What the view reads (DescribeSecret): the key's name and dates as tags, never the key.
    tags = secret.tags()
    assert (tags[TAGS["name"]], tags[TAGS["previous_name"]]) == (doc2["name"], doc["name"])
    assert doc2["api_key"] not in json.dumps(tags)

    # The Pioneer view shows the key's name, age and last rotation without reading the secret.
    from datetime import UTC, datetime

    from airflow.utils.session import create_session

    from airflow_provider_pioneer.ui.rotation import rotation_statuses

    with create_session() as session:
        (row,) = rotation_statuses(
            session, {(ROTATE, "rotate")}, {ROTATE}, datetime.now(UTC), 30, "", lambda name: True
        )
    assert (row.key_name, row.last_state, row.key_problem) == (doc2["name"], "success", None)
    assert row.key_age_days is not None and 0 <= row.key_age_days < 1 and not row.warnings

    from tests.airflow_compat import redact

    seen = capfd.readouterr()
    text = "\n".join(
        [seen.out, seen.err, caplog.text, *(recorded_text(ROTATE, r["run_id"]) for r in (first, second))]
    )
    assert "Pioneer key rotated" in text and secret.id in text  # the capture saw the runs, names readable
    for key in (old_key, doc["api_key"], doc2["api_key"]):
        assert key not in text
        assert key not in str(redact(f"key={key}"))


# -- fail fast: nothing changes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, fault",
    [("preflight", None), ("create", {"status": 402}), ("create", SPEND_CAP)],
    ids=["402-preflight", "402-create", "spend-cap-create"],
)
def test_budget_refusals_change_nothing_in_the_secret(
    pioneer_emulator: Any,
    secret: Secret,
    where: str,
    fault: dict[str, Any] | None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu = pioneer_emulator
    assert run(ROTATE_ONCE)["state"] == "success"
    before, labels = secret.value(), secret.server.stages(secret.id)
    created = emu.counters()["keys_created"]
    if fault is None:
        emu.set_credits(0)
    else:
        emu.inject(path="/create-api-key", **fault)

    result = run(ROTATE)  # retries=1, yet a budget refusal must not be retried

    assert (result["state"], result["try_number"]) == ("failed", 1)
    assert emu.counters()["keys_created"] == created
    assert secret.value() == before and secret.server.stages(secret.id) == labels  # no version put
    out = capfd.readouterr().out
    assert "AirflowFailException" in out and "nothing was changed" in out


def test_a_key_that_fails_its_check_never_becomes_current(
    pioneer_emulator: Any, secret: Secret, capfd: pytest.CaptureFixture[str]
) -> None:
    # Staged as AWSPENDING, then refused by Pioneer: it never reaches AWSCURRENT and is deleted.
    emu = pioneer_emulator
    assert run(ROTATE_ONCE)["state"] == "success"
    before = secret.value()
    emu.inject(status=401, path="/list-api-keys", after=1, times=3)
    result = run(ROTATE_ONCE)
    assert result["state"] == "failed" and "failed its check" in capfd.readouterr().out
    assert secret.value() == before
    doc = settled(emu, secret)
    assert emu.alive_key_names() == [doc["name"]]


# -- recovery ---------------------------------------------------------------------------------------


def test_lost_create_response_leaves_no_orphan_after_the_rerun(pioneer_emulator: Any, secret: Secret) -> None:
    emu = pioneer_emulator
    emu.inject(fault="lose_response", path="/create-api-key", times=1)
    result = run(ROTATE)
    assert (result["state"], result["try_number"]) == ("success", 2)
    assert emu.counters()["keys_created"] == 3  # bootstrap, the orphan, the stored key
    assert emu.alive_key_names() == [settled(emu, secret)["name"]]


@pytest.mark.parametrize(
    "target, when",
    [
        ("PioneerClient.create_api_key", "after"),
        ("SecretsManagerKeyStore.stage", "after"),
        ("SecretsManagerKeyStore.promote", "after"),
        ("PioneerClient.delete_api_key", "after"),
    ],
    ids=["after-create", "after-stage", "after-promote", "mid-revoke"],
)
def test_rerun_after_a_kill_converges(pioneer_emulator: Any, secret: Secret, target: str, when: str) -> None:
    emu = pioneer_emulator
    assert run(ROTATE)["state"] == "success"
    night_one = secret.doc()

    proc = crash(ROTATE, target, when)
    assert proc.returncode == -9, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = secret.doc()
    assert works(emu, doc["api_key"]), "the secret's AWSCURRENT key does not work"
    leftovers = set(emu.alive_key_names()) - {doc["name"]}
    if "create" in target or "stage" in target:
        assert doc == night_one and len(leftovers) == 1  # an unverified key nobody reads
    elif "promote" in target:
        assert doc["name"] != night_one["name"] and leftovers == {night_one["name"]}

    result = run(ROTATE)
    assert result["state"] == "success"
    final = settled(emu, secret)
    assert emu.alive_key_names() == [final["name"]]


# -- two rotations at once --------------------------------------------------------------------------


def test_two_rotations_at_once_never_leave_a_revoked_key_current(
    pioneer_emulator: Any, secret: Secret, tmp_path: Path
) -> None:
    emu = pioneer_emulator
    assert run(ROTATE_ONCE)["state"] == "success"

    def check_round(gap: float, results: dict[str, dict[str, Any]]) -> None:
        doc, alive = secret.doc(), set(emu.alive_key_names())
        assert doc["name"] in alive and works(emu, doc["api_key"])
        for role, outcome in results.items():
            assert outcome["ok"], (gap, role, outcome)
            value = outcome["value"]
            assert not set(value["revoked"]) & alive, (gap, role, value)
        assert doc["name"] in {r["value"]["name"] for r in results.values()}

    def check_settled(gap: float) -> None:
        final = settled(emu, secret)
        assert emu.alive_key_names() == [final["name"]], f"gap {gap}"

    race(
        tmp_path,
        child_env(),
        store="AWSCURRENT",
        read=secret.value,
        is_alive=emu.key_is_alive,
        check_round=check_round,
        check_settled=check_settled,
    )


# -- the deployment's SecretsManagerBackend -------------------------------------------------------


def test_a_hook_reading_through_the_secrets_backend_follows_the_rotation_past_its_cache(
    pioneer_emulator: Any,
    secrets_manager: MotoSecretsManager,
    airflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The deployment serves Variables from Secrets Manager ([secrets] backend, variables_prefix
    # airflow/variables, use_cache on); the connection reads the key Variable, which is the secret
    # the rotation writes. A hook holding the old key, its Variable cached, meets the rotation.
    from airflow_provider_pioneer.hooks.pioneer import PioneerHook

    emu = pioneer_emulator
    secret_id = f"airflow/variables/{VAR}"
    secrets_manager.client().create_secret(Name=secret_id)
    connect(monkeypatch, emu, **sm_extras(secret_id, key_variable=VAR))
    set_metastore(None)
    try:
        with deployment_backend(secrets_manager, use_cache=True):
            assert run(ROTATE_ONCE)["state"] == "success"  # from the password into the secret
            hook = PioneerHook()
            hook.list_api_keys()  # the key Variable is read through the backend, now cached
            result = run(ROTATE_ONCE)  # revokes the key the hook holds
            assert result["state"] == "success"
            doc = json.loads(secrets_manager.current(secret_id) or "{}")
            assert hook.list_api_keys()  # 401, then the re-read goes past the cache to the new key
            assert hook.client.stats.snapshot()["statuses"][401] == 1
            assert PioneerHook().get_api_key() == doc["api_key"]  # a new task reads it too
        assert metastore_value() is None  # the metastore's Variable was never written
    finally:
        secrets_manager.client().delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)


def test_a_backend_that_does_not_serve_the_secret_is_refused_before_anything_changes(
    pioneer_emulator: Any,
    secrets_manager: MotoSecretsManager,
    airflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # The connection reads Variable pioneer_api_key, but the backend's prefix points elsewhere:
    # the rotation would write a secret no DAG reads, then revoke the key they use.
    emu = pioneer_emulator
    secret_id = secrets_manager.new_secret(None, prefix="elsewhere")
    connect(monkeypatch, emu, **sm_extras(secret_id, key_variable=VAR))
    set_metastore(None)
    created = emu.counters()["keys_created"]
    with deployment_backend(secrets_manager):
        result = run(ROTATE)
    assert (result["state"], result["try_number"]) == ("failed", 1)
    assert emu.counters()["keys_created"] == created and works(emu, emu.api_key)
    assert secrets_manager.current(secret_id) is None
    out = capfd.readouterr().out
    assert f"reads the key as Variable {VAR!r}, which Airflow does not serve from" in out


# -- the example DAG ---------------------------------------------------------------------------------


def test_the_example_dag_rotates_into_secrets_manager(pioneer_emulator: Any, secret: Secret) -> None:
    from tests.dags.support import load_dag, xcom_value

    dag_run = load_dag(EXAMPLE).test()
    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    doc = settled(pioneer_emulator, secret)
    assert is_managed(doc["name"], default_key_name_prefix(VAR))
    checked = xcom_value(EXAMPLE, dag_run.run_id, "check_connection", "return_value")
    assert checked["key_name"] == doc["name"] and secret.id in checked["store"]


@pytest.mark.parametrize("action", ["put_secret_value", "update_secret_version_stage"])
def test_a_denied_write_deletes_the_new_key_and_leaves_the_secret(
    pioneer_emulator: Any,
    secret: Secret,
    action: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # The worker's role lacks the permission: the server (in this process) answers AccessDenied.
    from moto.core.exceptions import JsonRESTError
    from moto.secretsmanager.models import SecretsManagerBackend

    emu = pioneer_emulator
    assert run(ROTATE_ONCE)["state"] == "success"
    before = secret.value()

    def denied(*args: Any, **kwargs: Any) -> None:
        raise JsonRESTError("AccessDeniedException", "not authorized")

    monkeypatch.setattr(SecretsManagerBackend, action, denied)
    result = run(ROTATE_ONCE)
    monkeypatch.undo()
    assert result["state"] == "failed"
    assert secret.value() == before
    assert emu.alive_key_names() == [json.loads(before or "{}")["name"]]  # the new key is deleted
    out = capfd.readouterr().out
    assert "failed (AccessDeniedException). Check the AWS connection's credentials" in out
    assert "Key 'airflow-pioneer_api_key-" in out and "was deleted. The stored key is unchanged" in out
