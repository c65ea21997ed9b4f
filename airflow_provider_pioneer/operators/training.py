"""PioneerTrainingJobOperator: fine-tune a model, wait on the triggerer (or in the worker).

Never two jobs for one task instance: the job id is recorded (task state store, see
:mod:`~airflow_provider_pioneer.operators._task_record`) the moment the API answers, before any wait;
a retried or restarted try reattaches to it. The submit carries an ``Idempotency-Key`` that is the
same for every try (the API dedupes on it where it has it), and an answer lost on the way back is
looked for by ``model_name`` before anything is sent again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import (
    PioneerBillingError,
    PioneerConnectionError,
    PioneerError,
    PioneerRateLimitError,
    PioneerResponseError,
    PioneerServerError,
)
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators._lifecycle_common import as_seconds, default_deferrable, fail_for
from airflow_provider_pioneer.operators._training_wait import JobWaitMixin, job_result
from airflow_provider_pioneer.sensors.training import PioneerTrainingJobSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_pioneer.lifecycle.api import LifecycleClient
    from airflow_provider_pioneer.operators._task_record import TaskRecord

__all__ = ["PioneerTrainingJobOperator", "PioneerTrainingJobSensor", "SubmitWindow"]

#: Pioneer's documented limit on ``POST /felix/training-jobs`` (per user, all doc versions).
SUBMITS_PER_MINUTE = 20
_SUBMIT_ATTEMPTS = 6
_RECORD_PREFIX = "pioneer_training"


class SubmitWindow:
    """At most ``limit`` submits in any 60 s from this process (tasks in one worker share it).

    Other processes are kept in line by the server's 429 + ``Retry-After``, which the submit honours.
    """

    def __init__(self, limit: int = SUBMITS_PER_MINUTE, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until one more submit fits; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._times and self._times[0] <= now - self.window:
                    self._times.popleft()
                if len(self._times) < self.limit:
                    self._times.append(now)
                    return waited
                pause = self._times[0] + self.window - now
            time.sleep(pause)
            waited += pause


SUBMITS = SubmitWindow()


def _duplicate_job_id(exc: PioneerError) -> str | None:
    """The job id a ``409 duplicate_training_submission`` names (/v1 API: poll that job)."""
    detail: dict[str, Any] = exc.detail if isinstance(exc.detail, dict) else {}
    found = detail.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    if exc.status == 409 and "duplicate_training_submission" in (exc.code, error.get("code")):
        job_id = error.get("job_id") or detail.get("job_id")
        return str(job_id) if job_id else None
    return None


class PioneerTrainingJobOperator(JobWaitMixin, BaseOperator):
    """Fine-tune a model on Pioneer (``POST /felix/training-jobs``) and wait until it is trained.

    The wait is deferred to the triggerer by default (async polling, the job's log lines stream into
    the task log). Returns ``{"job_id", "status", "model_name", "metrics"}`` and pushes the job id
    as XCom ``job_id`` too (``train.output["job_id"]``): it is what ``/inference`` takes as ``model_id``. A job that fails (or is stopped) fails the task without
    Airflow retries, with its last log lines in the message. A retried or restarted task never
    submits a second job: it reattaches to the one its earlier try submitted.

    :param base_model: model to fine-tune (``fastino/gliner2-base-v1``, or a checkpoint id). Templated.
    :param datasets: ready datasets, ``[{"name": ..., "version": ...}]`` or names (an upload
        operator's return value works). Templated.
    :param model_name: name of the trained model; also how a lost submit answer is found again,
        so make it unique per run (e.g. ``"news-ner-{{ ds_nodash }}"``). Templated.
    :param training_type: ``lora`` (API default) or ``full``. Templated.
    :param nr_epochs: epochs (API default 100; early stopping may end sooner). Templated.
    :param learning_rate: e.g. ``5e-5`` (API default: the model's recipe). Templated.
    :param extra_fields: any other documented field (``validation_data_percentage``, ``lora_r``,
        ``project_id``...), passed through as is. Templated.
    :param wait_for: ``"complete"`` (training ended) or ``"callable"`` (the job serves ``/inference``:
        ``deployed``, after a deploy step where the API needs one).
    :param deferrable: wait on the triggerer rather than in a worker slot; default
        ``[operators] default_deferrable`` (False when unset, as for Airflow's own providers).
    :param poll_interval: seconds between status polls.
    :param wait_timeout: how long to wait for the job (seconds or timedelta); the task then fails
        retryably and the job keeps running for the retry, except on the last try with
        ``stop_on_kill``: then the job is stopped. None: no limit.
    :param stop_on_kill: stop the job when the task is killed (marked failed or success, cleared)
        while it waits, in the worker or deferred on the triggerer (docs/lifecycle.md says what each
        Airflow minor does), and when the last try times out.
    :param pioneer_conn_id: the Pioneer connection.
    """

    template_fields: Sequence[str] = (
        "base_model",
        "datasets",
        "model_name",
        "training_type",
        "nr_epochs",
        "learning_rate",
        "extra_fields",
    )
    template_fields_renderers = {"datasets": "json", "extra_fields": "json"}
    ui_color = "#e6f4ea"
    _record_prefix = _RECORD_PREFIX

    def __init__(
        self,
        *,
        base_model: str,
        datasets: Any,
        model_name: str,
        training_type: str | None = None,
        nr_epochs: int | str | None = None,
        learning_rate: float | str | None = None,
        extra_fields: dict[str, Any] | None = None,
        wait_for: str = "complete",
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        wait_timeout: timedelta | float | None = timedelta(hours=12),
        stop_on_kill: bool = True,
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if wait_for not in ("complete", "callable"):
            raise ValueError(f"wait_for must be 'complete' or 'callable', not {wait_for!r}")
        self.base_model = base_model
        self.datasets = datasets
        self.model_name = model_name
        self.training_type = training_type
        self.nr_epochs = nr_epochs
        self.learning_rate = learning_rate
        self.extra_fields = extra_fields
        self.wait_for = wait_for
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.stop_on_kill = stop_on_kill
        self.pioneer_conn_id = pioneer_conn_id
        self._job_id: str | None = None

    def _wait_seconds(self) -> float | None:
        return as_seconds(self.wait_timeout)

    def _stops_on_kill(self) -> bool:
        return self.stop_on_kill

    def _body(self) -> dict[str, Any]:
        datasets = self.datasets if isinstance(self.datasets, list | tuple) else [self.datasets]
        refs = []
        for item in datasets:
            if isinstance(item, str):
                refs.append({"name": item})
            elif isinstance(item, dict) and (item.get("name") or item.get("dataset_name")):
                ref = {"name": item.get("name") or item["dataset_name"]}
                version = item.get("version", item.get("version_number"))
                if version is not None:
                    ref["version"] = str(version)
                refs.append(ref)
            else:
                raise AirflowFailException(
                    f"datasets: {item!r} is not a dataset name or {{'name': ..., 'version': ...}}."
                )
        if not refs:
            raise AirflowFailException("datasets is empty: name at least one ready dataset.")
        body: dict[str, Any] = {
            "base_model": self.base_model,
            "datasets": refs,
            "model_name": self.model_name,
        }
        # Templated numbers arrive as strings unless the DAG renders native objects.
        for name, kind in (("training_type", str), ("nr_epochs", int), ("learning_rate", float)):
            value = getattr(self, name)
            if value is None or value == "":
                continue
            try:
                body[name] = kind(value)
            except (TypeError, ValueError):
                raise AirflowFailException(f"{name} must be a {kind.__name__}, not {value!r}.") from None
        for name, value in (self.extra_fields or {}).items():
            body.setdefault(name, value)
        return body

    def execute(self, context: Context) -> Any:
        hook = PioneerHook(self.pioneer_conn_id)
        record = self._record(context)
        dag_run = context.get("dag_run")
        since = getattr(dag_run, "start_date", None)
        job_id = self._reattach(hook.lifecycle, record, since)
        if job_id is None:
            job_id = self._submit(hook.lifecycle, record, context, since)
        self._job_id = job_id
        return self._wait(context, job_id)

    def _reattach(self, api: LifecycleClient, record: TaskRecord, since: datetime | None) -> str | None:
        """The job an earlier try of this task submitted, if it is still alive or finished well."""
        from airflow_provider_pioneer.lifecycle.status import Phase, phase_of

        job_id = record.get("job_id")
        try:
            if job_id:
                job = api.get_training_job(str(job_id))
            else:
                found = api.find_jobs_by_model_name(self.model_name, since)
                if not found:
                    return None
                job = found[0]
                job_id = str(job.get("id"))
                self.log.info("Found training job %s named %r from an earlier try.", job_id, self.model_name)
        except PioneerError as exc:
            if exc.status == 404 and job_id:
                self.log.warning(
                    "The recorded training job %s no longer exists; submitting a new one.", job_id
                )
                return None
            raise fail_for(exc, "Looking for this task's earlier training job") from None
        if phase_of(job) is Phase.FAILED:
            self.log.warning(
                "The earlier try's training job %s ended as %r; submitting a new job.",
                job_id,
                job.get("status"),
            )
            record.set("generation", int(record.get("generation") or 0) + 1)
            return None
        record.set("job_id", job_id)
        self.log.info(
            "Reattaching to training job %s (state %r); not submitting again.", job_id, job.get("status")
        )
        return str(job_id)

    def _submit(
        self, api: LifecycleClient, record: TaskRecord, context: Context, since: datetime | None
    ) -> str:
        from airflow_provider_pioneer.lifecycle.api import job_id_of
        from airflow_provider_pioneer.operators._task_record import idempotency_key

        body = self._body()
        key = idempotency_key(context, int(record.get("generation") or 0))
        for attempt in range(1, _SUBMIT_ATTEMPTS + 1):
            waited = SUBMITS.wait()
            if waited:
                self.log.info(
                    "Waited %.0f s: Pioneer takes %d training jobs per minute.", waited, SUBMITS_PER_MINUTE
                )
            try:
                job_id = job_id_of(api.create_training_job(body, idempotency_key=key))
            except PioneerBillingError as exc:
                raise AirflowFailException(f"Submitting the training job: {exc.message}") from None
            except PioneerRateLimitError as exc:
                pause = exc.retry_after if exc.retry_after is not None else 3.0 * attempt
                self.log.warning("Training job submits are rate limited (429); retrying in %.0f s.", pause)
                time.sleep(min(pause, 120.0))
                continue
            except (PioneerConnectionError, PioneerServerError, PioneerResponseError) as exc:
                # The job may have been created and only the answer lost: look before sending again.
                self.log.warning(
                    "Submitting the training job: %s; checking whether it was created.", exc.message
                )
                found = api.find_jobs_by_model_name(self.model_name, since)
                if found:
                    job_id = str(found[0].get("id"))
                else:
                    if attempt == _SUBMIT_ATTEMPTS:
                        raise fail_for(exc, "Submitting the training job") from None
                    time.sleep(min(2.0**attempt, 30.0))
                    continue
            except PioneerError as exc:
                duplicate = _duplicate_job_id(exc)
                if duplicate is None:
                    raise fail_for(exc, "Submitting the training job") from None
                self.log.info("Pioneer already has this submission (Idempotency-Key): job %s.", duplicate)
                job_id = duplicate
            record.set("job_id", job_id)
            self.log.info("Submitted training job %s (%s on %s); recorded in %s.", job_id, self.model_name,
                          self.base_model, record.where)  # fmt: skip
            return job_id
        raise AirflowException("Submitting the training job: still rate limited after several attempts.")

    def _result(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        result = job_result(job_id, record, self.model_name)
        self.log.info("Training job %s is %s; metrics: %s", job_id, result["status"], result["metrics"])
        return result

    def _after_timeout(self, context: Context, job_id: str) -> str:
        ti = context["ti"]
        last_try = int(getattr(ti, "try_number", 1) or 1) > int(getattr(ti, "max_tries", 0) or 0)
        if not (self.stop_on_kill and last_try):
            return "The job was left running; a retry of this task waits for the same job."
        # No try is left to wait for it: a job nobody waits for is money spent for nothing.
        try:
            PioneerHook(self.pioneer_conn_id).lifecycle.stop_training_job(job_id)
        except PioneerError as exc:
            return f"This was the last try, and stopping the job failed ({exc.message}); stop it by hand."
        return "This was the last try, so the job was stopped (stop_on_kill)."

    def on_kill(self) -> None:
        """Stop the job this try submitted or reattached to, when killed while waiting in the worker
        (a deferred wait is stopped by its trigger, see :mod:`~airflow_provider_pioneer.triggers.cancellation`)."""
        if not (self.stop_on_kill and self._job_id):
            return
        try:
            PioneerHook(self.pioneer_conn_id).lifecycle.stop_training_job(self._job_id)
            self.log.info("Stopped Pioneer training job %s.", self._job_id)
        except PioneerError as exc:
            self.log.warning("Could not stop Pioneer training job %s: %s", self._job_id, exc.message)
