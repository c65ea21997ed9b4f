"""Airflow internals the tests use whose home moved between the Airflow minors CI tests.

The provider's own code needs only ``airflow_provider_pioneer._compat``; the tests also reach
into Airflow's internals (the DAG bag, the task-runtime providers manager), which moved in 3.2.
"""

from __future__ import annotations

from typing import Any

# The pytest plugin's DAG runner needs it too, from an installed wheel: one definition, in the package.
from airflow_provider_pioneer.testing.dag_test import dagbag_class

__all__ = [
    "as_scheduler_sees_it",
    "dagbag_class",
    "redact",
    "supports_provider_info_forms",
    "task_runtime_hooks",
]


def redact(value: Any) -> Any:
    """Airflow's secrets masker applied to ``value``: ``airflow.sdk.log.redact`` since 3.2."""
    try:
        from airflow.sdk.log import redact as _redact
    except ImportError:  # Airflow 3.1
        from airflow.sdk._shared.secrets_masker import redact as _redact
    return _redact(value)


def supports_provider_info_forms() -> bool:
    """Whether Airflow builds the connection form from ``conn-fields`` / ``ui-field-behaviour``.

    Airflow 3.2 reads them from ``get_provider_info()``; 3.1 only from hook class methods, and
    only when the FAB provider (flask_appbuilder) is installed.
    """
    from airflow import __version__
    from packaging.version import Version

    return Version(__version__) >= Version("3.2")


def task_runtime_hooks() -> Any:
    """The hooks a task sees: the Task SDK's providers manager since 3.2, the core one before."""
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:  # Airflow 3.1
        from airflow.providers_manager import ProvidersManager

        return ProvidersManager().hooks
    return ProvidersManagerTaskRuntime().hooks


def as_scheduler_sees_it(dag: Any) -> Any:
    """``dag`` serialized and read back, as the scheduler gets it: ``DagSerialization`` since 3.2."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization as serializer
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serialized_objects import SerializedDAG as serializer  # type: ignore[no-redef]
    return serializer.from_dict(serializer.to_dict(dag))
