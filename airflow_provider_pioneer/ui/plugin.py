"""The Airflow plugin that adds the Pioneer view (registered through the ``airflow.plugins`` entry point).

A FastAPI app under ``/pioneer`` (server-rendered page + JSON) and an external view that puts
"Pioneer" in the UI's navigation, shown inside the UI. Both plugin kinds exist unchanged from
Airflow 3.1 on. This module imports no web framework: every Airflow process loads plugins, and
only the api-server ever calls the app, which is built on its first request.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as airflow_version
from airflow.plugins_manager import AirflowPlugin

from airflow_provider_pioneer.ui.test_button import root_middlewares

URL_PREFIX = "/pioneer"


def ui_root() -> str:
    """The UI's path prefix from ``[api] base_url`` ("" when Airflow is served at the host's root)."""
    from urllib.parse import urlparse

    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


class _LazyApp:
    """An ASGI app that builds the real one (``ui.app.create_app``) on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_pioneer.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class PioneerViewPlugin(AirflowPlugin):
    """Adds the Pioneer page (inference runs, daily texts and tokens, key rotation status) to the UI."""

    name = "pioneer"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "Pioneer view"}]
    # The Test button on a Pioneer connection stored without a port, on Airflow 3.3.1 up to the
    # release carrying apache/airflow#73298 (none yet): ui/test_button.py.
    fastapi_root_middlewares = root_middlewares(airflow_version)
    external_views = [
        {
            "name": "Pioneer",
            # The iframe's address: under base_url's path when Airflow is served below the host's root.
            "href": f"{ui_root()}{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "pioneer",
            "category": "browse",
        }
    ]
