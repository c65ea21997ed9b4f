"""The Pioneer view's FastAPI app, mounted by Airflow's api-server at ``/pioneer``.

Airflow does not protect plugin apps: every route here resolves the user from the UI's session
(the ``_token`` cookie) or an ``Authorization: Bearer`` JWT with Airflow's own ``get_user``
dependency (401/403 without a valid one), and reads only the DAGs the auth manager lets that user
read, and of each DAG only the entities it lets them read: task instances and runs
(``DagAccessEntity.TASK_INSTANCE``/``RUN``), XComs (``XCOM``: the summaries' counts, output paths,
the rotation's return value), and the rotation's Variable (``is_authorized_variable``: key names).
Under FAB these are granted apart from "DAG:<id>". No route returns a key: the data layer never
passes one on.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from airflow_provider_pioneer.ui.data import MAX_PAGE_SIZE, ViewData, collect
from airflow_provider_pioneer.ui.page import render_page
from airflow_provider_pioneer.ui.plugin import ui_root

#: ``[pioneer] key_max_age_days``: a rotation key older than this is flagged on the page.
DEFAULT_KEY_MAX_AGE_DAYS = 30
_NO_STORE = {"Cache-Control": "no-store"}

# Module level: FastAPI resolves the handlers' annotations by name (postponed annotations).
#: Airflow's own dependency: the user from a Bearer JWT or the UI's ``_token`` cookie; 401/403 else.
User = Annotated[Any, Depends(get_user)]
Page = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


def key_max_age_days() -> int:
    """``[pioneer] key_max_age_days`` (default 30); a bad value falls back to the default."""
    from airflow.configuration import conf

    try:
        value = conf.getint("pioneer", "key_max_age_days", fallback=DEFAULT_KEY_MAX_AGE_DAYS)
    except Exception:  # AirflowConfigException for a non-integer: the page still loads
        return DEFAULT_KEY_MAX_AGE_DAYS
    return value if value > 0 else DEFAULT_KEY_MAX_AGE_DAYS


def _view(user: Any, page: int, page_size: int) -> ViewData:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
        VariableDetails,
    )
    from airflow.utils.session import create_session

    manager = get_auth_manager()

    def can_read_variable(name: str) -> bool:
        return bool(
            manager.is_authorized_variable(method="GET", details=VariableDetails(key=name), user=user)
        )

    answers: dict[tuple[str, str], bool] = {}

    def can_read_dag_entity(entity: str, dag_id: str) -> bool:
        if (entity, dag_id) not in answers:
            answers[(entity, dag_id)] = bool(
                manager.is_authorized_dag(
                    method="GET",
                    access_entity=DagAccessEntity[entity],
                    details=DagDetails(id=dag_id),
                    user=user,
                )
            )
        return answers[(entity, dag_id)]

    with create_session() as session:
        dag_ids = manager.get_authorized_dag_ids(user=user, method="GET", session=session)
        return collect(
            session,
            dag_ids=dag_ids,
            page=page,
            page_size=page_size,
            key_max_age_days=key_max_age_days(),
            ui_root=ui_root(),
            can_read_variable=can_read_variable,
            can_read_dag_entity=can_read_dag_entity,
        )


def create_app() -> FastAPI:
    """The app; built on the first request (the plugin module stays import-light)."""
    app = FastAPI(title="Pioneer view", docs_url=None, redoc_url=None, openapi_url=None)

    # Sync handlers: FastAPI runs them in its thread pool, so the DB reads never block the event loop.
    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, user: User, page: Page = 1, page_size: PageSize = 50) -> HTMLResponse:
        data = _view(user, page, page_size)
        json_url = (
            f"{request.scope.get('root_path', '')}/api/view?page={data.page}&page_size={data.page_size}"
        )
        return HTMLResponse(render_page(data, json_url=json_url), headers=_NO_STORE)

    @app.get("/api/view")
    def view(user: User, page: Page = 1, page_size: PageSize = 50) -> JSONResponse:
        return JSONResponse(_view(user, page, page_size).as_dict(), headers=_NO_STORE)

    return app
