"""The inference runs table and the daily totals, paged and summed in the database.

The table is one page of task instances (``LIMIT``/``OFFSET`` in SQL, at most
``MAX_PAGE_SIZE`` rows): only that page's summary XComs are read into Python. The daily totals
are one ``GROUP BY`` over the summaries' JSON (:mod:`airflow_provider_pioneer.ui.summary_sql`):
30 rows come back, however many task instances there are.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.orm import Session

from airflow_provider_pioneer.ui.records import (
    INFERENCE_OPERATOR,
    LIFECYCLE_OPERATORS,
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
from airflow_provider_pioneer.ui.summary_sql import day_of, sqlite_positions, summary_numbers

__all__ = ["clear_caches", "daily_totals", "empty_days", "inference_rows", "pioneer_tasks"]


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


#: Which tasks are Pioneer tasks changes only when a DAG run brings a new one (the cache's key holds
#: the DAGs' runs: how many and the newest id), else they are found again at most this often.
PIONEER_TASKS_TTL_S = 60.0
_pioneer_tasks: dict[tuple[Any, ...], tuple[float, dict[tuple[str, str], str]]] = {}


def pioneer_tasks(session: Session, dag_ids: Collection[str]) -> dict[tuple[str, str], str]:
    """The Pioneer tasks among ``dag_ids``: ``{(dag_id, task_id): kind}``, the kind one of
    ``"inference"``, ``"rotation"``, ``"training"``, ``"evaluation"``, ``"dataset"``.

    An inference task is one of the operator's, or any task that pushed a summary (a subclass,
    whose ``operator`` column holds its own class name). Read per task, not per task instance:
    the distinct tasks come from an index alone, then one task instance's operator each; kept
    for ``PIONEER_TASKS_TTL_S`` (a walk of that index costs as much as the rest of the page), while the DAGs' runs stay the same.
    """
    _, dag_run, *_ = models()
    runs = session.execute(
        select(func.count(), func.max(dag_run.id)).where(dag_run.dag_id.in_(dag_ids))
    ).one()
    key = (str(session.get_bind().engine.url), tuple(sorted(dag_ids)), tuple(runs))
    cached = _pioneer_tasks.get(key)
    if cached is not None and time.monotonic() - cached[0] <= PIONEER_TASKS_TTL_S:
        return cached[1]
    found = _find_pioneer_tasks(session, dag_ids)
    if len(_pioneer_tasks) >= 64:  # one entry per distinct set of readable DAGs: bounded
        _pioneer_tasks.clear()
    _pioneer_tasks[key] = (time.monotonic(), found)
    return found


def _find_pioneer_tasks(session: Session, dag_ids: Collection[str]) -> dict[tuple[str, str], str]:
    ti, _, xcom, *_ = models()
    tasks = select(ti.dag_id, ti.task_id).where(ti.dag_id.in_(dag_ids)).distinct().subquery()
    other = ti.__table__.alias("ti_operator")
    operator = (
        select(other.c.operator)
        .where(other.c.dag_id == tasks.c.dag_id, other.c.task_id == tasks.c.task_id)
        .limit(1)
        .scalar_subquery()
    )
    pushed = (
        select(xcom.key)
        .where(xcom.dag_id == tasks.c.dag_id, xcom.task_id == tasks.c.task_id, xcom.key == SUMMARY_XCOM_KEY)
        .exists()
    )
    out: dict[tuple[str, str], str] = {}
    for dag_id, task_id, op, has_summary in session.execute(
        select(tasks.c.dag_id, tasks.c.task_id, operator, pushed)
    ):
        if op == ROTATION_OPERATOR:
            out[(dag_id, task_id)] = "rotation"
        elif op in LIFECYCLE_OPERATORS:
            out[(dag_id, task_id)] = LIFECYCLE_OPERATORS[op]
        elif op == INFERENCE_OPERATOR or has_summary:
            out[(dag_id, task_id)] = "inference"
    return out


def _in_tasks(ti: Any, tasks: Collection[tuple[str, str]]) -> Any:
    # One (dag_id = ? AND task_id = ?) per task, not a row-value IN: SQLite then counts from the
    # (dag_id, task_id, run_id, state) index alone, never reading the task instances' rows.
    return or_(*(and_(ti.dag_id == d, ti.task_id == t) for d, t in sorted(tasks))) if tasks else false()


def _page_slices(
    session: Session, ti: Any, dag_run: Any, match: Any, start: int, size: int
) -> tuple[list[tuple[str, str, int, int]], int]:
    """Which DAG runs the page's rows fall in, as (dag_id, run_id, offset, limit), and the total.

    Rows are ordered newest run first. One query counts the matching task instances per run (from
    an index alone) and, with a running sum over the runs in that order, returns only the one or
    two runs the page falls in: the page's own query then sorts the rows of those runs, never
    every task instance, and no list of every run comes back to Python.
    """
    counts = (
        select(ti.dag_id, ti.run_id, func.count().label("n"))
        .where(match)
        .group_by(ti.dag_id, ti.run_id)
        .subquery()
    )
    order = (dag_run.run_after.desc(), counts.c.dag_id, counts.c.run_id)
    ordered = (
        select(
            counts.c.dag_id,
            counts.c.run_id,
            counts.c.n,
            func.sum(counts.c.n).over(order_by=order).label("upto"),
            func.sum(counts.c.n).over().label("total"),
        )
        .join(dag_run, and_(dag_run.dag_id == counts.c.dag_id, dag_run.run_id == counts.c.run_id))
        .subquery()
    )
    end = start + size
    slices: list[tuple[str, str, int, int]] = []
    total = None
    for d, r, n, upto, in_all in session.execute(
        select(ordered)
        .where(ordered.c.upto > start, ordered.c.upto - ordered.c.n < end)
        .order_by(ordered.c.upto)
    ):
        total = in_all
        seen = int(upto) - int(n)
        offset = max(0, start - seen)
        slices.append((d, r, offset, min(int(n), end - seen) - offset))
    if total is None:  # a page past the end: the total alone
        total = session.scalar(select(func.coalesce(func.sum(counts.c.n), 0)))
    return slices, int(total or 0)


def inference_rows(
    session: Session,
    tasks: Collection[tuple[str, str]],
    xcom_dags: Collection[str],
    page: int,
    page_size: int,
    ui_root: str,
) -> tuple[list[InferenceRow], int]:
    """One page of inference task instances (newest run first) and how many there are in all.

    :param tasks: the inference tasks (dag_id, task_id) whose task instances (and runs) the user
        may read: only these have rows.
    :param xcom_dags: DAGs whose XComs the user may read: only these rows carry the summary's counts.
    """
    if not tasks:
        return [], 0
    ti, dag_run, xcom, *_ = models()
    match = _in_tasks(ti, tasks)
    slices, total = _page_slices(session, ti, dag_run, match, (page - 1) * page_size, page_size)
    rows: list[InferenceRow] = []
    for dag_id, run_id, offset, limit in slices:
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
            .outerjoin(xcom, _summary_join(ti, xcom, xcom_dags))
            .where(match, ti.dag_id == dag_id, ti.run_id == run_id)
            .order_by(ti.task_id, ti.map_index)
            .limit(limit)
            .offset(offset)
        )
        rows.extend(_row(r, xcom_dags, ui_root) for r in session.execute(query))
    return rows, total


def _row(r: Any, xcom_dags: Collection[str], ui_root: str) -> InferenceRow:
    hidden = r.dag_id not in xcom_dags
    summary = {} if hidden else summary_value(r.value) or {}
    elapsed = as_float(summary.get("elapsed_s"))
    output_path = summary.get("output_path")
    return InferenceRow(
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


#: Past days' totals per (database, DAGs, first day, today): a past day changes only when an old
#: run is cleared and run again, so they are summed again at most every PAST_DAYS_TTL_S seconds.
#: Today's are always summed fresh (from the runs that ended today or still run: a few thousand
#: XComs at most, where the 30 days are 120,000 at real scale).
PAST_DAYS_TTL_S = 300.0
_past_days: dict[tuple[Any, ...], tuple[float, dict[str, tuple[int, int]]]] = {}


def _sums(session: Session, xcom: Any, where: list[Any], dialect: str) -> dict[str, tuple[int, int]]:
    """``{day: (texts, tokens)}`` over the summary XComs ``where`` selects, in one GROUP BY."""
    names = ("succeeded", "failed", "token_usage")
    day = day_of(xcom.timestamp, dialect)
    if dialect == "sqlite":
        # One parse of each document: the fields as a small array, read per position outside.
        (array,) = summary_numbers(xcom.value, names, dialect)
        inner = select(day.label("day"), array.label("numbers")).where(*where).limit(-1).offset(0).subquery()
        succeeded, failed, tokens = sqlite_positions(inner.c.numbers, len(names))
        group: Any = inner.c.day
        query = select(
            group,
            func.sum(func.coalesce(succeeded, 0) + func.coalesce(failed, 0)),
            func.sum(func.coalesce(tokens, 0)),
        )
    else:
        succeeded, failed, tokens = summary_numbers(xcom.value, names, dialect)
        group = day.label("day")
        query = select(
            group,
            func.sum(func.coalesce(succeeded, 0) + func.coalesce(failed, 0)),
            func.sum(func.coalesce(tokens, 0)),
        ).where(*where)
    return {
        str(d): (int(texts or 0), int(toks or 0)) for d, texts, toks in session.execute(query.group_by(group))
    }


def daily_totals(session: Session, xcom_dags: Collection[str], now: datetime, days: int) -> list[DailyTotal]:
    """Texts (succeeded + failed) and tokens per UTC day, summed in SQL over the summaries.

    A summary counts on the day it was pushed (the XCom's timestamp: the task's last moments).
    """
    out = empty_days(now, days)
    if not xcom_dags:
        return out
    _, dag_run, xcom, *_ = models()
    bind = session.get_bind()
    dialect = bind.dialect.name
    first = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    today = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    base = [xcom.key == SUMMARY_XCOM_KEY, xcom.dag_id.in_(sorted(xcom_dags))]
    # How many summaries exist at all (an index count): seeding or deleting any makes a new entry.
    stored = session.scalar(select(func.count()).select_from(xcom).where(xcom.key == SUMMARY_XCOM_KEY))
    key = (str(bind.engine.url), tuple(sorted(xcom_dags)), since.isoformat(), today.isoformat(), stored)
    cached = _past_days.get(key)
    if cached is None or time.monotonic() - cached[0] > PAST_DAYS_TTL_S:
        past = _sums(session, xcom, [*base, xcom.timestamp >= since, xcom.timestamp < today], dialect)
        _past_days.clear()  # one entry per user's DAG set is plenty; never grows without bound
        _past_days[key] = (time.monotonic(), past)
    else:
        past = cached[1]
    # Today's: only the runs that could have pushed today (running, or ended today), by their id.
    touched = [
        run_id
        for (run_id,) in session.execute(
            select(dag_run.id).where(
                dag_run.dag_id.in_(sorted(xcom_dags)),
                or_(dag_run.end_date.is_(None), dag_run.end_date >= today),
            )
        )
    ]
    # By the runs' ids (the primary key's first column) alone: the key's or the DAG's index would
    # walk every summary ever pushed; `key || ''` keeps SQLite's planner off the key's index.
    fresh = (
        _sums(
            session,
            xcom,
            [(xcom.key + "") == SUMMARY_XCOM_KEY, xcom.dag_run_id.in_(touched), xcom.timestamp >= today],
            dialect,
        )
        if touched
        else {}
    )
    sums = {**past, **fresh}
    return [DailyTotal(d.day, *sums.get(d.day, (0, 0))) for d in out]


def clear_caches() -> None:
    """Forget the Pioneer tasks and past days' totals found so far (the next request reads afresh)."""
    _pioneer_tasks.clear()
    _past_days.clear()


def empty_days(now: datetime, days: int) -> list[DailyTotal]:
    """``days`` zero totals, ending today (UTC)."""
    first = (now - timedelta(days=days - 1)).date()
    return [DailyTotal((first + timedelta(days=i)).isoformat(), 0, 0) for i in range(days)]
