"""Triggers that wait on the triggerer for a Pioneer training job or evaluation (async HTTP, httpx).

One poll loop for both: read the record, fold its state into a phase
(:func:`~airflow_provider_pioneer.lifecycle.status.phase_of`), pass a training job's new log lines
into the task log, and fire one event when the wait is over: the record reached its end (or, for
``target="callable"``, is serving), failed, needs a deploy step, the deadline passed, or the API
gave a verdict (401, 402, 404...). Outages (connection errors, 5xx, 429) are waited out until the
deadline. An unknown state keeps the loop going with one warning per state. The kwargs hold ids
and the connection id, never a key: the key is read from the connection inside the triggerer.
Every event is a :class:`~airflow_provider_pioneer.triggers.events.LifecycleEvent`.

A training job is paid while it runs, so a wait that ends because the task was killed (marked
failed or success, cleared) stops the job (``stop_on_kill``); see :mod:`.cancellation` for how a
kill is told apart from a triggerer restart or hand-over, where the job must go on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_pioneer.exceptions import PioneerError, fails_without_retries
from airflow_provider_pioneer.lifecycle.status import (
    Phase,
    deployment_failed,
    is_callable,
    needs_deploy,
    phase_of,
    status_text,
)
from airflow_provider_pioneer.triggers.cancellation import TRIGGER_ON_KILL, stop_job, task_state
from airflow_provider_pioneer.triggers.events import LifecycleEvent

__all__ = ["PioneerEvaluationTrigger", "PioneerTrainingJobTrigger"]

#: Log lines an event carries (a failed job's message shows them).
TAIL_LINES = 20


async def _connection_settings(conn_id: str) -> Any:
    """The connection's URL and key, read through the (sync) hook off the event loop."""
    from asgiref.sync import sync_to_async

    from airflow_provider_pioneer.hooks.pioneer import PioneerHook

    return await sync_to_async(lambda: PioneerHook(conn_id).connection_settings())()


#: What of a record an event carries (events are stored in the metadata DB and logged by the
#: triggerer): the state and the results, never the job's configuration (it may hold secrets such
#: as a ``wandb_api_key``).
EVENT_FIELDS = (
    "id", "status", "normalized_status", "is_terminal_status", "model_name", "base_model", "metrics",
    "error_message", "error", "is_deployable", "deployability_reason", "progress_percent", "current_epoch",
    "f1_score", "precision_score", "recall_score", "sample_count", "completed_at", "per_entity",
)  # fmt: skip


def _event_record(record: dict[str, Any]) -> dict[str, Any]:
    kept = {k: record[k] for k in EVENT_FIELDS if k in record}
    deployments = record.get("provider_deployments")
    if isinstance(deployments, dict):  # only whether each is active
        kept["provider_deployments"] = {
            str(name): {"status": d.get("status")} for name, d in deployments.items() if isinstance(d, dict)
        }
    return kept


def format_log_line(entry: dict[str, Any]) -> str:
    level = str(entry.get("level") or "INFO").upper()
    stamp = entry.get("timestamp") or ""
    return f"{stamp} {level} {entry.get('message', '')}".strip()


class _PioneerPollTrigger(BaseTrigger):
    """Poll one record until its wait is over; see the module docstring.

    :param object_id: the training job or evaluation id.
    :param pioneer_conn_id: the Pioneer connection.
    :param poll_interval: seconds between polls.
    :param deadline: epoch seconds after which the trigger gives up (event ``timeout``); None: never.
    :param target: ``"complete"`` (training or evaluation ended) or ``"callable"`` (the job serves).
    :param logs_seen: log lines already shown (a re-deferred wait does not repeat them).
    """

    kind = "record"

    def __init__(
        self,
        object_id: str,
        pioneer_conn_id: str = "pioneer_default",
        poll_interval: float = 10.0,
        deadline: float | None = None,
        target: str = "complete",
        logs_seen: int = 0,
    ) -> None:
        super().__init__()
        self.object_id = object_id
        self.pioneer_conn_id = pioneer_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.target = target
        self.logs_seen = int(logs_seen)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "object_id": self.object_id,
                "pioneer_conn_id": self.pioneer_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "target": self.target,
                "logs_seen": self.logs_seen,
            },
        )

    def _route(self) -> Any:
        raise NotImplementedError

    async def _new_logs(self, reader: Any, tail: deque[str]) -> None:
        """Training jobs show their log; evaluations have none."""

    def _done(self, record: dict[str, Any], phase: Phase) -> str | None:
        """The event's ``event`` when the wait is over, else None."""
        if phase is Phase.FAILED:
            return "failed"
        if phase is Phase.SUCCEEDED:
            return "succeeded"
        return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_pioneer.lifecycle.aio import AsyncPioneerReader

        tail: deque[str] = deque(maxlen=TAIL_LINES)
        warned: set[str] = set()
        record: dict[str, Any] = {}
        try:
            settings = await _connection_settings(self.pioneer_conn_id)
        except PioneerError as exc:
            yield self._error(exc, record, tail)
            return
        async with AsyncPioneerReader(settings) as reader:
            while True:
                try:
                    got = await reader.get(self._route())
                    record = got if isinstance(got, dict) else {}
                    await self._new_logs(reader, tail)
                except PioneerError as exc:
                    if not exc.transient:
                        yield self._error(exc, record, tail)
                        return
                    self.log.warning(
                        "Pioneer %s %s: %s; polling again.", self.kind, self.object_id, exc.message
                    )
                else:
                    phase = phase_of(record)
                    if phase is Phase.UNKNOWN and status_text(record) not in warned:
                        warned.add(status_text(record))
                        self.log.warning(
                            "Pioneer %s %s reports state %r, which no documented state matches; polling "
                            "on until it ends or the timeout.",
                            self.kind, self.object_id, status_text(record),
                        )  # fmt: skip
                    done = self._done(record, phase)
                    if done is not None:
                        yield self._event(done, record, tail)
                        return
                if self.deadline is not None and time.time() >= self.deadline:
                    yield self._event("timeout", record, tail)
                    return
                await asyncio.sleep(self.poll_interval)

    def _event(self, event: str, record: dict[str, Any], tail: deque[str], **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            LifecycleEvent(
                event=event,
                id=self.object_id,
                status=status_text(record) or None,
                record=_event_record(record),
                log_tail=list(tail),
                logs_seen=self.logs_seen,
                **extra,
            ).payload()
        )

    def _error(self, exc: PioneerError, record: dict[str, Any], tail: deque[str]) -> TriggerEvent:
        """An ``error`` event, judged here by the one verdict mapping (the exception does not travel)."""
        return self._event(
            "error", record, tail, message=exc.message, http_status=exc.status,
            retryable=not fails_without_retries(exc),
        )  # fmt: skip


class PioneerTrainingJobTrigger(_PioneerPollTrigger):
    """Wait for a Pioneer training job to end (``target="complete"``) or to serve (``"callable"``),
    streaming its log lines into the task log.

    :param deploy_requested: the job's checkpoint deploy was already asked for: wait for it to
        serve, never ask for another deploy (a cold start takes minutes).
    :param stop_on_kill: stop the job when the task is killed while it waits here (see
        :mod:`~airflow_provider_pioneer.triggers.cancellation`).
    """

    kind = "training job"
    _logs_failed = False
    _fired = False

    def __init__(
        self, *args: Any, deploy_requested: bool = False, stop_on_kill: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.deploy_requested = bool(deploy_requested)
        self.stop_on_kill = bool(stop_on_kill)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        path, kwargs = super().serialize()
        return path, {**kwargs, "deploy_requested": self.deploy_requested, "stop_on_kill": self.stop_on_kill}

    def _route(self) -> Any:
        from airflow_provider_pioneer.urls import TRAINING_JOB

        return TRAINING_JOB.bind(job_id=self.object_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async for event in super().run():
                self._fired = True
                yield event
        except asyncio.CancelledError:
            if self.stop_on_kill and not self._fired and not TRIGGER_ON_KILL:
                await self._stop_if_killed()
            raise

    async def _stop_if_killed(self) -> None:
        """Airflow 3.1: a cancellation is a kill only if the task left ``deferred``."""
        try:
            state = await self._task_state()
        except Exception as exc:  # the supervisor cannot answer: keep the paid job, say so
            self.log.warning(
                "Wait for training job %s cancelled; its task's state is unknown (%s), so the job "
                "keeps running.", self.object_id, type(exc).__name__,
            )  # fmt: skip
            return
        if state is None or state == "deferred":
            return  # the triggerer restarts or hands the trigger over: the job goes on
        await stop_job(self, f"the task is {state}")

    async def _task_state(self) -> str | None:
        return await task_state(self)

    async def on_kill(self) -> None:
        """Airflow 3.3+: the user killed the deferred task (marked it failed or success, cleared it)."""
        if self.stop_on_kill and not self._fired:
            await stop_job(self, "the task was killed while it waited")

    async def _new_logs(self, reader: Any, tail: deque[str]) -> None:
        from airflow_provider_pioneer.lifecycle.api import logs_of
        from airflow_provider_pioneer.urls import TRAINING_JOB_LOGS

        try:
            entries = logs_of(await reader.get(TRAINING_JOB_LOGS.bind(job_id=self.object_id)))
        except PioneerError as exc:
            # The log is a courtesy: a log route that fails (or is missing) never fails the wait.
            if not self._logs_failed:
                self.log.warning(
                    "Pioneer training job %s: no log (%s); waiting on.", self.object_id, exc.message
                )
            self._logs_failed = True
            return
        if len(entries) < self.logs_seen:  # a shorter snapshot (rotated server-side): show it all again
            self.logs_seen = 0
        for entry in entries:
            tail.append(format_log_line(entry))
        for entry in entries[self.logs_seen :]:
            self.log.info("[training %s] %s", self.object_id[:8], format_log_line(entry))
        self.logs_seen = len(entries)

    def _done(self, record: dict[str, Any], phase: Phase) -> str | None:
        if phase is Phase.FAILED:
            return "failed"
        if phase is not Phase.SUCCEEDED:
            return None
        if self.target != "callable" or is_callable(record):
            return "succeeded"
        if self.deploy_requested:  # deployed once already: wait for it to serve, never deploy again
            return "failed" if deployment_failed(record) else None
        return "needs_deploy" if needs_deploy(record) else None

    def _event(self, event: str, record: dict[str, Any], tail: deque[str], **extra: Any) -> TriggerEvent:
        if event == "failed" and deployment_failed(record):
            extra.setdefault("message", "its checkpoint deployment failed")
        return super()._event(event, record, tail, deploy_requested=self.deploy_requested, **extra)


class PioneerEvaluationTrigger(_PioneerPollTrigger):
    """Wait for a Pioneer evaluation to end."""

    kind = "evaluation"

    def _route(self) -> Any:
        from airflow_provider_pioneer.urls import EVALUATION

        return EVALUATION.bind(evaluation_id=self.object_id)
