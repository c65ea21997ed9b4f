"""Seed Airflow's metadata DB with what Pioneer tasks leave behind, for the Pioneer view's tests and benchmark.

Rows go in as Airflow writes them (dag_run, task_instance, xcom ``pioneer_summary``, rendered
fields, the rotation Variable), through the ORM's tables, in bulk. No DAG file is needed: the view
reads only these tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Shard:
    """One inference task instance to seed (a shard when ``map_index`` >= 0)."""

    dag_id: str
    run_id: str
    task_id: str = "infer"
    map_index: int = -1
    state: str = "success"
    ended: datetime | None = None
    total: int = 100
    succeeded: int = 98
    failed: int = 2
    tokens: int = 4_000
    rate_limited: int = 1
    elapsed_s: float = 10.0
    output_path: str | None = "file:///data/out.jsonl"
    label: str | None = None


def summary(shard: Shard) -> dict[str, Any]:
    """What PioneerInferenceOperator pushes as ``pioneer_summary`` (see operators/inference.py)."""
    return {
        "total": shard.total,
        "succeeded": shard.succeeded,
        "failed": shard.failed,
        "skipped_from_checkpoint": 0,
        "duplicate_ids": 0,
        "requests": shard.total // 10 + 1,
        "retries": shard.rate_limited,
        "rate_limited": shard.rate_limited,
        "token_usage": shard.tokens,
        "elapsed_s": shard.elapsed_s,
        "items_per_s": round(shard.total / shard.elapsed_s, 2) if shard.elapsed_s else 0.0,
        "output_path": shard.output_path,
    }


def _tables() -> tuple[Any, Any, Any, Any]:
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    return DagRun.__table__, TaskInstance.__table__, XComModel.__table__, RenderedTaskInstanceFields.__table__


def _chunks(rows: list[dict[str, Any]], size: int = 500) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def seed_runs(
    session: Any,
    shards: list[Shard],
    *,
    operator: str = "PioneerInferenceOperator",
    rendered: dict[tuple[str, str, str, int], dict[str, Any]] | None = None,
    xcoms: dict[tuple[str, str, str, int], tuple[str, Any]] | None = None,
) -> None:
    """Insert the dag runs, task instances and summary XComs of ``shards`` (one commit).

    :param operator: the task instances' operator column.
    :param rendered: extra rendered-fields rows, by (dag_id, run_id, task_id, map_index).
    :param xcoms: an XCom per task instance instead of the summary: (key, value); value None = no XCom.
    """
    from sqlalchemy import insert, select

    dag_run, ti, xcom, rtif = _tables()
    now = datetime.now(UTC)
    runs: dict[tuple[str, str], datetime] = {}
    for s in shards:
        ended = s.ended or now
        key = (s.dag_id, s.run_id)
        runs[key] = min(runs.get(key, ended), ended)
    existing = {
        (r.dag_id, r.run_id)
        for r in session.execute(
            select(dag_run.c.dag_id, dag_run.c.run_id).where(dag_run.c.dag_id.in_({k[0] for k in runs}))
        )
    }
    new_runs = [
        {
            "dag_id": dag_id,
            "run_id": run_id,
            "run_after": when - timedelta(minutes=5),
            "logical_date": when - timedelta(minutes=5),
            "queued_at": when - timedelta(minutes=5),
            "start_date": when - timedelta(minutes=5),
            "end_date": when,
            "state": "success",
            "run_type": "scheduled",
            "data_interval_start": when - timedelta(days=1, minutes=5),
            "data_interval_end": when - timedelta(minutes=5),
        }
        for (dag_id, run_id), when in runs.items()
        if (dag_id, run_id) not in existing
    ]
    for chunk in _chunks(new_runs):
        session.execute(insert(dag_run), chunk)
    ids = {
        (r.dag_id, r.run_id): r.id
        for r in session.execute(
            select(dag_run.c.id, dag_run.c.dag_id, dag_run.c.run_id).where(
                dag_run.c.dag_id.in_({k[0] for k in runs})
            )
        )
    }
    ti_rows, xcom_rows = [], []
    for s in shards:
        ended = s.ended or now
        ti_rows.append(
            {
                "dag_id": s.dag_id,
                "run_id": s.run_id,
                "task_id": s.task_id,
                "map_index": s.map_index,
                "state": s.state,
                "start_date": ended - timedelta(seconds=s.elapsed_s),
                "end_date": ended,
                "duration": s.elapsed_s,
                "try_number": 1,
                "max_tries": 0,
                "pool": "default_pool",
                "pool_slots": 1,
                "operator": operator,
                "rendered_map_index": s.label,
            }
        )
        ident = (s.dag_id, s.run_id, s.task_id, s.map_index)
        key, value = (xcoms or {}).get(ident, ("pioneer_summary", summary(s)))
        if value is not None:
            xcom_rows.append(
                {
                    "dag_run_id": ids[(s.dag_id, s.run_id)],
                    "task_id": s.task_id,
                    "map_index": s.map_index,
                    "key": key,
                    "dag_id": s.dag_id,
                    "run_id": s.run_id,
                    # As the Task Execution API stores it: the JSON document in the JSON column.
                    "value": value,
                    "timestamp": ended,
                }
            )
    for chunk in _chunks(ti_rows):
        session.execute(insert(ti), chunk)
    for chunk in _chunks(xcom_rows):
        session.execute(insert(xcom), chunk)
    rtif_rows = [
        {"dag_id": d, "run_id": r, "task_id": t, "map_index": m, "rendered_fields": fields}
        for (d, r, t, m), fields in (rendered or {}).items()
    ]
    if rtif_rows:
        session.execute(insert(rtif), rtif_rows)
    session.commit()


def seed_rotation(
    session: Any,
    *,
    dag_id: str,
    run_id: str,
    state: str,
    ended: datetime,
    variable: str,
    returned: dict[str, Any] | None,
    task_id: str = "rotate",
) -> None:
    """One rotation task instance, its rendered ``variable_key`` and (on success) its return value."""
    shard = Shard(dag_id=dag_id, run_id=run_id, task_id=task_id, state=state, ended=ended)
    ident = (dag_id, run_id, task_id, -1)
    seed_runs(
        session,
        [shard],
        operator="PioneerKeyRotationOperator",
        rendered={
            ident: {"variable_key": variable, "key_name_prefix": "airflow-pioneer", "old_key_name": None}
        },
        xcoms={ident: ("return_value", returned)},
    )


@dataclass(frozen=True)
class LifecycleTask:
    """One lifecycle task instance to seed, and the XCom it left (``value`` None: none yet)."""

    task_id: str
    operator: str
    state: str
    key: str = "return_value"
    value: dict[str, Any] | None = None
    #: Airflow 3.3+: what the task keeps in its task state store, ``{key: JSON value}``.
    record: dict[str, Any] | None = None


def seed_lifecycle(
    session: Any, dag_id: str, run_id: str, ended: datetime, tasks: list[LifecycleTask]
) -> None:
    """Lifecycle task instances (training, evaluation, dataset upload) of one DAG run, as the
    operators leave them: the task instance, its return value (or the gate's ``pioneer_evaluation``),
    and its task-state-store record while it waits."""
    for t in tasks:
        ident = (dag_id, run_id, t.task_id, -1)
        seed_runs(
            session,
            [Shard(dag_id=dag_id, run_id=run_id, task_id=t.task_id, state=t.state, ended=ended)],
            operator=t.operator,
            xcoms={ident: (t.key, t.value)},
        )
        if t.record:
            _seed_task_state(session, dag_id, run_id, t.task_id, t.record)


def _task_state_table() -> Any:
    try:
        from airflow.models.task_state_store import TaskStateStoreModel
    except ImportError:  # Airflow < 3.3: no task state store
        return None
    return TaskStateStoreModel.__table__


def _seed_task_state(session: Any, dag_id: str, run_id: str, task_id: str, record: dict[str, Any]) -> None:
    from sqlalchemy import insert, select

    table = _task_state_table()
    if table is None:
        return
    dag_run, *_ = _tables()
    run = session.scalar(select(dag_run.c.id).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id))
    rows = [
        {
            "dag_run_id": run,
            "dag_id": dag_id,
            "run_id": run_id,
            "task_id": task_id,
            "map_index": -1,
            "key": key,
            "value": json.dumps(value),
            "updated_at": datetime.now(UTC),
        }
        for key, value in record.items()
    ]
    session.execute(insert(table), rows)
    session.commit()


def set_variable(session: Any, key: str, value: dict[str, Any] | str) -> None:
    """The rotation's Variable, encrypted as Airflow stores it."""
    from airflow.models.variable import Variable

    session.query(Variable).filter(Variable.key == key).delete()
    session.add(Variable(key=key, val=value if isinstance(value, str) else json.dumps(value)))
    session.commit()


def seed_dags(
    session: Any, dag_ids: list[str], *, next_run: datetime | None = None, paused: bool = False
) -> None:
    """``dag`` rows (what auth managers list readable DAGs from), in the dags-folder bundle."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from sqlalchemy import insert, select

    if session.scalar(select(DagBundleModel.name).where(DagBundleModel.name == "dags-folder")) is None:
        session.add(DagBundleModel(name="dags-folder"))
        session.flush()
    existing = set(session.scalars(select(DagModel.dag_id).where(DagModel.dag_id.in_(dag_ids))))
    rows = [
        {
            "dag_id": dag_id,
            "bundle_name": "dags-folder",
            "is_paused": paused,
            "is_stale": False,
            "fileloc": f"/dags/{dag_id}.py",
            "max_active_tasks": 16,
            "max_active_runs": 16,
            "max_consecutive_failed_dag_runs": 0,
            "has_task_concurrency_limits": False,
            "next_dagrun_create_after": next_run,
        }
        for dag_id in dag_ids
        if dag_id not in existing
    ]
    if rows:
        session.execute(insert(DagModel.__table__), rows)
    session.commit()


def clear(session: Any, dag_ids: list[str]) -> None:
    """Remove everything seeded for ``dag_ids``."""
    from airflow.models.dag import DagModel
    from sqlalchemy import delete

    dag_run, ti, xcom, rtif = _tables()
    state = _task_state_table()
    for table in (*([state] if state is not None else []), xcom, rtif, ti, dag_run, DagModel.__table__):
        session.execute(delete(table).where(table.c.dag_id.in_(dag_ids)))
    session.commit()
