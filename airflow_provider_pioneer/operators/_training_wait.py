"""Waiting on a training job: deferred (the trigger), or in the worker (the same trigger, run here).

Shared by :class:`~airflow_provider_pioneer.operators.training.PioneerTrainingJobOperator` and
:class:`~airflow_provider_pioneer.sensors.training.PioneerTrainingJobSensor`. A checkpoint deploy
(the newer API's explicit deploy) is asked for once per job: the task's record (see
:mod:`~airflow_provider_pioneer.operators._task_record`) remembers it across deferrals and tries, and the
trigger is told, so it then waits for the deployment to serve instead of asking again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators._lifecycle_common import (
    TRIGGER_GRACE_S,
    deadline_after,
    error_event_failure,
    fail_for,
    run_trigger_here,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_pioneer.operators._task_record import TaskRecord
    from airflow_provider_pioneer.triggers.events import LifecycleEvent

__all__ = ["JobWaitMixin", "job_result"]

#: The record's key for "this job's checkpoint deploy was asked for" (the job id it was for).
DEPLOYED_KEY = "deploy_requested_for"


def job_result(job_id: str, record: dict[str, Any], model_name: str | None) -> dict[str, Any]:
    """What a training task returns: ``{job_id, status, model_name, metrics}``."""
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    return {"job_id": job_id, "status": record.get("status"), "model_name": record.get("model_name", model_name),
            "metrics": metrics}  # fmt: skip


class JobWaitMixin:
    """The wait of a training job; see the module docstring."""

    pioneer_conn_id: str
    poll_interval: float
    deferrable: bool
    wait_for: str
    log: Any
    _record_prefix: str

    def _wait_seconds(self) -> float | None:
        raise NotImplementedError

    def _stops_on_kill(self) -> bool:
        """Whether a kill of the deferred wait stops the job (only for a job this task submitted)."""
        return False

    def _record(self, context: Context) -> TaskRecord:
        from airflow_provider_pioneer.operators._task_record import TaskRecord

        return TaskRecord(context, self._record_prefix)

    def _wait(self, context: Context, job_id: str, logs_seen: int = 0) -> Any:
        from airflow_provider_pioneer.triggers.lifecycle import PioneerTrainingJobTrigger

        seconds = self._wait_seconds()
        deployed = self.wait_for == "callable" and self._record(context).get(DEPLOYED_KEY) == job_id
        trigger = PioneerTrainingJobTrigger(
            job_id,
            pioneer_conn_id=self.pioneer_conn_id,
            poll_interval=self.poll_interval,
            deadline=deadline_after(seconds),
            target=self.wait_for,
            logs_seen=logs_seen,
            deploy_requested=deployed,
            stop_on_kill=self._stops_on_kill(),
        )
        if self.deferrable:
            self.defer(  # type: ignore[attr-defined]
                trigger=trigger,
                method_name="execute_complete",
                timeout=None if seconds is None else timedelta(seconds=seconds + TRIGGER_GRACE_S),
            )
        return self.execute_complete(context, run_trigger_here(trigger))

    def execute_complete(self, context: Context, event: dict[str, Any] | None) -> Any:
        """Resume after the trigger fired: succeed, deploy and wait again, or fail with the job's last log lines."""
        from airflow_provider_pioneer.triggers.events import parse_event

        return self._finish(context, parse_event(event, "Pioneer training job"))

    def _finish(self, context: Context, event: LifecycleEvent) -> Any:
        job_id, kind, status = event.id, event.event, event.status
        tail = "\n".join(event.log_tail) or "(no log lines)"
        if kind == "succeeded":
            result = self._result(job_id, event.record)
            # Also as XCom "job_id": downstream tasks can take ``train.output["job_id"]``.
            context["ti"].xcom_push(key="job_id", value=job_id)
            self._record(context).forget()
            return result
        if kind == "needs_deploy":
            self._deploy_once(context, job_id)
            return self._wait(context, job_id, event.logs_seen)
        if kind == "failed":
            why = f" ({event.message})" if event.message else ""
            raise AirflowFailException(
                f"Pioneer training job {job_id} ended as {status!r}{why}. Its last log lines:\n{tail}"
            )
        if kind == "timeout":
            raise AirflowException(
                f"Pioneer training job {job_id} did not reach {self.wait_for!r} within {self._wait_seconds():g} s "
                f"(last state {status!r}). {self._after_timeout(context, job_id)}"
            )
        raise error_event_failure(event, f"Waiting for Pioneer training job {job_id}")

    def _deploy_once(self, context: Context, job_id: str) -> None:
        """Deploy the job's best checkpoint, unless this task already asked for it (then just wait)."""
        record = self._record(context)
        if record.get(DEPLOYED_KEY) == job_id:
            self.log.info(
                "Training job %s: its deploy was already asked for; waiting for it to serve.", job_id
            )
            return
        self.log.info("Training job %s is complete and deployable; deploying its best checkpoint.", job_id)
        try:
            PioneerHook(self.pioneer_conn_id).lifecycle.deploy_final_checkpoint(job_id)
        except PioneerError as exc:
            raise fail_for(exc, f"Deploying training job {job_id}") from None
        record.set(DEPLOYED_KEY, job_id)

    def _after_timeout(self, context: Context, job_id: str) -> str:
        return "The job was left running."

    def _result(self, job_id: str, record: dict[str, Any]) -> Any:
        raise NotImplementedError
