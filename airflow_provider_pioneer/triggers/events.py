"""The one event the lifecycle triggers fire, and its check on resume.

Events are stored in the metadata DB between the triggerer and the worker, so a resumed task reads
back whatever was stored: an older provider's event, a hand-edited row, ``None``. :func:`parse_event`
turns it into a :class:`LifecycleEvent` or fails the resume with a short :class:`AirflowException`,
never a ``KeyError`` deep in an operator. ``status`` is always the record's own state (a job or
evaluation status, or None); an HTTP code is ``http_status``, never ``status``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_pioneer._compat import AirflowException

__all__ = ["EVENT_KINDS", "LifecycleEvent", "parse_event"]

#: ``succeeded``/``failed``: the record reached its end; ``needs_deploy``: a finished job to deploy;
#: ``timeout``: the trigger's deadline passed; ``error``: the API gave a verdict on the wait itself.
EVENT_KINDS = ("succeeded", "failed", "needs_deploy", "timeout", "error")


@dataclass(frozen=True)
class LifecycleEvent:
    """What a lifecycle trigger reports when its wait is over.

    :param event: one of :data:`EVENT_KINDS`.
    :param id: the training job or evaluation id.
    :param status: the record's last state (``complete``, ``errored``...), None when never read.
    :param record: the record's state and results (never its configuration).
    :param log_tail: a training job's last log lines.
    :param logs_seen: log lines already shown in the task log.
    :param http_status: the HTTP status of the answer behind an ``error`` event, when there was one.
    :param message: what went wrong, for ``error`` events.
    :param retryable: an ``error`` that a later Airflow try may not meet again (else a verdict).
    :param deploy_requested: the job's checkpoint deploy was already asked for.
    """

    event: str
    id: str
    status: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)
    logs_seen: int = 0
    http_status: int | None = None
    message: str | None = None
    retryable: bool = False
    deploy_requested: bool = False

    def payload(self) -> dict[str, Any]:
        return asdict(self)


_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str, type(None)),
    "record": (dict,),
    "log_tail": (list,),
    "logs_seen": (int,),
    "http_status": (int, type(None)),
    "message": (str, type(None)),
    "retryable": (bool,),
    "deploy_requested": (bool,),
}


def parse_event(event: Any, what: str) -> LifecycleEvent:
    """The event a trigger fired, checked.

    :param event: the ``event`` Airflow passed to ``execute_complete``.
    :param what: what was waited for, for the message (``"Pioneer training job"``).
    :raises AirflowException: the event is missing or not one this provider fires.
    """
    if not isinstance(event, dict):
        raise AirflowException(
            f"Waiting for the {what}: the trigger returned no event ({type(event).__name__}); "
            "clear the task to wait again."
        )
    kind, object_id = event.get("event"), event.get("id")
    problems = []
    if kind not in EVENT_KINDS:
        problems.append(f"'event' is {kind!r}, not one of {', '.join(EVENT_KINDS)}")
    if not isinstance(object_id, str) or not object_id:
        problems.append("'id' is missing")
    for name, types in _TYPES.items():
        value = event.get(name)
        # bool is an int to isinstance: a flag is no count, and a count is no flag.
        if name in event and (not isinstance(value, types) or isinstance(value, bool) is not (bool in types)):
            problems.append(f"{name!r} has the wrong type ({type(value).__name__})")
    if problems:
        raise AirflowException(
            f"Waiting for the {what}: the trigger's event is malformed ({'; '.join(problems)}); "
            "clear the task to wait again."
        )
    known = {name: event[name] for name in _TYPES if name in event}
    return LifecycleEvent(event=str(kind), id=str(object_id), **known)
