"""The inference runs table and the daily totals, paged and summed in the database.

The table is one page of task instances (``LIMIT``/``OFFSET`` in SQL, at most
``MAX_PAGE_SIZE`` rows): only that page's summary XComs are read into Python. The daily totals
are one ``GROUP BY`` over the summaries' JSON (:mod:`airflow_provider_pioneer.ui.summary_sql`):
30 rows come back, however many task instances there are.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select, union
from sqlalchemy.orm import Session

from airflow_provider_pioneer.ui.records import (
    INFERENCE_OPERATOR,
    ROTATION_OPERATOR,
    SUMMARY_XCOM_KEY,
    DailyTotal,
    InferenceRow,
    as_float,
    as_int,
    iso,
    models,
    run_url,
    summary_value,
    task_log_url,
)
from airflow_provider_pioneer.ui.summary_sql import day_of, number_field

__all__ = ["daily_totals", "empty_days", "inference_rows", "pioneer_dag_ids"]


def _summary_join(ti: Any, xcom: Any, xcom_dags: Collection[str]) -> Any:
    return and_(
        xcom.dag_id == ti.dag_id,
        xcom.task_id == ti.task_id,
        xcom.run_id == ti.run_id,
        xcom.map_index == ti.map_index,
        xcom.key == SUMMARY_XCOM_KEY,
        # A DAG whose XComs the user may not read: its summaries are not joined at all.
        xcom.dag_id.in_(xcom_dags) if xcom_dags else false(),
    )


def pioneer_dag_ids(session: Session, dag_ids: Collection[str]) -> list[str]:
    """The DAGs among ``dag_ids`` with a Pioneer task instance or summary (the ones to ask about)."""
    ti, _, xcom, *_ = models()
    query = union(
        select(ti.dag_id).where(
            ti.dag_id.in_(dag_ids), ti.operator.in_((INFERENCE_OPERATOR, ROTATION_OPERATOR))
        ),
        select(xcom.dag_id).where(xcom.dag_id.in_(dag_ids), xcom.key == SUMMARY_XCOM_KEY),
    )
    return sorted(session.scalars(query))


def inference_rows(
    session: Session,
    ti_dags: Collection[str],
    xcom_dags: Collection[str],
    page: int,
    page_size: int,
    ui_root: str,
) -> tuple[list[InferenceRow], int]:
    """One page of inference task instances (newest run first) and how many there are in all.

    :param ti_dags: DAGs whose task instances (and runs) the user may read: only these have rows.
    :param xcom_dags: DAGs whose XComs the user may read: only these rows carry the summary's counts.
    """
    if not ti_dags:
        return [], 0
    ti, dag_run, xcom, *_ = models()
    join = _summary_join(ti, xcom, xcom_dags)
    where = and_(ti.dag_id.in_(ti_dags), or_(ti.operator == INFERENCE_OPERATOR, xcom.key.is_not(None)))
    total = session.scalar(select(func.count()).select_from(ti).outerjoin(xcom, join).where(where))
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
        .outerjoin(xcom, join)
        .where(where)
        .order_by(dag_run.run_after.desc(), ti.dag_id, ti.task_id, ti.map_index)
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    rows = []
    for r in session.execute(query):
        hidden = r.dag_id not in xcom_dags
        summary = {} if hidden else summary_value(r.value) or {}
        elapsed = as_float(summary.get("elapsed_s"))
        output_path = summary.get("output_path")
        rows.append(
            InferenceRow(
                dag_id=r.dag_id,
                run_id=r.run_id,
                task_id=r.task_id,
                map_index=r.map_index,
                label=r._rendered_map_index,
                state=r.state,
                try_number=r.try_number or 0,
                start_date=iso(r.start_date),
                end_date=iso(r.end_date),
                duration_s=elapsed if elapsed is not None else as_float(r.duration),
                texts=as_int(summary.get("total")),
                succeeded=as_int(summary.get("succeeded")),
                failed=as_int(summary.get("failed")),
                tokens=as_int(summary.get("token_usage")),
                rate_limited=as_int(summary.get("rate_limited")),
                texts_per_s=as_float(summary.get("items_per_s")),
                output_path=output_path if isinstance(output_path, str) else None,
                log_url=task_log_url(ui_root, r.dag_id, r.run_id, r.task_id, r.map_index),
                summary_hidden=hidden,
                run_url=run_url(ui_root, r.dag_id, r.run_id),
            )
        )
    return rows, int(total or 0)


def daily_totals(session: Session, xcom_dags: Collection[str], now: datetime, days: int) -> list[DailyTotal]:
    """Texts (succeeded + failed) and tokens per UTC day, summed in SQL over the summaries.

    A summary counts on the day it was pushed (the XCom's timestamp: the task's last moments).
    """
    out = empty_days(now, days)
    if not xcom_dags:
        return out
    _, _, xcom, *_ = models()
    dialect = session.get_bind().dialect.name
    first = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    day = day_of(xcom.timestamp, dialect).label("day")
    query = (
        select(
            day,
            func.sum(
                func.coalesce(number_field(xcom.value, "succeeded", dialect), 0)
                + func.coalesce(number_field(xcom.value, "failed", dialect), 0)
            ),
            func.sum(func.coalesce(number_field(xcom.value, "token_usage", dialect), 0)),
        )
        .where(xcom.key == SUMMARY_XCOM_KEY, xcom.dag_id.in_(xcom_dags), xcom.timestamp >= since)
        .group_by(day)
    )
    sums = {str(d): (int(texts or 0), int(tokens or 0)) for d, texts, tokens in session.execute(query)}
    return [DailyTotal(d.day, *sums.get(d.day, (0, 0))) for d in out]


def empty_days(now: datetime, days: int) -> list[DailyTotal]:
    """``days`` zero totals, ending today (UTC)."""
    first = (now - timedelta(days=days - 1)).date()
    return [DailyTotal((first + timedelta(days=i)).isoformat(), 0, 0) for i in range(days)]
