"""What the Pioneer view shows, as plain records (names, counts and dates: never a key), and the
small readers the queries share. No query lives here (``runs.py``, ``rotation.py``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from airflow_provider_pioneer import safe_json

SUMMARY_XCOM_KEY = "pioneer_summary"  # the inference operator's (kept import-free of the operator)
INFERENCE_OPERATOR = "PioneerInferenceOperator"
ROTATION_OPERATOR = "PioneerKeyRotationOperator"
#: The lifecycle operators, by the kind of row the view shows for them.
LIFECYCLE_OPERATORS = {
    "PioneerTrainingJobOperator": "training",
    "PioneerEvaluationOperator": "evaluation",
    "PioneerDatasetUploadOperator": "dataset",
}
MAX_PAGE_SIZE = 200

__all__ = [
    "MAX_PAGE_SIZE",
    "DailyTotal",
    "DatasetVersion",
    "EvaluationResult",
    "InferenceRow",
    "RotationStatus",
    "TrainingJob",
    "ViewData",
    "summary_value",
]


@dataclass(frozen=True)
class InferenceRow:
    """One inference task instance (a shard when mapped) and its summary counts.

    ``summary_hidden``: the user may not read this DAG's XComs, so the counts are not shown.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    label: str | None
    state: str | None
    try_number: int
    start_date: str | None
    end_date: str | None
    duration_s: float | None
    texts: int | None
    succeeded: int | None
    failed: int | None
    tokens: int | None
    rate_limited: int | None
    texts_per_s: float | None
    output_path: str | None
    log_url: str
    summary_hidden: bool = False
    run_url: str = ""


@dataclass(frozen=True)
class DailyTotal:
    """Texts answered (succeeded + failed) and tokens billed on one UTC day."""

    day: str
    texts: int
    tokens: int


@dataclass(frozen=True)
class RotationStatus:
    """One rotation task's Variable and its last run; names and dates only, never a key.

    ``key_problem``: why the Variable holds no usable key (every task reading it fails), or None.
    ``returned_readable``: whether the user may read the rotation's XComs (its return value).
    """

    dag_id: str
    task_id: str
    variable: str
    key_name: str | None
    key_created_at: str | None
    key_age_days: float | None
    pending_revoke: list[str]
    last_run_id: str | None
    last_state: str | None
    last_end_date: str | None
    last_log_url: str | None
    next_run_after: str | None
    paused: bool | None
    variable_readable: bool
    warnings: list[str] = field(default_factory=list)
    key_problem: str | None = None
    returned_readable: bool = True
    last_run_url: str | None = None


@dataclass(frozen=True)
class LifecycleTask:
    """One lifecycle task instance (training, evaluation or dataset upload) and where to read more.

    ``details_hidden``: the user may not read this DAG's XComs, so what the task returned (job,
    scores, dataset) is not shown.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    end_date: str | None
    log_url: str
    run_url: str
    details_hidden: bool


@dataclass(frozen=True)
class TrainingJob(LifecycleTask):
    """A ``PioneerTrainingJobOperator`` task: its job, the job's last known state and metrics.

    ``job_status`` is the job's status the task returned (on success); while the task still waits
    it is None and ``job_id`` comes from the task's own record (Airflow 3.3's task state store).
    """

    job_id: str | None = None
    job_status: str | None = None
    model_name: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationResult(LifecycleTask):
    """A ``PioneerEvaluationOperator`` task: the scores and the gate's verdict.

    ``verdict``: ``"passed"`` (F1 >= ``min_f1``), ``"below min_f1"``, ``"no gate"`` (no
    ``min_f1``), or None while there are no scores.
    """

    evaluation_id: str | None = None
    model: str | None = None
    dataset_name: str | None = None
    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    min_f1: float | None = None
    verdict: str | None = None


@dataclass(frozen=True)
class DatasetVersion(LifecycleTask):
    """A ``PioneerDatasetUploadOperator`` task: the dataset version it made ready."""

    dataset_name: str | None = None
    version: str | None = None
    dataset_id: str | None = None
    size: int | None = None
    labels: list[str] = field(default_factory=list)
    status: str | None = None


@dataclass(frozen=True)
class ViewData:
    """Everything the page and the JSON endpoint show.

    ``hidden_task_instances`` / ``hidden_xcoms``: the DAGs (among those the user may read) whose
    Pioneer task instances or XComs the auth manager does not let them read, so the page can say
    what it leaves out. ``training_jobs`` / ``evaluations`` / ``datasets``: the newest lifecycle
    task instances of each kind, a page at most.
    """

    runs: list[InferenceRow]
    total_runs: int
    page: int
    page_size: int
    daily: list[DailyTotal]
    rotations: list[RotationStatus]
    key_max_age_days: int
    generated_at: str
    hidden_task_instances: list[str] = field(default_factory=list)
    hidden_xcoms: list[str] = field(default_factory=list)
    training_jobs: list[TrainingJob] = field(default_factory=list)
    evaluations: list[EvaluationResult] = field(default_factory=list)
    datasets: list[DatasetVersion] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def summary_value(value: Any) -> dict[str, Any] | None:
    """The summary dict from an XCom column value, however it was stored (JSON text or a dict)."""
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            value = safe_json.loads(value)
        except ValueError:
            return None
        # An XCom pushed through serialize_value is JSON text inside the JSON column.
        if isinstance(value, str):
            return summary_value(value)
    return value if isinstance(value, dict) else None


def as_int(value: Any) -> int | None:
    """``value`` as an int when it is a number (not a bool), else None."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def as_float(value: Any) -> float | None:
    """``value`` as a float when it is a number (not a bool), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset (the page localises it in the browser)."""
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def task_log_url(ui_root: str, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The task instance's page in Airflow 3's UI (it opens on the task's log)."""
    url = f"{ui_root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    return f"{url}/mapped/{map_index}" if map_index >= 0 else url


def run_url(ui_root: str, dag_id: str, run_id: str) -> str:
    """The DAG run's page in Airflow 3's UI."""
    return f"{ui_root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def models() -> tuple[Any, Any, Any, Any, Any, Any]:
    """Airflow's ORM models, imported on first use (the plugin module stays import-light)."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel

    return TaskInstance, DagRun, XComModel, DagModel, RenderedTaskInstanceFields, Variable
