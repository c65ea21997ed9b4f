"""The key rotation box: per rotation task, its Variable, the key it names (never the key), the
last run and when the next one is due, with warnings for what needs a person.

What each part needs the user to be allowed: the task instances (and runs) of the rotation's DAG
for the row at all, its XComs for the run's return value, and the Variable itself (Airflow's own
``is_authorized_variable``) for the key's name, age and pending revocations, wherever they are read
from. A Variable that holds no usable key (Airflow's masked ``***`` saved back from the UI, broken
JSON, a document without a key) is flagged, with what to do: every task that reads it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, tuple_
from sqlalchemy.orm import Session

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer.rotation.document import StoredKey, parse_iso_time
from airflow_provider_pioneer.rotation.variable import VariableKeyStore
from airflow_provider_pioneer.ui.records import (
    RotationStatus,
    iso,
    models,
    run_url,
    summary_value,
    task_log_url,
)

DEFAULT_VARIABLE = "pioneer_api_key"
#: Rotation task instances scanned for the status box (newest first): plenty for a handful of DAGs.
ROTATION_SCAN = 200

__all__ = ["DEFAULT_VARIABLE", "rotation_statuses"]


def _rendered_variable(session: Session, dag_id: str, task_id: str) -> str | None:
    """The ``variable_key`` the task rendered most recently (Airflow keeps the last runs' fields)."""
    _, dag_run, _, _, rtif, _ = models()
    query = (
        select(rtif.rendered_fields)
        .join(dag_run, and_(dag_run.dag_id == rtif.dag_id, dag_run.run_id == rtif.run_id))
        .where(rtif.dag_id == dag_id, rtif.task_id == task_id)
        .order_by(dag_run.run_after.desc())
        .limit(1)
    )
    fields = session.scalar(query)
    if isinstance(fields, str):
        try:
            fields = safe_json.loads(fields)
        except ValueError:
            return None
    value = fields.get("variable_key") if isinstance(fields, dict) else None
    return value if isinstance(value, str) and value else None


def _variable_value(session: Session, variable: Any, name: str) -> Any:
    row = session.scalar(select(variable).where(variable.key == name))
    return row.val if row is not None else None


def _returned(session: Session, dag_id: str, task_id: str) -> dict[str, Any]:
    """The last successful rotation's return value: ``{name, created_at, revoked}``, never the key."""
    _, dag_run, xcom, *_ = models()
    value = session.scalar(
        select(xcom.value)
        .join(dag_run, and_(dag_run.dag_id == xcom.dag_id, dag_run.run_id == xcom.run_id))
        .where(xcom.dag_id == dag_id, xcom.task_id == task_id, xcom.key == "return_value")
        .order_by(dag_run.run_after.desc())
        .limit(1)
    )
    return summary_value(value) or {}


def rotation_statuses(
    session: Session,
    tasks: Collection[tuple[str, str]],
    xcom_dags: Collection[str],
    now: datetime,
    key_max_age_days: int,
    ui_root: str,
    can_read_variable: Callable[[str], bool],
) -> list[RotationStatus]:
    """The rotation box's rows, one per rotation task.

    :param tasks: the rotation tasks (dag_id, task_id) whose task instances and runs the user may read.
    :param xcom_dags: DAGs whose XComs the user may read (the rotation's return value).
    :param can_read_variable: Airflow's Variable check, by name.
    """
    if not tasks:
        return []
    ti, dag_run, _, dag_model, _, variable = models()
    query = (
        select(ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.state, ti.end_date)
        .join(dag_run, and_(dag_run.dag_id == ti.dag_id, dag_run.run_id == ti.run_id))
        .where(tuple_(ti.dag_id, ti.task_id).in_(sorted(tasks)), ti.state.is_not(None))
        .order_by(dag_run.run_after.desc())
        .limit(ROTATION_SCAN)
    )
    latest: dict[tuple[str, str], Any] = {}
    for r in session.execute(query):
        latest.setdefault((r.dag_id, r.task_id), r)
    out = []
    for (dag_id, task_id), last in sorted(latest.items()):
        name = _rendered_variable(session, dag_id, task_id) or DEFAULT_VARIABLE
        readable = can_read_variable(name)
        returned_readable = dag_id in xcom_dags
        doc = _returned(session, dag_id, task_id) if returned_readable else {}
        returned_name = doc.get("name") if isinstance(doc.get("name"), str) else None
        key_name = created = problem = None
        pending: list[str] = []
        if readable:
            # The store's facts: names and dates, never the key (read from the metadata DB here).
            store = VariableKeyStore(name, read_value=lambda key: _variable_value(session, variable, key))
            facts = store.describe()
            key_name, created = facts.name, facts.created_at
            pending = list(facts.pending_revoke)
            if facts.problem is not None:
                # The name in a masked document is masked too: the last rotation's return value
                # names the key that was lost (the one it stored).
                lost = StoredKey(present=True, name=key_name or returned_name, problem=facts.problem)
                problem = store.explain(lost, consult_records=False)
                key_name = created = None
            elif key_name is None:
                key_name = returned_name
                created = doc.get("created_at") if isinstance(doc.get("created_at"), str) else None
        if returned_name is not None and returned_name == key_name and isinstance(doc.get("revoked"), list):
            # The Variable keeps the names its writer was about to revoke; the run's return value
            # says which it then did revoke.
            pending = [n for n in pending if n not in doc["revoked"]]
        created_at = parse_iso_time(created)
        age = round((now - created_at).total_seconds() / 86400, 2) if created_at else None
        dag = session.execute(
            select(dag_model.is_paused, dag_model.next_dagrun_create_after).where(dag_model.dag_id == dag_id)
        ).first()
        warnings = []
        if problem is not None:
            warnings.append(f"No usable API key: every task that reads this Variable fails. {problem}")
        if age is not None and age > key_max_age_days:
            warnings.append(
                f"The key is {age:.0f} days old (limit {key_max_age_days}): check that {dag_id} runs and succeeds."
            )
        if last.state in ("failed", "upstream_failed"):
            warnings.append(f"The last rotation ({last.run_id}) failed: open its log.")
        out.append(
            RotationStatus(
                dag_id=dag_id,
                task_id=task_id,
                variable=name,
                key_name=key_name,
                key_created_at=created_at.isoformat(timespec="seconds") if created_at else None,
                key_age_days=age,
                pending_revoke=pending,
                last_run_id=last.run_id,
                last_state=last.state,
                last_end_date=iso(last.end_date),
                last_log_url=task_log_url(ui_root, dag_id, last.run_id, task_id, last.map_index),
                next_run_after=iso(dag.next_dagrun_create_after) if dag and not dag.is_paused else None,
                paused=bool(dag.is_paused) if dag else None,
                variable_readable=readable,
                warnings=warnings,
                key_problem=problem,
                returned_readable=returned_readable,
                last_run_url=run_url(ui_root, dag_id, last.run_id),
            )
        )
    return out
