"""What every room of the emulator's lifecycle shares: its settings, its fields and one lock.

:class:`LifecycleSettings` (durations and doc variants, see ``lifecycle.py``), the trainable base
models, and :class:`LifecycleBase`, the fields of a
:class:`~airflow_provider_pioneer.testing.lifecycle.LifecycleStore` whose methods live by
resource: ``lifecycle_datasets.py``, ``lifecycle_clock.py`` (a job's simulated time),
``lifecycle_jobs.py``, ``lifecycle_evaluations.py``, ``lifecycle_feedback.py``.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_pioneer.testing.errors import AuthError

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.lifecycle_clock import Job
    from airflow_provider_pioneer.testing.lifecycle_datasets import Dataset
    from airflow_provider_pioneer.testing.lifecycle_evaluations import Evaluation

__all__ = ["TRAINABLE_MODELS", "LifecycleBase", "LifecycleSettings", "invalid", "iso"]

#: Base models a job may fine-tune (a completed job's id also works: continued training).
TRAINABLE_MODELS = ("fastino/gliner2-base-v1", "fastino/gliner2-large-v1", "fastino/gliner2-multi-v1")
_STYLES = ("pioneer", "fastino")


@dataclass
class LifecycleSettings:
    """Durations (seconds of emulated time) and doc variants; see the module docstring.

    Defaults suit a demo (a job takes about 10 s); tests make them tiny.
    """

    dataset_process_s: float = 1.0
    queue_s: float = 1.0
    epoch_s: float = 0.8
    max_simulated_epochs: int = 10
    normalize_s: float = 2.0
    serve_warmup_s: float = 0.0
    eval_s: float = 2.0
    status_style: str = "pioneer"
    auto_deploy: bool = True
    deploy_style: str = "normalizing"
    deploy_warmup_s: float | None = None
    list_page_max: int | None = None
    idempotency: bool = True
    submit_per_minute: int | None = 20
    upload_url_field: str = "presigned_url"
    eval_shape: str = "nested"
    eval_create_shape: str = "list"
    list_key: str = "training_jobs"
    fail_status: str = "failed"
    fail_next_jobs: int = 0
    fail_after_epochs: int = 1
    running_status: str = "running"
    eval_f1: float | None = None
    training_cost_tokens: int = 1000
    feedback_shape: str = "verdict"
    logs_status: int | None = None

    def update(self, **changes: Any) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown lifecycle settings {sorted(unknown)}; known: {sorted(known)}")
        for name, value in changes.items():
            setattr(self, name, value)
        if self.status_style not in _STYLES:
            raise ValueError(f"status_style must be one of {_STYLES}")
        if self.deploy_style not in ("normalizing", "deploying"):
            raise ValueError("deploy_style is 'normalizing' or 'deploying'")
        if self.upload_url_field not in ("presigned_url", "upload_url"):
            raise ValueError("upload_url_field must be 'presigned_url' or 'upload_url'")
        if self.eval_shape not in ("flat", "nested") or self.eval_create_shape not in ("list", "bare"):
            raise ValueError("eval_shape is 'flat' or 'nested'; eval_create_shape is 'list' or 'bare'")
        if self.feedback_shape not in ("verdict", "correction"):
            raise ValueError("feedback_shape is 'verdict' (OpenAPI) or 'correction' (the older history page)")
        if self.list_key not in ("training_jobs", "jobs") or self.fail_status not in ("failed", "errored"):
            raise ValueError("list_key is 'training_jobs' or 'jobs'; fail_status is 'failed' or 'errored'")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def invalid(loc: tuple[str, ...], msg: str) -> AuthError:
    """FastAPI's 422 for the field at ``loc``."""
    return AuthError(422, msg, body={"detail": [{"loc": list(loc), "msg": msg, "type": "missing"}]})


class LifecycleBase:
    """The fields of a lifecycle store (see the module docstring)."""

    def __init__(self) -> None:
        self.settings = LifecycleSettings()
        self.base_url = ""
        self._lock = threading.Lock()
        self._datasets: dict[str, list[Dataset]] = {}  # by name, oldest version first
        self._uploads: dict[str, Dataset] = {}  # by dataset id
        self._tokens: dict[str, str] = {}  # dataset id -> upload signature
        self._jobs: dict[str, Job] = {}
        self._evaluations: dict[str, Evaluation] = {}
        self._submits: dict[str, deque[float]] = {}  # account id -> submit times (last 60 s)
        self._idempotency: dict[tuple[str, str], tuple[str, str]] = {}  # (account, key) -> (body, job)
        self._inferences: dict[str, str] = {}  # inference id -> account id
        self.feedback: dict[str, dict[str, Any]] = {}  # inference id -> the feedback stored
        self.counters: Counter[str] = Counter()

    def configure(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            self.settings.update(**changes)
            return asdict(self.settings)

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = Counter()
