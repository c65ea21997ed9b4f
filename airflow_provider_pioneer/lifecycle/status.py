"""Training-job and evaluation states that survive doc drift (LIFECYCLE.md §4.1, §5, §6).

Pioneer's doc versions name different states (``cancelled`` vs ``stopped``, ``failed`` vs
``errored``, ``normalizing``, ``paused``...), and the newest API adds ``normalized_status`` and
``is_terminal_status`` "for client compatibility". :func:`phase_of` folds all of them into four
phases; what the server says about itself wins over the raw ``status`` string. A state nobody
documented is :attr:`Phase.UNKNOWN`: the caller keeps polling (bounded by its timeout) and warns.
Pure functions, no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "STATE_PHASES",
    "Phase",
    "deployment_failed",
    "is_callable",
    "needs_deploy",
    "phase_of",
    "status_text",
]


class Phase(StrEnum):
    """Where a job (or evaluation) is, whatever the API generation calls it."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


#: Every state a Pioneer doc names, and a few spellings of ``normalized_status``, mapped to a phase.
#: ``paused`` is waiting (a paused job can resume), not an ending.
STATE_PHASES: dict[str, Phase] = {
    "requested": Phase.PENDING,
    "queued": Phase.PENDING,
    "pending": Phase.PENDING,
    "paused": Phase.PENDING,
    "initialized": Phase.PENDING,
    "running": Phase.RUNNING,
    "training": Phase.RUNNING,
    "stopping": Phase.RUNNING,
    "normalizing": Phase.SUCCEEDED,  # training is done; the artifact is being prepared for serving
    "artifact_ready": Phase.SUCCEEDED,
    "complete": Phase.SUCCEEDED,
    "completed": Phase.SUCCEEDED,
    "succeeded": Phase.SUCCEEDED,
    "success": Phase.SUCCEEDED,
    "deployed": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "errored": Phase.FAILED,
    "error": Phase.FAILED,
    "stopped": Phase.FAILED,
    "cancelled": Phase.FAILED,
    "canceled": Phase.FAILED,
    "terminated": Phase.FAILED,
}
_SUCCESS_WORDS = ("complete", "deployed", "succeeded", "success", "ready")


def status_text(record: dict[str, Any]) -> str:
    """The raw ``status`` of a record, lower-cased (``""`` when absent)."""
    return str(record.get("status") or "").strip().lower()


def phase_of(record: dict[str, Any]) -> Phase:
    """The phase of a job or evaluation record.

    Order of trust: ``normalized_status`` (when it is a known word), then ``is_terminal_status``
    (a terminal record whose state is unknown counts as failed only if it carries an error, else
    succeeded when it says so), then the raw ``status``.

    :param record: the JSON of ``GET /felix/training-jobs/{id}`` (or an evaluation).
    """
    normalized = str(record.get("normalized_status") or "").strip().lower()
    if normalized in STATE_PHASES:
        phase = STATE_PHASES[normalized]
        return phase
    raw = status_text(record)
    phase = STATE_PHASES.get(raw, Phase.UNKNOWN)
    terminal = record.get("is_terminal_status")
    if terminal is False and phase.terminal and raw != "normalizing":
        # The server says polling must go on (e.g. ``complete`` before ``deployed`` on a doc
        # version where complete is not the end): trust it, report it as running.
        return Phase.RUNNING
    if terminal is True and phase is Phase.UNKNOWN:
        if record.get("error_message") or record.get("error"):
            return Phase.FAILED
        return Phase.SUCCEEDED if any(w in raw for w in _SUCCESS_WORDS) else Phase.FAILED
    return phase


def is_callable(record: dict[str, Any]) -> bool:
    """Whether ``/inference`` can be called with this job's id now (or after a warm-up: 425).

    ``deployed`` (raw or normalized), or a provider deployment that reports ``active``.
    """
    if status_text(record) == "deployed" or str(record.get("normalized_status") or "").lower() == "deployed":
        return True
    deployments = record.get("provider_deployments")
    if isinstance(deployments, dict):
        return any(isinstance(d, dict) and d.get("status") == "active" for d in deployments.values())
    return False


def needs_deploy(record: dict[str, Any]) -> bool:
    """A finished job that the API says is deployable but that is not serving (docs.fastino.ai: deploy it)."""
    return (
        record.get("is_deployable") is True
        and status_text(record) in ("complete", "completed", "artifact_ready")
        and not is_callable(record)
    )


def deployment_failed(record: dict[str, Any]) -> bool:
    """A provider deployment of this job reports ``failed`` and none is ``active``."""
    deployments = record.get("provider_deployments")
    if not isinstance(deployments, dict):
        return False
    states = [d.get("status") for d in deployments.values() if isinstance(d, dict)]
    return "failed" in states and "active" not in states
