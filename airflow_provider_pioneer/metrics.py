"""Metrics through Airflow's ``Stats``: StatsD, Datadog or OpenTelemetry, whatever the deployment set in ``[metrics]``.

Names (``[metrics] statsd_prefix``, default ``airflow``, is prepended by the backend):

* ``pioneer.inference.texts_succeeded``, ``pioneer.inference.texts_failed``: records written by one
  task attempt (items resumed from a checkpoint are not counted again);
* ``pioneer.inference.tokens``: tokens Pioneer reported for that attempt;
* ``pioneer.inference.requests``: HTTP requests sent (retries included);
* ``pioneer.inference.rate_limited``: 429 answers received;
* ``pioneer.key_rotation.key_age_seconds`` (gauge): after each rotation, the age of the key the
  Variable holds: about 0 right after rotating, or the age of the key kept when another rotation
  superseded this one.

Every metric carries the tags ``dag_id`` and ``task_id`` (StatsD drops tags unless
``statsd_influxdb_enabled``; Datadog and OpenTelemetry keep them). Emitting never fails a task.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["emit_inference", "emit_key_age", "task_tags"]

log = logging.getLogger(__name__)

INFERENCE_COUNTERS = {
    "texts_succeeded": "pioneer.inference.texts_succeeded",
    "texts_failed": "pioneer.inference.texts_failed",
    "tokens": "pioneer.inference.tokens",
    "requests": "pioneer.inference.requests",
    "rate_limited": "pioneer.inference.rate_limited",
}
KEY_AGE_GAUGE = "pioneer.key_rotation.key_age_seconds"


def _stats() -> Any:
    """Airflow's Stats: the Task SDK's (3.2+), else ``airflow.stats`` (3.0/3.1, deprecated later)."""
    try:
        from airflow.sdk.observability import stats

        return stats
    except ImportError:
        from airflow.stats import Stats

        return Stats


def task_tags(context: Any) -> dict[str, str]:
    """``dag_id`` and ``task_id`` of the running task, from its context (empty when unknown)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    tags = {name: getattr(ti, name, None) for name in ("dag_id", "task_id")}
    return {k: str(v) for k, v in tags.items() if isinstance(v, str) and v}


def emit_inference(counts: dict[str, int], tags: dict[str, str]) -> None:
    """Increment the inference counters by this attempt's ``counts`` (keys of ``INFERENCE_COUNTERS``)."""
    try:
        stats = _stats()
        for key, name in INFERENCE_COUNTERS.items():
            value = int(counts.get(key) or 0)
            if value > 0:
                stats.incr(name, value, tags=tags)
    except Exception:  # metrics are best effort: a broken backend must not fail the run
        log.debug("Could not emit Pioneer inference metrics.", exc_info=True)


def key_age_seconds(created_at: Any, now: datetime | None = None) -> float | None:
    """Seconds since ``created_at`` (ISO 8601; naive means UTC), or ``None`` if unreadable."""
    if not created_at:
        return None
    try:
        born = datetime.fromisoformat(str(created_at).replace("Z", "+00:00"))
    except ValueError:
        return None
    if born.tzinfo is None:
        born = born.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - born).total_seconds())


def emit_key_age(created_at: Any, tags: dict[str, str]) -> None:
    """Set the key-age gauge from the stored key's ``created_at``."""
    age = key_age_seconds(created_at)
    if age is None:
        return
    try:
        _stats().gauge(KEY_AGE_GAUGE, age, tags=tags)
    except Exception:
        log.debug("Could not emit the Pioneer key-age metric.", exc_info=True)
