"""PioneerEvaluationOperator: score a training job (or base model) on a ready dataset, gate on F1."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators._lifecycle_common import (
    TRIGGER_GRACE_S,
    as_seconds,
    deadline_after,
    default_deferrable,
    error_event_failure,
    fail_for,
    run_trigger_here,
    skip_exception,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["EVALUATION_XCOM_KEY", "PioneerEvaluationOperator"]

#: XCom key of the scores (pushed before a ``min_f1`` gate skips, so they are never lost).
EVALUATION_XCOM_KEY = "pioneer_evaluation"
_RECORD_PREFIX = "pioneer_evaluation"


class PioneerEvaluationOperator(BaseOperator):
    """Run a Pioneer evaluation (``POST /felix/evaluations``) and wait for its scores (deferred).

    Returns ``{"evaluation_id", "model", "dataset_name", "f1", "precision", "recall", "per_entity"?,
    "passed"}``. With ``min_f1`` the task is a quality gate: below it, ``on_below="fail"`` fails the
    task (no retries) and ``on_below="skip"`` skips it, and with it every downstream task that needs
    it to succeed (the scores are still pushed, as XCom ``pioneer_evaluation``). A retried task does
    not start a second evaluation: it waits for the one its earlier try started.

    :param base_model: a training job id (an upstream ``PioneerTrainingJobOperator``'s
        ``["job_id"]``) or a base model id. Templated.
    :param dataset_name: a ready dataset to score on. Templated.
    :param min_f1: the gate (0..1); None: no gate. Templated.
    :param on_below: ``"fail"`` (default) or ``"skip"``.
    :param extra_fields: more fields of the request (``project_id``...). Templated.
    :param deferrable: wait on the triggerer; default ``[operators] default_deferrable`` (False when unset).
    :param poll_interval: seconds between polls.
    :param wait_timeout: how long to wait (seconds or timedelta).
    :param pioneer_conn_id: the Pioneer connection.
    """

    template_fields: Sequence[str] = ("base_model", "dataset_name", "min_f1", "extra_fields")
    ui_color = "#f3e8fd"

    def __init__(
        self,
        *,
        base_model: str,
        dataset_name: str,
        min_f1: float | str | None = None,
        on_below: str = "fail",
        extra_fields: dict[str, Any] | None = None,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        wait_timeout: timedelta | float | None = timedelta(hours=2),
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_below not in ("fail", "skip"):
            raise ValueError(f"on_below must be 'fail' or 'skip', not {on_below!r}")
        self.base_model = base_model
        self.dataset_name = dataset_name
        self.min_f1 = min_f1
        self.on_below = on_below
        self.extra_fields = extra_fields
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.pioneer_conn_id = pioneer_conn_id

    def execute(self, context: Context) -> Any:
        from airflow_provider_pioneer.operators._task_record import TaskRecord
        from airflow_provider_pioneer.triggers.lifecycle import PioneerEvaluationTrigger

        record = TaskRecord(context, _RECORD_PREFIX)
        evaluation_id = record.get("evaluation_id")
        if evaluation_id:
            self.log.info("Waiting for evaluation %s, started by an earlier try.", evaluation_id)
        else:
            try:
                evaluation_id = PioneerHook(self.pioneer_conn_id).lifecycle.create_evaluation(
                    self.base_model, self.dataset_name, **(self.extra_fields or {})
                )
            except PioneerError as exc:
                raise fail_for(exc, f"Starting the evaluation of {self.base_model}") from None
            record.set("evaluation_id", evaluation_id)
            self.log.info("Started evaluation %s of %s on dataset %r.", evaluation_id, self.base_model,
                          self.dataset_name)  # fmt: skip
        seconds = as_seconds(self.wait_timeout)
        trigger = PioneerEvaluationTrigger(
            str(evaluation_id),
            pioneer_conn_id=self.pioneer_conn_id,
            poll_interval=self.poll_interval,
            deadline=deadline_after(seconds),
        )
        if self.deferrable:
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=None if seconds is None else timedelta(seconds=seconds + TRIGGER_GRACE_S),
            )
        return self.execute_complete(context, run_trigger_here(trigger))

    def execute_complete(self, context: Context, event: dict[str, Any] | None) -> Any:
        """Resume after the trigger fired: read the scores and apply the gate."""
        from airflow_provider_pioneer.lifecycle.api import evaluation_scores
        from airflow_provider_pioneer.operators._task_record import TaskRecord
        from airflow_provider_pioneer.triggers.events import parse_event

        checked = parse_event(event, "Pioneer evaluation")
        evaluation_id, kind = checked.id, checked.event
        if kind == "failed":
            why = checked.record.get("error_message") or checked.status
            raise AirflowFailException(f"Pioneer evaluation {evaluation_id} failed: {why}")
        if kind == "timeout":
            raise AirflowException(
                f"Pioneer evaluation {evaluation_id} did not finish within {as_seconds(self.wait_timeout):g} s "
                f"(last state {checked.status!r}); a retry waits for the same evaluation."
            )
        if kind != "succeeded":
            # The same verdict mapping as every other wait: a verdict fails at once, an outage retries.
            raise error_event_failure(checked, f"Waiting for Pioneer evaluation {evaluation_id}")
        scores = evaluation_scores(checked.record)
        # The scores are in: no retry needs the evaluation id any more, and a cleared task must
        # start a new evaluation, not return this one's (on Airflow < 3.3 the record is a Variable).
        TaskRecord(context, _RECORD_PREFIX).forget()
        result = {"evaluation_id": evaluation_id, "model": self.base_model, "dataset_name": self.dataset_name,
                  **scores}  # fmt: skip
        self.log.info(
            "Evaluation %s of %s: F1 %s, precision %s, recall %s", evaluation_id, self.base_model,
            scores.get("f1"), scores.get("precision"), scores.get("recall"),
        )  # fmt: skip
        for label, entity in sorted((scores.get("per_entity") or {}).items()):
            if isinstance(entity, dict):
                self.log.info("  %-20s F1 %s", label, entity.get("f1"))
        if self.min_f1 is None or self.min_f1 == "":
            return {**result, "passed": True}
        threshold = float(self.min_f1)
        f1 = scores.get("f1")
        passed = f1 is not None and f1 >= threshold
        result["passed"] = passed
        result["min_f1"] = threshold
        if passed:
            self.log.info("Gate passed: F1 %.4f >= min_f1 %.4f.", f1, threshold)
            return result
        context["ti"].xcom_push(key=EVALUATION_XCOM_KEY, value=result)
        message = f"Gate: F1 {f1 if f1 is not None else 'missing'} of {self.base_model} is below min_f1 {threshold}."
        if self.on_below == "skip":
            raise skip_exception(message + " Skipping the downstream tasks.")
        raise AirflowFailException(message)
