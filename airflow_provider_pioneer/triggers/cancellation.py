"""Stopping a paid training job when its deferred task is killed, and only then.

A trigger's task is cancelled in four situations: the user acted on the task (marked it failed or
success, cleared it), the deferral timed out, the triggerer shuts down or restarts, or the trigger
moves to another triggerer. Only the first should stop the job; in the last two the trigger runs
again elsewhere and the job must go on. Each supported Airflow minor tells them apart differently:

* **Airflow 3.3+**: the triggerer calls ``BaseTrigger.on_kill()`` for a user action only (not on
  restart, hand-over, timeout, or after an event fired). The trigger stops the job there.
* **Airflow 3.1**: there is no trigger ``on_kill``; every cancellation is a bare
  ``asyncio.CancelledError`` in ``run()``. The trigger then asks Airflow for its task instance's
  state (``RuntimeTaskInstance.get_task_states``, as the Google and Databricks providers do): a
  task still ``deferred`` means a restart or hand-over (the job goes on); any other state means
  the task was acted on, or its deferral timed out, and the job is stopped. A state that cannot
  be read keeps the job running (a warning says so): stopping a job that should run is the worse
  mistake.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger

from airflow_provider_pioneer.exceptions import PioneerError

if TYPE_CHECKING:
    from airflow_provider_pioneer.triggers.lifecycle import PioneerTrainingJobTrigger

__all__ = ["TRIGGER_ON_KILL", "stop_job", "task_state"]

log = logging.getLogger(__name__)

#: The triggerer calls ``on_kill`` on a user's kill (Airflow 3.3+); else the cancellation path decides.
TRIGGER_ON_KILL = hasattr(BaseTrigger, "on_kill")
#: Seconds a stop may take (the triggerer bounds ``on_kill`` by ``[triggerer] on_kill_timeout``, 30 s).
STOP_TIMEOUT_S = 20.0


async def task_state(trigger: BaseTrigger) -> str | None:
    """The current state of the trigger's task instance, read through Airflow's supervisor API."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from asgiref.sync import sync_to_async

    ti: Any = trigger.task_instance
    if ti is None:
        return None
    states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
        dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
    )
    state = states.get(ti.run_id, {}).get(ti.task_id)
    return None if state is None else str(getattr(state, "value", state))


async def stop_job(trigger: PioneerTrainingJobTrigger, why: str) -> bool:
    """``POST …/stop`` for the trigger's job; True when Pioneer took it (or the job had already ended)."""
    from airflow_provider_pioneer.lifecycle.aio import AsyncPioneerReader
    from airflow_provider_pioneer.triggers.lifecycle import _connection_settings
    from airflow_provider_pioneer.urls import STOP_TRAINING_JOB

    job_id = trigger.object_id
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            settings = await _connection_settings(trigger.pioneer_conn_id)
            async with AsyncPioneerReader(settings) as reader:
                await reader.post(STOP_TRAINING_JOB.bind(job_id=job_id))
    except TimeoutError:
        trigger.log.warning(
            "Could not stop Pioneer training job %s within %g s (%s).", job_id, STOP_TIMEOUT_S, why
        )
        return False
    except PioneerError as exc:
        if exc.status == 409:  # training_job_already_finished: nothing is running any more
            trigger.log.info("Pioneer training job %s had already finished (%s).", job_id, why)
            return True
        trigger.log.warning("Could not stop Pioneer training job %s (%s): %s", job_id, why, exc.message)
        return False
    trigger.log.info("Stopped Pioneer training job %s: %s.", job_id, why)
    return True
