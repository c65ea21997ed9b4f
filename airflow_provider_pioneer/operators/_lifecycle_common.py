"""What the lifecycle operators share: waiting on a trigger (deferred, or in the worker) and its verdicts."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerError, fails_without_retries

if TYPE_CHECKING:
    from airflow_provider_pioneer.triggers.events import LifecycleEvent

__all__ = [
    "as_seconds",
    "default_deferrable",
    "error_event_failure",
    "fail_for",
    "run_trigger_here",
    "skip_exception",
]

#: Seconds the triggerer is given past the trigger's own deadline before Airflow times the task out.
TRIGGER_GRACE_S = 60.0


def as_seconds(value: timedelta | float | int | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def run_trigger_here(trigger: Any) -> dict[str, Any]:
    """Run a trigger's poll loop in this (worker) process: the non-deferrable wait, same code path."""

    async def first_event() -> Any:
        async for event in trigger.run():
            return event
        return None

    event = asyncio.run(first_event())
    if event is None:
        raise AirflowException("The Pioneer wait ended without an answer.")
    return dict(event.payload)


def fail_for(exc: PioneerError, what: str) -> Exception:
    """The Airflow exception for an API error: a verdict fails without retries, an outage retries."""
    if fails_without_retries(exc):
        return AirflowFailException(f"{what}: {exc.message}")
    return AirflowException(f"{what}: {exc.message}")


def error_event_failure(event: LifecycleEvent, what: str) -> Exception:
    """The Airflow exception for a trigger's ``error`` event: the same mapping as :func:`fail_for`
    (the trigger judged the error with :func:`~airflow_provider_pioneer.exceptions.fails_without_retries`)."""
    message = f"{what}: {event.message or 'the API refused the request'}"
    return AirflowException(message) if event.retryable else AirflowFailException(message)


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` (False when unset), as Airflow's own providers read it.

    Read when an operator is built, not when this module is imported, so a deployment's setting
    (or a test's environment) applies to every DAG parsed after it.
    """
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def skip_exception(message: str) -> Exception:
    try:  # Airflow >= 3.2
        from airflow.sdk.exceptions import AirflowSkipException
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import AirflowSkipException  # type: ignore[no-redef,attr-defined,unused-ignore]
    return AirflowSkipException(message)


def deadline_after(seconds: float | None) -> float | None:
    return None if seconds is None else time.time() + seconds
