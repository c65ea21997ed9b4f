"""The AWS Secrets Manager half of ``make e2e``: the key rotated into a secret on moto's server.

* :class:`SecretsManager`: moto's standalone server (``moto_server`` of the test-providers extra)
  on a free loopback port, one secret seeded with the bootstrap key of a second emulator account,
  an Airflow AWS connection pointing at the server and a Pioneer connection whose extras name the
  secret (``key_store: aws_secrets_manager``, ``key_store_id``, ``aws_conn_id``, ``region_name``),
  the way docs/key-rotation.md sets one up. ``example_dags/pioneer_key_rotation_secrets_manager.py``
  rotates it on that connection (``PIONEER_SECRETS_MANAGER_CONN_ID``).
* :func:`check_rotations`: what two runs of that DAG must leave: both succeeded, ``AWSCURRENT``
  holds a key alive at the emulator, ``AWSPREVIOUS`` the one before (revoked), the seed revoked.

Its own Pioneer account, so the rotation shares nothing with the rest of the e2e (the key-name
prefix, the orphan sweep, the hourly create budget are per account). The tests' moto patches
(``tests/secret_stores.py``) are not needed here: every read of the store and of this module asks
for ``VersionStage="AWSCURRENT"`` (moto's stage-less read serves the old version after a label
move), and the two runs never overlap (``max_active_runs=1``, the second is triggered after the
first ended), so moto's non-atomic concurrent label moves cannot happen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from e2e_base import BIN, Api, Failed, Processes, free_port, listening, say, wait_run

DAG_ID = "pioneer_key_rotation_secrets_manager"
RUN_IDS = ("e2e_sm_rotation_1", "e2e_sm_rotation_2")
PIONEER_CONN_ID = "pioneer_e2e_sm"
AWS_CONN_ID = "pioneer_e2e_aws"
SECRET_ID = "pioneer/e2e/api_key"
REGION = "us-east-1"
_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class SecretsManager:
    """moto's server holding one secret; ``env()`` is what the Airflow processes need to use it."""

    def __init__(self) -> None:
        self.port = 0
        self.seed_key = ""
        self.seed_name = ""
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self, procs: Processes, env: dict[str, str]) -> None:
        """Start the server without waiting for it (``seed`` waits): it boots during the migration."""
        self.port = free_port()
        procs.start(
            "moto-secretsmanager", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], env
        )

    def env(self, emulator_url: str) -> dict[str, str]:
        aws = {
            "conn_type": "aws",
            "login": _CREDENTIALS["aws_access_key_id"],
            "password": _CREDENTIALS["aws_secret_access_key"],
            "extra": {"endpoint_url": self.endpoint, "region_name": REGION},
        }
        # No password: every task must read its key from the secret (a failed read would fall back
        # to the password, and an empty one fails the run instead of passing unnoticed).
        pioneer = {
            "conn_type": "pioneer",
            "host": emulator_url,
            "extra": {
                "key_store": "aws_secrets_manager",
                "key_store_id": SECRET_ID,
                "aws_conn_id": AWS_CONN_ID,
                "region_name": REGION,
            },
        }
        return {
            f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}": json.dumps(aws),
            f"AIRFLOW_CONN_{PIONEER_CONN_ID.upper()}": json.dumps(pioneer),
            "PIONEER_SECRETS_MANAGER_CONN_ID": PIONEER_CONN_ID,
        }

    def seed(self, procs: Processes, emulator_url: str) -> None:
        """Wait for the server; create the secret holding a new emulator account's bootstrap key."""
        from airflow_provider_pioneer.testing import EmulatorControl

        deadline = time.monotonic() + 60
        while not listening(self.port):
            procs.check_alive()
            if time.monotonic() > deadline:
                raise Failed("moto_server (Secrets Manager) did not listen in 60 s (see its log)")
            time.sleep(0.3)
        control = EmulatorControl(emulator_url)
        try:
            self.seed_key, self.seed_name = control.new_account()
        finally:
            control.close()
        # The document the docs' setup step 1 describes: the current key and its name in Pioneer.
        self.client().create_secret(
            Name=SECRET_ID, SecretString=json.dumps({"api_key": self.seed_key, "name": self.seed_name})
        )
        say(
            f"Secrets Manager on {self.endpoint}: secret {SECRET_ID} seeded with account 2's {self.seed_name!r} key"
        )

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "secretsmanager", endpoint_url=self.endpoint, region_name=REGION, **_CREDENTIALS
            )
        return self._client

    def document(self, **version: str) -> dict[str, Any]:
        """One version's JSON document (``VersionStage=...`` or ``VersionId=...``)."""
        answer = self.client().get_secret_value(SecretId=SECRET_ID, **version)
        return dict(json.loads(answer["SecretString"]))

    def stages(self) -> list[list[str]]:
        """Every version's staging labels, sorted (the versions that still have one)."""
        described = self.client().describe_secret(SecretId=SECRET_ID)
        return sorted(sorted(v) for v in described.get("VersionIdsToStages", {}).values() if v)

    def every_key(self) -> list[str]:
        """Every key any version of the secret ever held (labelled or not), and the seed."""
        keys = {self.seed_key}
        # A handful of versions: one page (ListSecretVersionIds has no boto3 paginator).
        listed = self.client().list_secret_version_ids(
            SecretId=SECRET_ID, IncludeDeprecated=True, MaxResults=100
        )
        for version in listed.get("Versions", []):
            keys.add(str(self.document(VersionId=version["VersionId"]).get("api_key") or ""))
        return sorted(k for k in keys if k)


def trigger_both(api: Api) -> None:
    """Both runs at once: the DAG's ``max_active_runs=1`` queues the second until the first ends."""
    for run_id in RUN_IDS:
        api.call("POST", f"dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": None})


def returned(api: Api, run_id: str, task_id: str) -> dict[str, Any]:
    """A task's return value (``rotate_api_key``: ``{name, created_at, revoked}``, never the key)."""
    try:
        doc = api.call(
            "GET", f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        )
    except Failed:
        return {}
    value = doc.get("value")
    return dict(value) if isinstance(value, dict) else {}


def wait_rotations(api: Api, procs: Processes, timeout: float) -> list[dict[str, Any]]:
    """The two runs once both ended, in the order they ran."""
    runs = [wait_run(api, DAG_ID, run_id, timeout, procs) for run_id in RUN_IDS]
    return sorted(runs, key=lambda r: str(r.get("start_date")))


def check_rotations(
    check: Callable[[str, bool, str], bool],
    api: Api,
    runs: list[dict[str, Any]],
    sm: SecretsManager,
    emulator_url: str,
) -> list[str]:
    """Check what the two runs left; returns every key the secret held (for the log scan)."""
    from airflow_provider_pioneer.testing import EmulatorControl

    first, second = (returned(api, str(r["dag_run_id"]), "rotate_api_key") for r in runs)
    # check_connection: the connection read the key the run had just promoted, and it worked.
    checked = [returned(api, str(r["dag_run_id"]), "check_connection") for r in runs]
    sequential = bool(runs[0].get("end_date")) and str(runs[0]["end_date"]) <= str(runs[1].get("start_date"))
    check(
        "the Secrets Manager rotation ran twice, one after the other, each revoking the key before it",
        all(r["state"] == "success" for r in runs) and sequential
        and first.get("revoked") == [sm.seed_name] and second.get("revoked") == [first.get("name")]
        and bool(second.get("name")) and second.get("name") != first.get("name")
        and [c.get("key_name") for c in checked] == [first.get("name"), second.get("name")],
        f"{DAG_ID}: {[(r['dag_run_id'], r['state']) for r in runs]}, the second started "
        f"{'after' if sequential else 'BEFORE'} the first ended; run 1 created {first.get('name')!r}, revoked "
        f"{first.get('revoked')} (the seed {sm.seed_name!r}); run 2 created {second.get('name')!r}, revoked "
        f"{second.get('revoked')}; check_connection read {[c.get('key_name') for c in checked]} from "
        f"{checked[-1].get('store')}",
    )  # fmt: skip

    control = EmulatorControl(emulator_url)
    try:
        current = sm.document(VersionStage="AWSCURRENT")
        previous = sm.document(VersionStage="AWSPREVIOUS")
        stages = sm.stages()
        current_alive = control.key_is_alive(str(current.get("api_key")))
        previous_alive = control.key_is_alive(str(previous.get("api_key")))
        seed_alive = control.key_is_alive(sm.seed_key)
        alive = control.alive_key_names(sm.seed_key)
    finally:
        control.close()
    check(
        "AWSCURRENT holds the working key, AWSPREVIOUS the revoked one before it",
        current.get("name") == second.get("name") and current_alive
        and previous.get("name") == first.get("name") and not previous_alive and not seed_alive
        and alive == [current.get("name")] and stages == [["AWSCURRENT"], ["AWSPREVIOUS"]],
        f"secret {SECRET_ID}: labels {stages}; AWSCURRENT {current.get('name')!r} "
        f"{'alive' if current_alive else 'NOT alive'}, AWSPREVIOUS {previous.get('name')!r} "
        f"{'ALIVE' if previous_alive else 'revoked'}, seed {'ALIVE' if seed_alive else 'revoked'}; "
        f"the account's live keys at the emulator: {alive}",
    )  # fmt: skip
    return sm.every_key()
