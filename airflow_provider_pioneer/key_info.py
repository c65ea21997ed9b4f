"""Moved to :mod:`airflow_provider_pioneer.rotation.companion`; this name keeps old imports working."""

from __future__ import annotations

from airflow_provider_pioneer.rotation.companion import build_info, info_variable_name, lost_key_name

__all__ = ["build_info", "info_variable_name", "lost_key_name"]
