"""The model lifecycle of the emulator: datasets, training jobs, evaluations (LIFECYCLE.md §2, §4-§6).

Time is simulated lazily: a record keeps when it was created and its status is worked out from
the elapsed (monotonic) time whenever it is read, so there are no background threads and the
durations (:class:`LifecycleSettings`) can be made tiny for tests. Where Pioneer's doc versions
disagree, a setting picks the variant, so the client can be tested against each of them:

* ``status_style``: ``"pioneer"`` sends the raw ``status`` only and ``stop`` ends in ``cancelled``
  (docs.pioneer.ai HEAD); ``"fastino"`` adds ``normalized_status``, ``is_terminal_status``,
  ``progress_percent``, ``is_deployable``... and ``stop`` ends in ``stopped`` (docs.fastino.ai);
* ``auto_deploy``: a completed job goes ``normalizing`` -> ``deployed`` by itself, or stays
  ``complete`` (``is_deployable``) until its checkpoint is deployed;
* ``deploy_style``: after that explicit deploy the job shows ``normalizing`` until it serves, or
  (``"deploying"``, the newer API) stays ``complete`` and ``is_deployable`` with a provider
  deployment ``deploying`` for ``deploy_warmup_s`` (default ``normalize_s``), then ``deployed``;
* ``list_page_max``: the most jobs one ``GET /felix/training-jobs`` page holds, whatever
  ``limit`` asked (a server paging below its documented 200);
* ``upload_url_field`` (``presigned_url`` / ``upload_url``), ``eval_shape`` (flat ``f1_score`` or
  nested ``metrics``), ``eval_create_shape`` (``evaluations`` list or a bare ``{id, status}``),
  ``list_key`` (``training_jobs`` / ``jobs``), ``fail_status`` (``failed`` / ``errored``).

Faults: ``fail_next_jobs`` jobs fail after ``fail_after_epochs`` epochs; ``running_status`` renames
the running state (an unknown state, as a doc drift would bring); ``eval_f1`` fixes evaluation F1.
The store's rooms, by resource: ``lifecycle_base.py`` (settings, fields, one lock),
``lifecycle_datasets.py``, ``lifecycle_clock.py`` (a job's simulated time), ``lifecycle_jobs.py``,
``lifecycle_evaluations.py``, ``lifecycle_feedback.py``. Nothing here knows FastAPI;
:func:`add_lifecycle_routes` in ``lifecycle_app.py`` serves it, its admin calls are in
``admin_calls.py``.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_pioneer.testing.lifecycle_base import TRAINABLE_MODELS, LifecycleSettings
from airflow_provider_pioneer.testing.lifecycle_evaluations import EvaluationRoom
from airflow_provider_pioneer.testing.lifecycle_feedback import FeedbackRoom
from airflow_provider_pioneer.testing.lifecycle_rows import validate_ner_rows

__all__ = ["TRAINABLE_MODELS", "LifecycleSettings", "LifecycleStore", "validate_ner_rows"]


class LifecycleStore(EvaluationRoom, FeedbackRoom):
    """Datasets, training jobs and evaluations of one emulator (thread-safe, lazily simulated).

    :param base_url: how the presigned upload URLs start (set when the server knows its port).
    """

    def snapshot_counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                **dict(self.counters),
                "jobs": {job.id: self._job_status(job, time.monotonic()) for job in self._jobs.values()},
            }
