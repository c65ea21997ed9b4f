"""An auth manager with per-DAG read access, for the Pioneer view's permission tests (API and browser).

Airflow's SimpleAuthManager grants by role only (every viewer reads every DAG); production auth
managers (FAB, Keycloak) also grant per DAG. This one is SimpleAuthManager plus a per-user DAG
allow-list from ``PIONEER_TEST_DAG_ACCESS`` (JSON ``{"user": ["dag_id", ...]}``; a user not listed
reads every DAG), applied through the same auth-manager methods the view and the UI ask. And, as
FAB grants "XComs" or "Task Instances" apart from "DAG:<id>", a per-user deny list of DAG entities
and Variables from ``PIONEER_TEST_DENY`` (JSON ``{"user": ["XCOM", "TASK_INSTANCE", "VARIABLE"]}``,
entity names as ``DagAccessEntity`` spells them): one entity denied at a time, the rest allowed.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def _allowed(username: str) -> set[str] | None:
    access = json.loads(os.environ.get("PIONEER_TEST_DAG_ACCESS") or "{}")
    return set(access[username]) if username in access else None


def _denied(username: str) -> set[str]:
    return set(json.loads(os.environ.get("PIONEER_TEST_DENY") or "{}").get(username, []))


class RestrictedAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose users may be limited to a list of DAGs."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        allowed = _allowed(user.get_name())
        dag_id = getattr(details, "id", None) if details else None
        # No dag id (or "~"): a listing, which the UI and the view filter through get_authorized_dag_ids.
        if allowed is not None and dag_id not in (None, "~") and dag_id not in allowed:
            return False
        if access_entity is not None and access_entity.name in _denied(user.get_name()):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )

    def is_authorized_variable(self, *, method: Any, user: Any, details: Any = None) -> bool:
        if "VARIABLE" in _denied(user.get_name()):
            return False
        return super().is_authorized_variable(method=method, user=user, details=details)

    def get_authorized_dag_ids(self, *, user: Any, method: Any = "GET", session: Any = None) -> set[str]:
        kwargs = {"session": session} if session is not None else {}
        dag_ids = super().get_authorized_dag_ids(user=user, method=method, **kwargs)
        allowed = _allowed(user.get_name())
        return dag_ids if allowed is None else dag_ids & allowed
