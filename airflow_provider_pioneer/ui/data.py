"""What the Pioneer view shows, read from Airflow's metadata DB only (no store of our own).

* **Inference runs**: every task instance of a ``PioneerInferenceOperator`` (or any task that
  pushed a ``pioneer_summary`` XCom), newest DAG run first, one page at a time, with the counts of
  its summary XCom.
* **Daily totals**: texts and tokens per day over the last ``days`` days, from the same XComs.
* **Key rotation**: per rotation task, its Variable (from the task's rendered ``variable_key``),
  the key the Variable names now (name and age, never the key), names pending revocation, the last
  rotation run and its outcome, and when the DAG runs next.

Every query is limited to the DAG ids the caller passes (the user's readable DAGs). The key held
in the rotation Variable is parsed and dropped here: nothing this module returns can contain it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer.stored_key import parse_iso_time, parse_stored

SUMMARY_XCOM_KEY = "pioneer_summary"  # the inference operator's (kept import-free of the operator)
INFERENCE_OPERATOR = "PioneerInferenceOperator"
ROTATION_OPERATOR = "PioneerKeyRotationOperator"
DEFAULT_VARIABLE = "pioneer_api_key"
MAX_PAGE_SIZE = 200
#: Rotation task instances scanned for the status box (newest first): plenty for a handful of DAGs.
ROTATION_SCAN = 200

__all__ = [
    "DailyTotal",
    "InferenceRow",
    "RotationStatus",
    "ViewData",
    "collect",
    "summary_value",
]


@dataclass(frozen=True)
class InferenceRow:
    """One inference task instance (a shard when mapped) and its summary counts."""

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


@dataclass(frozen=True)
class DailyTotal:
    """Texts answered (succeeded + failed) and tokens billed on one UTC day."""

    day: str
    texts: int
    tokens: int


@dataclass(frozen=True)
class RotationStatus:
    """One rotation task's Variable and its last run; names and dates only, never a key."""

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


@dataclass(frozen=True)
class ViewData:
    """Everything the page and the JSON endpoint show."""

    runs: list[InferenceRow]
    total_runs: int
    page: int
    page_size: int
    daily: list[DailyTotal]
    rotations: list[RotationStatus]
    key_max_age_days: int
    generated_at: str

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


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def task_log_url(ui_root: str, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The task instance's page in Airflow 3's UI (it opens on the task's log)."""
    url = f"{ui_root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    return f"{url}/mapped/{map_index}" if map_index >= 0 else url


def _models() -> tuple[Any, Any, Any, Any, Any, Any]:
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel

    return TaskInstance, DagRun, XComModel, DagModel, RenderedTaskInstanceFields, Variable


def _summary_join(ti: Any, xcom: Any) -> Any:
    return and_(
        xcom.dag_id == ti.dag_id,
        xcom.task_id == ti.task_id,
        xcom.run_id == ti.run_id,
        xcom.map_index == ti.map_index,
        xcom.key == SUMMARY_XCOM_KEY,
    )


def _runs(
    session: Session, dag_ids: Collection[str], page: int, page_size: int, ui_root: str
) -> tuple[list[InferenceRow], int]:
    ti, dag_run, xcom, *_ = _models()
    where = and_(
        ti.dag_id.in_(dag_ids),
        or_(ti.operator == INFERENCE_OPERATOR, xcom.key.is_not(None)),
    )
    base = select(ti.dag_id).outerjoin(xcom, _summary_join(ti, xcom)).where(where)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    query = (
        select(
            ti.dag_id,
            ti.run_id,
            ti.task_id,
            ti.map_index,
            ti._rendered_map_index,
            ti.state,
            ti.try_number,
            ti.start_date,
            ti.end_date,
            ti.duration,
            xcom.value,
        )
        .join(dag_run, and_(dag_run.dag_id == ti.dag_id, dag_run.run_id == ti.run_id))
        .outerjoin(xcom, _summary_join(ti, xcom))
        .where(where)
        .order_by(dag_run.run_after.desc(), ti.dag_id, ti.task_id, ti.map_index)
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    rows = []
    for r in session.execute(query):
        summary = summary_value(r.value) or {}
        succeeded, failed = _int(summary.get("succeeded")), _int(summary.get("failed"))
        elapsed = _float(summary.get("elapsed_s"))
        rows.append(
            InferenceRow(
                dag_id=r.dag_id,
                run_id=r.run_id,
                task_id=r.task_id,
                map_index=r.map_index,
                label=r._rendered_map_index,
                state=r.state,
                try_number=r.try_number or 0,
                start_date=_iso(r.start_date),
                end_date=_iso(r.end_date),
                duration_s=elapsed if elapsed is not None else _float(r.duration),
                texts=_int(summary.get("total")),
                succeeded=succeeded,
                failed=failed,
                tokens=_int(summary.get("token_usage")),
                rate_limited=_int(summary.get("rate_limited")),
                texts_per_s=_float(summary.get("items_per_s")),
                output_path=summary.get("output_path")
                if isinstance(summary.get("output_path"), str)
                else None,
                log_url=task_log_url(ui_root, r.dag_id, r.run_id, r.task_id, r.map_index),
            )
        )
    return rows, int(total)


def _daily(session: Session, dag_ids: Collection[str], now: datetime, days: int) -> list[DailyTotal]:
    ti, _, xcom, *_ = _models()
    first = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    query = (
        select(xcom.value, xcom.timestamp, ti.end_date)
        .select_from(xcom)
        .outerjoin(
            ti,
            and_(
                ti.dag_id == xcom.dag_id,
                ti.task_id == xcom.task_id,
                ti.run_id == xcom.run_id,
                ti.map_index == xcom.map_index,
            ),
        )
        .where(xcom.key == SUMMARY_XCOM_KEY, xcom.dag_id.in_(dag_ids), xcom.timestamp >= since)
    )
    texts: dict[date, int] = {}
    tokens: dict[date, int] = {}
    for value, stamp, ended in session.execute(query):
        summary = summary_value(value)
        when = ended or stamp
        if not summary or when is None:
            continue
        day = when.astimezone(UTC).date()
        texts[day] = (
            texts.get(day, 0) + (_int(summary.get("succeeded")) or 0) + (_int(summary.get("failed")) or 0)
        )
        tokens[day] = tokens.get(day, 0) + (_int(summary.get("token_usage")) or 0)
    out = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        out.append(DailyTotal(day.isoformat(), texts.get(day, 0), tokens.get(day, 0)))
    return out


def _rendered_variable(session: Session, dag_id: str, task_id: str) -> str | None:
    """The ``variable_key`` the task rendered most recently (Airflow keeps the last runs' fields)."""
    _, dag_run, _, _, rtif, _ = _models()
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


def _rotations(
    session: Session,
    dag_ids: Collection[str],
    now: datetime,
    key_max_age_days: int,
    ui_root: str,
    can_read_variable: Callable[[str], bool],
) -> list[RotationStatus]:
    ti, dag_run, xcom, dag_model, _, variable = _models()
    query = (
        select(ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.state, ti.end_date)
        .join(dag_run, and_(dag_run.dag_id == ti.dag_id, dag_run.run_id == ti.run_id))
        .where(ti.dag_id.in_(dag_ids), ti.operator == ROTATION_OPERATOR, ti.state.is_not(None))
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
        key_name = created = None
        pending: list[str] = []
        if readable:
            stored_value = session.scalar(select(variable).where(variable.key == name))
            # parse_stored keeps the key in a field no caller here reads: only names and dates leave.
            stored = parse_stored(stored_value.val if stored_value is not None else None)
            key_name, created, pending = stored.name, stored.created_at, list(stored.pending_revoke)
        # The last successful rotation's return value: {name, created_at, revoked}, never the key.
        returned = session.scalar(
            select(xcom.value)
            .join(dag_run, and_(dag_run.dag_id == xcom.dag_id, dag_run.run_id == xcom.run_id))
            .where(xcom.dag_id == dag_id, xcom.task_id == task_id, xcom.key == "return_value")
            .order_by(dag_run.run_after.desc())
            .limit(1)
        )
        doc = summary_value(returned) or {}
        returned_name = doc.get("name") if isinstance(doc.get("name"), str) else None
        if key_name is None:
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
                last_end_date=_iso(last.end_date),
                last_log_url=task_log_url(ui_root, dag_id, last.run_id, task_id, last.map_index),
                next_run_after=_iso(dag.next_dagrun_create_after) if dag and not dag.is_paused else None,
                paused=bool(dag.is_paused) if dag else None,
                variable_readable=readable,
                warnings=warnings,
            )
        )
    return out


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
) -> ViewData:
    """The view's data for a user who may read ``dag_ids``.

    :param session: an Airflow metadata DB session.
    :param dag_ids: the DAGs the user may read; nothing of any other DAG is read.
    :param page: 1-based page of the inference runs table.
    :param page_size: rows per page (at most ``MAX_PAGE_SIZE``).
    :param days: days of the daily chart, ending today (UTC).
    :param key_max_age_days: a key older than this gets a warning.
    :param ui_root: the UI's path prefix (``[api] base_url``'s path) for task links.
    :param now: the time to measure ages from (tests); default now.
    :param can_read_variable: whether the user may read a Variable (its key name and dates).
    """
    now = now or datetime.now(UTC)
    allowed = sorted(set(dag_ids))
    page = max(1, page)
    page_size = min(max(1, page_size), MAX_PAGE_SIZE)
    if allowed:
        runs, total = _runs(session, allowed, page, page_size, ui_root)
        daily = _daily(session, allowed, now, days)
        rotations = _rotations(session, allowed, now, key_max_age_days, ui_root, can_read_variable)
    else:
        runs, total, rotations = [], 0, []
        daily = _daily_empty(now, days)
    return ViewData(
        runs=runs,
        total_runs=total,
        page=page,
        page_size=page_size,
        daily=daily,
        rotations=rotations,
        key_max_age_days=key_max_age_days,
        generated_at=now.isoformat(timespec="seconds"),
    )


def _daily_empty(now: datetime, days: int) -> list[DailyTotal]:
    first = (now - timedelta(days=days - 1)).date()
    return [DailyTotal((first + timedelta(days=i)).isoformat(), 0, 0) for i in range(days)]
