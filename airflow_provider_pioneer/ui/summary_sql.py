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

from sqlalchemy import Float, String, and_, case, cast, func, literal, null
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["day_of", "sqlite_positions", "summary_numbers"]


def summary_numbers(value: Any, names: tuple[str, ...], dialect: str) -> list[ColumnElement[Any]]:
    """The summary's numeric fields ``names``, each NULL when absent or not a number.

    On SQLite the document is parsed once per row: one ``json_extract`` with every path gives a
    small JSON array (``[249, 1, 10000]``), which the caller reads per position after a subquery
    (:func:`sqlite_positions`). Elsewhere each field is its own expression over the (binary, on
    PostgreSQL) JSON value.

    :param value: the XCom ``value`` column.
    :param names: the summary fields (``succeeded``, ``token_usage`` ...).
    :param dialect: the session's dialect name (``sqlite``, ``postgresql``, ``mysql``).
    """
    if dialect == "sqlite":
        paths = [f"$.{name}" for name in names]
        inner = func.json_extract(value, "$")
        return [
            case(
                # The document (its object form): one parse of it, every path at once.
                (func.json_type(value) == "object", func.json_extract(value, *paths)),
                # The document inside a JSON string (older Task SDKs), when that string is JSON.
                (
                    and_(func.json_type(value) == "text", func.json_valid(inner) == 1),
                    func.json_extract(inner, *paths),
                ),
                else_=null(),
            )
        ]
    if dialect == "postgresql":
        return [_pg_number(value, name) for name in names]
    return [func.json_extract(value, f"$.{name}") for name in names]


def sqlite_positions(array: Any, count: int) -> list[ColumnElement[Any]]:
    """The numbers at positions ``0..count-1`` of :func:`summary_numbers`' array on SQLite."""
    return [
        case(
            (func.json_type(array, f"$[{i}]").in_(("integer", "real")), func.json_extract(array, f"$[{i}]")),
            else_=null(),
        )
        for i in range(count)
    ]


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


def day_of(stamp: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, as ``YYYY-MM-DD`` text."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", stamp), "YYYY-MM-DD")
    # SQLite and MySQL hold Airflow's timestamps as naive UTC.
    return cast(func.date(stamp), String)
