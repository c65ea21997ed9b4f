"""The model lifecycle tables: training jobs, evaluations (F1 and the gate's verdict), datasets.

Read from what the lifecycle operators leave in the metastore, never from Pioneer's API:

* the task instance (its state: a deferred training task is a job still running);
* its return value XCom: the training job ``{job_id, status, model_name, metrics}``, the
  evaluation ``{evaluation_id, model, dataset_name, f1, precision, recall, passed, min_f1?}``,
  the dataset ``{dataset_name, version, dataset_id, size, labels, status}``;
* the evaluation's ``pioneer_evaluation`` XCom: the scores of a gate that failed or skipped
  (no return value then);
* on Airflow 3.3+, the task's own record in the task state store (``pioneer_training.job_id``,
  ``pioneer_evaluation.evaluation_id``): the id of a job or evaluation still being waited for.

Each kind is one query, newest DAG run first, ``LIMIT`` a page: a long history never comes back to
Python. Only the tasks whose DAG's task instances and runs the user may read have rows at all (the
caller passes those), and only DAGs whose XComs they may read have the returned values joined: the
rest say ``details_hidden``. The task state store is read under the task-instance permission,
as Airflow's own task-state-store endpoint is.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import Session

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer.ui.records import (
    DatasetVersion,
    EvaluationResult,
    LifecycleTask,
    TrainingJob,
    as_float,
    as_int,
    iso,
    models,
    run_url,
    summary_value,
    task_log_url,
)

__all__ = ["lifecycle_rows"]

RETURN_KEY = "return_value"
EVALUATION_KEY = "pioneer_evaluation"  # the evaluation operator's (kept import-free of the operator)
#: The task record's key of the id a task still waits for, per kind (operators' TaskRecord prefixes).
_RECORD_ID_KEY = {"training": "pioneer_training.job_id", "evaluation": "pioneer_evaluation.evaluation_id"}


def _xcom_join(ti: Any, xcom: Any, key: str, xcom_dags: Collection[str]) -> Any:
    return and_(
        xcom.dag_id == ti.dag_id,
        xcom.task_id == ti.task_id,
        xcom.run_id == ti.run_id,
        xcom.map_index == ti.map_index,
        xcom.key == key,
        # A DAG whose XComs the user may not read: its values are not joined at all.
        xcom.dag_id.in_(sorted(xcom_dags)) if xcom_dags else false(),
    )


def _text(value: Any) -> str | None:
    return (
        str(value) if isinstance(value, str | int) and not isinstance(value, bool) and value != "" else None
    )


def _waited_ids(session: Session, kind: str, rows: list[Any]) -> dict[tuple[str, str, str, int], str]:
    """The ids the task instances without a result still wait for, from the task state store."""
    key = _RECORD_ID_KEY.get(kind)
    waiting = [r for r in rows if r.returned is None]
    if key is None or not waiting:
        return {}
    try:
        from airflow.models.task_state_store import TaskStateStoreModel as store
    except ImportError:  # Airflow < 3.3: the record is a Variable, read only under its own permission
        return {}
    match = or_(
        *(
            and_(
                store.dag_id == r.dag_id,
                store.run_id == r.run_id,
                store.task_id == r.task_id,
                store.map_index == r.map_index,
            )
            for r in waiting
        )
    )
    out: dict[tuple[str, str, str, int], str] = {}
    for d, run, t, m, value in session.execute(
        select(store.dag_id, store.run_id, store.task_id, store.map_index, store.value).where(
            store.key == key, match
        )
    ):
        try:
            parsed = safe_json.loads(value) if isinstance(value, str) else value
        except ValueError:
            parsed = value
        if _text(parsed):
            out[(d, run, t, m)] = str(parsed)
    return out


def _query(
    session: Session, kind: str, tasks: Collection[tuple[str, str]], xcom_dags: Collection[str], limit: int
) -> list[Any]:
    ti, dag_run, xcom, *_ = models()
    returned = xcom.__table__.alias("returned")
    gate = xcom.__table__.alias("gate")
    match = or_(*(and_(ti.dag_id == d, ti.task_id == t) for d, t in sorted(tasks)))
    columns = [
        ti.dag_id,
        ti.run_id,
        ti.task_id,
        ti.map_index,
        ti.state,
        ti.end_date,
        returned.c.value.label("returned"),
    ]
    query = (
        select(*columns, gate.c.value.label("gate") if kind == "evaluation" else false().label("gate"))
        .join(dag_run, and_(dag_run.dag_id == ti.dag_id, dag_run.run_id == ti.run_id))
        .outerjoin(returned, _xcom_join(ti, returned.c, RETURN_KEY, xcom_dags))
    )
    if kind == "evaluation":
        query = query.outerjoin(gate, _xcom_join(ti, gate.c, EVALUATION_KEY, xcom_dags))
    query = (
        query.where(match)
        .order_by(dag_run.run_after.desc(), ti.dag_id, ti.task_id, ti.map_index)
        .limit(limit)
    )
    return list(session.execute(query))


def _verdict(result: dict[str, Any]) -> str | None:
    if result.get("f1") is None and "passed" not in result:
        return None
    if result.get("min_f1") is None:
        return "no gate" if result.get("passed") is not False else "below min_f1"
    return "passed" if result.get("passed") is True else "below min_f1"


def _metrics(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    numbers = {str(k): as_float(v) for k, v in value.items()}
    return {k: v for k, v in sorted(numbers.items()) if v is not None}


def _build(kind: str, r: Any, base: dict[str, Any], waited: str | None) -> LifecycleTask:
    result = summary_value(r.returned) or (summary_value(r.gate) if kind == "evaluation" else None) or {}
    if base["details_hidden"]:
        return {"training": TrainingJob, "evaluation": EvaluationResult, "dataset": DatasetVersion}[kind](
            **base
        )
    if kind == "training":
        return TrainingJob(
            **base,
            job_id=_text(result.get("job_id")) or waited,
            job_status=_text(result.get("status")),
            model_name=_text(result.get("model_name")),
            metrics=_metrics(result.get("metrics")),
        )
    if kind == "evaluation":
        return EvaluationResult(
            **base,
            evaluation_id=_text(result.get("evaluation_id")) or waited,
            model=_text(result.get("model")),
            dataset_name=_text(result.get("dataset_name")),
            f1=as_float(result.get("f1")),
            precision=as_float(result.get("precision")),
            recall=as_float(result.get("recall")),
            min_f1=as_float(result.get("min_f1")),
            verdict=_verdict(result),
        )
    labels = result.get("labels")
    return DatasetVersion(
        **base,
        dataset_name=_text(result.get("dataset_name")),
        version=_text(result.get("version")),
        dataset_id=_text(result.get("dataset_id")),
        size=as_int(result.get("size")),
        labels=[str(x) for x in labels] if isinstance(labels, list) else [],
        status=_text(result.get("status")),
    )


def lifecycle_rows(
    session: Session,
    tasks: dict[tuple[str, str], str],
    xcom_dags: Collection[str],
    limit: int,
    ui_root: str,
) -> dict[str, list[Any]]:
    """The newest ``limit`` task instances of each lifecycle kind: ``{"training": [...], ...}``.

    :param tasks: ``{(dag_id, task_id): kind}`` of the lifecycle tasks whose task instances (and
        runs) the user may read.
    :param xcom_dags: DAGs whose XComs the user may read: only their rows carry the returned values.
    :param limit: rows per kind at most (a page).
    :param ui_root: the UI's path prefix, for the log and run links.
    """
    out: dict[str, list[Any]] = {"training": [], "evaluation": [], "dataset": []}
    for kind, found in out.items():
        of_kind = [key for key, k in tasks.items() if k == kind]
        if not of_kind:
            continue
        rows = _query(session, kind, of_kind, xcom_dags, limit)
        waited = _waited_ids(session, kind, [r for r in rows if r.dag_id in xcom_dags])
        for r in rows:
            base = {
                "dag_id": r.dag_id,
                "run_id": r.run_id,
                "task_id": r.task_id,
                "map_index": r.map_index,
                "state": r.state,
                "end_date": iso(r.end_date),
                "log_url": task_log_url(ui_root, r.dag_id, r.run_id, r.task_id, r.map_index),
                "run_url": run_url(ui_root, r.dag_id, r.run_id),
                "details_hidden": r.dag_id not in xcom_dags,
            }
            found.append(_build(kind, r, base, waited.get((r.dag_id, r.run_id, r.task_id, r.map_index))))
    return out
