"""PioneerTrainingJobSensor: wait for a training job submitted elsewhere to finish, or to serve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_pioneer._compat import AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators._lifecycle_common import as_seconds, default_deferrable, fail_for
from airflow_provider_pioneer.operators._training_wait import DEPLOYED_KEY, JobWaitMixin, job_result

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PioneerTrainingJobSensor"]


class PioneerTrainingJobSensor(JobWaitMixin, BaseSensorOperator):
    """Wait for a training job submitted elsewhere to finish (or to serve, ``wait_for="callable"``).

    Deferred (the trigger polls on the triggerer), or, with ``deferrable=False``, a classic sensor:
    ``mode="poke"`` holds a worker slot, ``mode="reschedule"`` frees it between pokes. ``timeout``
    (seconds) bounds the wait and ``soft_fail`` skips instead of failing, in every mode. Returns like
    :class:`~airflow_provider_pioneer.operators.training.PioneerTrainingJobOperator`; a failed or
    stopped job fails the task with its last log lines. The job is never stopped by this sensor:
    it belongs to whoever submitted it.

    :param job_id: the training job id. Templated.
    :param wait_for: ``"complete"`` or ``"callable"`` (a complete job the newer API must deploy
        gets its best checkpoint deployed, once).
    :param deferrable: wait on the triggerer; default ``[operators] default_deferrable`` (False
        when unset).
    :param poll_interval: seconds between polls (also the sensor's ``poke_interval``).
    :param pioneer_conn_id: the Pioneer connection.
    """

    template_fields: Sequence[str] = ("job_id",)
    _record_prefix = "pioneer_training_sensor"

    def __init__(
        self,
        *,
        job_id: str,
        wait_for: str = "complete",
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        if wait_for not in ("complete", "callable"):
            raise ValueError(f"wait_for must be 'complete' or 'callable', not {wait_for!r}")
        self.job_id = job_id
        self.wait_for = wait_for
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.poll_interval = poll_interval
        self.pioneer_conn_id = pioneer_conn_id

    def _wait_seconds(self) -> float | None:
        return as_seconds(self.timeout)

    def execute(self, context: Context) -> Any:
        if self.deferrable:
            return self._wait(context, str(self.job_id))
        # The base class's loop: poke or reschedule mode, its timeout and soft_fail.
        return super().execute(context)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One read of the job: done (its result as the XCom), not yet, or a failure (soft_fail applies)."""
        from airflow_provider_pioneer.lifecycle.status import (
            Phase,
            deployment_failed,
            is_callable,
            needs_deploy,
            phase_of,
        )

        job_id = str(self.job_id)
        api = PioneerHook(self.pioneer_conn_id).lifecycle
        try:
            job = api.get_training_job(job_id)
        except PioneerError as exc:
            raise fail_for(exc, f"Reading Pioneer training job {job_id}") from None
        phase = phase_of(job)
        deployed = self.wait_for == "callable" and self._record(context).get(DEPLOYED_KEY) == job_id
        if phase is Phase.FAILED or (deployed and deployment_failed(job)):
            raise AirflowFailException(
                f"Pioneer training job {job_id} ended as {job.get('status')!r}. Its last log lines:\n"
                f"{self._log_tail(api, job_id)}"
            )
        if phase is not Phase.SUCCEEDED:
            self.log.info("Training job %s is %s.", job_id, job.get("status"))
            return False
        if self.wait_for == "callable" and not is_callable(job):
            if needs_deploy(job):
                self._deploy_once(context, job_id)
            return False
        context["ti"].xcom_push(key="job_id", value=job_id)
        if self.wait_for == "callable":  # only a deploy is recorded
            self._record(context).forget()
        return PokeReturnValue(is_done=True, xcom_value=self._result(job_id, job))

    @staticmethod
    def _log_tail(api: Any, job_id: str) -> str:
        from airflow_provider_pioneer.triggers.lifecycle import TAIL_LINES, format_log_line

        try:
            entries = api.get_training_logs(job_id)
        except PioneerError:
            return "(no log lines)"
        return "\n".join(format_log_line(e) for e in entries[-TAIL_LINES:]) or "(no log lines)"

    def _result(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return job_result(job_id, record, None)
