"""Moved to :mod:`airflow_provider_pioneer.rotation` (``naming`` and ``document``); old imports keep working."""

from __future__ import annotations

from airflow_provider_pioneer.rotation.document import (
    StoredKey,
    build_document,
    parse_stored,
    problem_message,
)
from airflow_provider_pioneer.rotation.naming import (
    check_key_name_prefix,
    check_variable_key,
    created_within,
    default_key_name_prefix,
    is_managed,
    key_birth,
    key_names,
    managed_name,
    orphans,
    still_pending,
)

__all__ = [
    "StoredKey",
    "build_document",
    "check_key_name_prefix",
    "check_variable_key",
    "created_within",
    "default_key_name_prefix",
    "is_managed",
    "key_birth",
    "key_names",
    "managed_name",
    "orphans",
    "parse_stored",
    "problem_message",
    "still_pending",
]
