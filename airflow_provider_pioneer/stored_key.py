"""Moved to :mod:`airflow_provider_pioneer.rotation.document`; this name keeps old imports working."""

from __future__ import annotations

from airflow_provider_pioneer.rotation.document import (
    StoredKey,
    build_document,
    is_masked_placeholder,
    parse_iso_time,
    parse_stored,
    problem_message,
)

__all__ = [
    "StoredKey",
    "build_document",
    "is_masked_placeholder",
    "parse_iso_time",
    "parse_stored",
    "problem_message",
]
