"""What a task instance remembers across its tries (a submitted job's id), so a retry reattaches.

Airflow 3.3+ has a store scoped to the task instance that outlives a try
(``context["task_state_store"]``). On older Airflow a Variable named after the task instance
stands in (``pioneer_state__<dag>__<task>__<run>__<map_index>``), deleted again when the task
succeeds. XComs cannot serve: Airflow clears a task's XComs when a new try starts.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from typing import Any

from airflow_provider_pioneer import safe_json

__all__ = ["TaskRecord", "idempotency_key"]

_NAMESPACE = uuid.UUID("6f1c7f38-3b0e-4d7a-9a55-7c2f0c9b1e21")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _ti_path(context: Any) -> str:
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{getattr(ti, 'map_index', -1)}"


def idempotency_key(context: Any, generation: int = 0) -> str:
    """A key that is the same for every try of this task instance (and changes with ``generation``:
    a deliberate new job after the previous one ended)."""
    return str(uuid.uuid5(_NAMESPACE, f"{_ti_path(context)}#{generation}"))


class TaskRecord:
    """Small JSON values kept for one task instance across its tries.

    :param context: the task's context.
    :param prefix: namespace of the keys (one per operator kind).
    """

    def __init__(self, context: Any, prefix: str) -> None:
        self._store = context.get("task_state_store") if hasattr(context, "get") else None
        self._prefix = prefix
        ti = context["ti"]
        name = f"pioneer_state__{ti.dag_id}__{ti.task_id}__{ti.run_id}__{getattr(ti, 'map_index', -1)}"
        self._variable = _UNSAFE.sub("_", name)[:250]

    @property
    def where(self) -> str:
        return "the task state store" if self._store is not None else f"Variable {self._variable!r}"

    def _load_variable(self) -> dict[str, Any]:
        from airflow.sdk import Variable

        raw = Variable.get(self._variable, default=None)
        try:
            value = safe_json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def get(self, key: str) -> Any:
        if self._store is not None:
            return self._store.get(f"{self._prefix}.{key}")
        return self._load_variable().get(f"{self._prefix}.{key}")

    def set(self, key: str, value: Any) -> None:
        if self._store is not None:
            self._store.set(f"{self._prefix}.{key}", value)
            return
        from airflow.sdk import Variable

        data = self._load_variable()
        data[f"{self._prefix}.{key}"] = value
        Variable.set(
            self._variable, json.dumps(data), description="airflow-provider-pioneer: a task's job ids"
        )

    def forget(self) -> None:
        """Drop the Variable stand-in once the task succeeded (the state store expires on its own)."""
        if self._store is not None:
            return
        from airflow.sdk import Variable

        with contextlib.suppress(Exception):  # nothing stored, or no permission: harmless leftovers
            Variable.delete(self._variable)
