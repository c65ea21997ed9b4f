"""Nightly rotation of the Pioneer API key into AWS Secrets Manager (03:00 UTC).

    rotate_api_key  ->  check_connection

For deployments that keep their secrets in AWS Secrets Manager (MWAA's recommended setup).
``rotate_api_key`` creates a new key, puts it in the secret as a new version labelled
``AWSPENDING``, proves the key works, moves ``AWSCURRENT`` to that version (only from the version
it read: two rotations at once cannot both win; the old version becomes ``AWSPREVIOUS``), then
revokes the old key. ``check_connection`` proves that ``pioneer_default`` reads the new key.

The connection ``pioneer_default`` names the secret in its extras::

    {"key_store": "aws_secrets_manager", "key_store_id": "airflow/variables/pioneer_api_key",
     "aws_conn_id": "aws_default", "region_name": "eu-west-1", "key_name": "<the first key's name>"}

With Airflow's ``SecretsManagerBackend`` serving Variables under ``airflow/variables``, add
``"key_variable": "pioneer_api_key"`` and every task reads the key the way Airflow reads any
Variable (its cache included; a 401 re-reads past it). The least IAM policy, the backend's
settings and what each failure leaves behind: docs, Key rotation, AWS Secrets Manager.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, task

try:  # Airflow >= 3.2 exports its timetables from the Task SDK; 3.1 only from core.
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # pragma: no cover - exercised by the Airflow 3.1 leg of make test-matrix
    from airflow.timetables.trigger import CronTriggerTimetable  # type: ignore[no-redef]

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowFailException

from airflow_provider_pioneer.exceptions import PioneerAuthError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator

log = logging.getLogger(__name__)

with DAG(
    dag_id="pioneer_key_rotation_secrets_manager",
    description="Rotate the Pioneer API key nightly into AWS Secrets Manager",
    # The first rotation is the next 03:00 UTC, never a tick that already passed (see the
    # Variable example, pioneer_key_rotation.py); trigger the DAG by hand to rotate now.
    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    tags=["pioneer", "example", "security", "aws"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
):
    # --8<-- [start:rotate]
    rotate = PioneerKeyRotationOperator(
        task_id="rotate_api_key",
        pioneer_conn_id="pioneer_default",
        # The secret, its AWS connection and region come from the connection's extras.
        key_store="aws_secrets_manager",
        revoke_old=True,
        max_active_tis_per_dag=1,
    )
    # --8<-- [end:rotate]

    @task
    def check_connection(rotation: dict[str, Any]) -> dict[str, Any]:
        """Fail loudly if ``pioneer_default`` does not read the key the rotation just promoted."""
        hook = PioneerHook(pioneer_conn_id="pioneer_default")
        store = hook.key_store
        if store is None or store.kind != "aws_secrets_manager":
            raise AirflowFailException(
                "Connection pioneer_default does not read its key from AWS Secrets Manager: set its extras "
                'key_store to "aws_secrets_manager" and key_store_id to the secret the rotation writes.'
            )
        try:
            keys = hook.list_api_keys()
        except PioneerAuthError as exc:
            raise AirflowFailException(f"pioneer_default does not work with the rotated key: {exc}") from None
        log.info("pioneer_default reads key %r from %s", rotation.get("name"), store.label)
        return {"key_name": rotation.get("name"), "store": store.label, "keys_on_account": len(keys)}

    check_connection(rotate.output)
