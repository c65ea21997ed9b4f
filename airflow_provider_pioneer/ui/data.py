"""What the Pioneer view shows, read from Airflow's metadata DB only (no store of our own).

* **Inference runs**: every task instance of a ``PioneerInferenceOperator`` (or any task that
  pushed a ``pioneer_summary`` XCom), newest DAG run first, one page at a time, with the counts of
  its summary XCom (``runs.py``, paged in SQL).
* **Daily totals**: texts and tokens per day over the last ``days`` days, summed in SQL over the
  same XComs (``runs.py``).
* **Model lifecycle**: the newest training jobs (their state), evaluations (F1 and the gate's
  verdict) and dataset versions, from the lifecycle operators' task instances and XComs, a page of
  each at most (``lifecycle.py``).
* **Key rotation**: per rotation task, its Variable, the key it names now (name and age, never the
  key), names pending revocation, the last rotation run and its outcome (``rotation.py``).

Every query is limited to the DAG ids the caller passes (the user's readable DAGs), and within
those to what the auth manager lets the user read of each: task instances and runs, XComs, the
Variable. What it does not is left out and named (``hidden_*``), never silently. The key held in
the rotation Variable is parsed and dropped: nothing this module returns can contain it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from airflow_provider_pioneer.ui.lifecycle import lifecycle_rows
from airflow_provider_pioneer.ui.records import (
    MAX_PAGE_SIZE,
    DailyTotal,
    InferenceRow,
    RotationStatus,
    ViewData,
    summary_value,
)
from airflow_provider_pioneer.ui.rotation import DEFAULT_VARIABLE, rotation_statuses
from airflow_provider_pioneer.ui.runs import daily_totals, empty_days, inference_rows, pioneer_tasks

#: The entities of a DAG the view shows, as Airflow's ``DagAccessEntity`` names them.
TASK_INSTANCE, RUN, XCOM = "TASK_INSTANCE", "RUN", "XCOM"
LIFECYCLE_KINDS = ("training", "evaluation", "dataset")

__all__ = [
    "DEFAULT_VARIABLE",
    "MAX_PAGE_SIZE",
    "RUN",
    "TASK_INSTANCE",
    "XCOM",
    "DailyTotal",
    "InferenceRow",
    "RotationStatus",
    "ViewData",
    "collect",
    "summary_value",
]


def collect(
    session: Session,
    *,
    dag_ids: Iterable[str],
    page: int = 1,
    page_size: int = 50,
    days: int = 30,
    key_max_age_days: int = 30,
    ui_root: str = "",
    now: datetime | None = None,
    can_read_variable: Callable[[str], bool] = lambda name: True,
    can_read_dag_entity: Callable[[str, str], bool] = lambda entity, dag_id: True,
) -> ViewData:
    """The view's data for a user who may read ``dag_ids``.

    :param session: an Airflow metadata DB session.
    :param dag_ids: the DAGs the user may read; nothing of any other DAG is read.
    :param page: 1-based page of the inference runs table.
    :param page_size: rows per page (at most ``MAX_PAGE_SIZE``); also the most rows of each
        lifecycle table (the newest).
    :param days: days of the daily chart, ending today (UTC).
    :param key_max_age_days: a key older than this gets a warning.
    :param ui_root: the UI's path prefix (``[api] base_url``'s path) for task links.
    :param now: the time to measure ages from (tests); default now.
    :param can_read_variable: whether the user may read a Variable (its key name and dates).
    :param can_read_dag_entity: ``(entity, dag_id)``: whether the user may read that entity
        (``TASK_INSTANCE``, ``RUN``, ``XCOM``) of a DAG; asked only for DAGs with Pioneer tasks.
    """
    now = now or datetime.now(UTC)
    allowed = sorted(set(dag_ids))
    page = max(1, page)
    page_size = min(max(1, page_size), MAX_PAGE_SIZE)
    tasks = pioneer_tasks(session, allowed) if allowed else {}
    pioneer = sorted({dag_id for dag_id, _ in tasks})
    ti_dags = {d for d in pioneer if can_read_dag_entity(TASK_INSTANCE, d) and can_read_dag_entity(RUN, d)}
    xcom_dags = {d for d in pioneer if can_read_dag_entity(XCOM, d)}
    inference = {(d, t) for (d, t), kind in tasks.items() if kind == "inference" and d in ti_dags}
    rotation = {(d, t) for (d, t), kind in tasks.items() if kind == "rotation" and d in ti_dags}
    summary_dags = xcom_dags & {d for (d, _), kind in tasks.items() if kind == "inference"}
    runs, total = inference_rows(session, inference, xcom_dags, page, page_size, ui_root)
    daily = daily_totals(session, summary_dags, now, days) if summary_dags else empty_days(now, days)
    lifecycle = {key: kind for key, kind in tasks.items() if kind in LIFECYCLE_KINDS and key[0] in ti_dags}
    life = lifecycle_rows(session, lifecycle, xcom_dags, page_size, ui_root) if lifecycle else {}
    rotations = rotation_statuses(
        session, rotation, xcom_dags, now, key_max_age_days, ui_root, can_read_variable
    )
    return ViewData(
        runs=runs,
        total_runs=total,
        page=page,
        page_size=page_size,
        daily=daily,
        rotations=rotations,
        key_max_age_days=key_max_age_days,
        generated_at=now.isoformat(timespec="seconds"),
        hidden_task_instances=[d for d in pioneer if d not in ti_dags],
        hidden_xcoms=[d for d in pioneer if d not in xcom_dags],
        training_jobs=life.get("training", []),
        evaluations=life.get("evaluation", []),
        datasets=life.get("dataset", []),
    )
