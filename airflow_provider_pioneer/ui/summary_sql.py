"""SQL expressions over the ``pioneer_summary`` XCom, so the view sums and pages in the database.

The XCom ``value`` column is JSON (``JSON`` on SQLite and MySQL, ``JSONB`` on PostgreSQL). The
inference operator's summary is stored as a JSON object; a value pushed through an older Task SDK
(or a custom backend's ``serialize_value``) is the same document as a JSON *string* inside the
column. Both are read here. Nothing here raises on a value that is not a summary: a field that is
not a number counts as 0 in a sum and as NULL in a row, as :func:`airflow_provider_pioneer.ui.data.summary_value`
reads it in Python.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Integer, String, and_, case, cast, func, literal, null
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["day_of", "number_field"]


def _sqlite_doc(value: Any) -> ColumnElement[Any]:
    # json_type(value) is 'object' for the document, 'text' for the document inside a JSON string
    # (json_extract(value, '$') then unwraps it; json_valid guards a string that is not JSON).
    inner = func.json_extract(value, "$")
    return case(
        (func.json_type(value) == "object", value),
        (and_(func.json_type(value) == "text", func.json_valid(inner) == 1), inner),
        else_=null(),
    )


def _sqlite_number(value: Any, name: str) -> ColumnElement[Any]:
    doc = _sqlite_doc(value)
    path = f"$.{name}"
    return case(
        (func.json_type(doc, path).in_(("integer", "real")), func.json_extract(doc, path)),
        else_=null(),
    )


def _pg_number(value: Any, name: str) -> ColumnElement[Any]:
    field = value.op("->")(literal(name, String))
    number = cast(value.op("->>")(literal(name, String)), Float)
    # The string form: PostgreSQL 15 has no "is this valid JSON" test, and a cast of a string that is
    # not JSON aborts the whole query, so the number is read with a pattern there instead.
    as_text = value.op("#>>")(literal("{}", String))
    pattern = f'"{name}"\\s*:\\s*(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)'
    return case(
        (
            and_(func.jsonb_typeof(value) == "object", func.jsonb_typeof(field) == "number"),
            number,
        ),
        (func.jsonb_typeof(value) == "string", cast(func.substring(as_text, pattern), Float)),
        else_=null(),
    )


def number_field(value: Any, name: str, dialect: str, *, integer: bool = True) -> ColumnElement[Any]:
    """The summary's numeric field ``name`` (NULL when absent or not a number).

    :param value: the XCom ``value`` column.
    :param name: the summary field (``succeeded``, ``token_usage`` ...).
    :param dialect: the session's dialect name (``sqlite``, ``postgresql``, ``mysql``).
    :param integer: cast to an integer (counts) rather than a float (rates, seconds).
    """
    if dialect == "postgresql":
        expr = _pg_number(value, name)
    elif dialect == "sqlite":
        expr = _sqlite_number(value, name)
    else:  # MySQL: JSON_EXTRACT of the object form; NULL for anything else.
        expr = func.json_extract(value, f"$.{name}")
    return cast(expr, Integer) if integer else cast(expr, Float)


def day_of(stamp: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, as ``YYYY-MM-DD`` text."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", stamp), "YYYY-MM-DD")
    # SQLite and MySQL hold Airflow's timestamps as naive UTC.
    return cast(func.date(stamp), String)
