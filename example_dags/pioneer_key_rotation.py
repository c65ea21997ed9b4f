"""Nightly rotation of the Pioneer API key (03:00 UTC).

    rotate_api_key  ->  check_connection

``rotate_api_key`` creates a new key, proves it works, stores it in the Variable
``pioneer_api_key`` as JSON (``{"api_key", "name", "created_at"}``), then revokes the old key.
Every step is idempotent and any crash leaves a working key stored, so Airflow retries are safe.
``check_connection`` then proves that ``pioneer_default`` resolves the new key: the connection must
carry the extra ``{"key_variable": "pioneer_api_key"}`` (otherwise it would keep sending the
revoked key) and, for the very first rotation, ``{"key_name": "<name of the key in password>"}``.

Settings: one run at a time (``max_active_runs=1``), one rotation task at a time across runs
(``max_active_tis_per_dag=1``), no catch-up (a missed night needs one rotation, not many). A second
rotation of the same Variable at the same time (another DAG, a manual ``airflow tasks test``) is
safe anyway: one run's key wins and the other deletes its own.
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

VARIABLE_KEY = "pioneer_api_key"

with DAG(
    dag_id="pioneer_key_rotation",
    description="Rotate the Pioneer API key nightly and prove the connection uses the new one",
    # 03:00 UTC, never for a tick that already passed: with a start_date in the past, unpausing
    # would rotate at once (the last 03:00 tick), and a plain cron string does the same within
    # 2.4 h after 03:00 (Airflow's default grace). With run_immediately=timedelta(0) the first
    # rotation is always the next 03:00 UTC; trigger the DAG by hand to rotate now.
    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    tags=["pioneer", "example", "security"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
):
    # --8<-- [start:rotate]
    rotate = PioneerKeyRotationOperator(
        task_id="rotate_api_key",
        pioneer_conn_id="pioneer_default",
        variable_key=VARIABLE_KEY,
        # key_name_prefix defaults to one per Variable (airflow-pioneer_api_key): set it only when
        # two deployments share this Variable name on one Pioneer account.
        revoke_old=True,
        max_active_tis_per_dag=1,
    )
    # --8<-- [end:rotate]

    @task
    def check_connection(rotation: dict[str, Any]) -> dict[str, Any]:
        """Fail loudly if ``pioneer_default`` does not pick up the key the rotation just stored."""
        hook = PioneerHook(pioneer_conn_id="pioneer_default")
        if hook.key_variable != VARIABLE_KEY:
            raise AirflowFailException(
                f"Connection pioneer_default has extra key_variable={hook.key_variable!r}: tasks "
                f"using it still send the old, revoked key. Set the extra "
                f'{{"key_variable": "{VARIABLE_KEY}"}} on the connection.'
            )
        # A real call with the client's retries (the UI's Test button, hook.test_connection, makes one
        # short attempt only): a passing glitch is retried; a rejected key fails at once.
        try:
            keys = hook.list_api_keys()
        except PioneerAuthError as exc:
            raise AirflowFailException(f"pioneer_default does not work with the rotated key: {exc}") from None
        message = f"the key is valid ({len(keys)} keys on the account)"
        # rotation["name"] is the key the Variable holds: this run's, or (superseded) the key a
        # concurrent rotation stored instead of it.
        log.info(
            "pioneer_default now uses key %r (revoked: %s)", rotation.get("name"), rotation.get("revoked")
        )
        return {"key_name": rotation.get("name"), "revoked": rotation.get("revoked", []), "check": message}

    check_connection(rotate.output)
