"""The inference operator's rendered arguments, checked before any request is sent.

Each check fails the task without Airflow retries (a retry would render the same values) and
says what to fix.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_pioneer._compat import AirflowFailException

__all__ = ["check_writable", "request_options", "request_schema"]


def request_schema(entities: Any, schema: Any) -> dict[str, Any] | list[Any]:
    """The request's ``schema``: ``{"entities": [...]}`` from ``entities``, else ``schema`` itself.

    :param entities: labels to extract, or ``None``.
    :param schema: a whole Pioneer schema (dict or list), used when ``entities`` is ``None``.
    """
    if entities is not None:
        if isinstance(entities, str) or not isinstance(entities, list | tuple) or not entities:
            raise AirflowFailException(
                f"entities must be a non-empty list of labels, e.g. ['person', 'organization'], "
                f"not {type(entities).__name__}."
            )
        return {"entities": list(entities)}
    if isinstance(schema, dict | list) and schema:
        return schema
    raise AirflowFailException("Give entities=[...] (labels to extract) or schema={'entities': [...], ...}.")


def request_options(
    threshold: Any,
    *,
    include_confidence: Any,
    include_spans: Any,
    store: Any,
    project_id: Any,
) -> dict[str, Any]:
    """The request's optional fields, those not ``None``; ``threshold`` checked to be in 0..1.

    :param threshold: a number in 0..1 (or its text, as a template renders it), ``None`` or ``""``.
    :param include_confidence: passed as given.
    :param include_spans: passed as given.
    :param store: passed as given.
    :param project_id: passed when not empty.
    """
    if threshold is not None and threshold != "":
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise AirflowFailException(f"threshold must be a number in 0..1, not {threshold!r}.") from None
        if not 0.0 <= threshold <= 1.0:
            raise AirflowFailException(f"threshold must be within 0..1, not {threshold}.")
    else:
        threshold = None
    options = {
        "threshold": threshold,
        "include_confidence": include_confidence,
        "include_spans": include_spans,
        "store": store,
        "project_id": project_id or None,
    }
    return {k: v for k, v in options.items() if v is not None}


def check_writable(request: dict[str, Any]) -> None:
    """Refuse, before any request, option values that standard JSON cannot carry (NaN, lone surrogates)."""
    from airflow_provider_pioneer.batching.inputs import json_problem

    for name, value in request.items():
        problem = json_problem(value)
        if problem:
            raise AirflowFailException(f"{name} {problem}; fix it (nothing was sent).")
