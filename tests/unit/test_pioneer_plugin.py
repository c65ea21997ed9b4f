"""The Pioneer view's plugin: registered through the ``airflow.plugins`` entry point, and well-formed."""

from __future__ import annotations

import tomllib
from pathlib import Path

from airflow.plugins_manager import AirflowPlugin

REPO = Path(__file__).resolve().parents[2]


def test_the_plugin_is_registered_through_the_airflow_plugins_entry_point() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["airflow.plugins"]["pioneer"]
    module, _, name = target.partition(":")
    plugin = getattr(__import__(module, fromlist=[name]), name)
    assert issubclass(plugin, AirflowPlugin) and plugin.name == "pioneer"


def test_the_app_and_the_nav_entry_agree_and_avoid_airflows_prefixes() -> None:
    from airflow_provider_pioneer.ui.plugin import PioneerViewPlugin

    (app,) = PioneerViewPlugin.fastapi_apps
    (view,) = PioneerViewPlugin.external_views
    assert app["url_prefix"] == "/pioneer"
    assert not any(
        app["url_prefix"].startswith(p) for p in ("/api/v2", "/ui", "/execution", "/auth", "/pluginsv2")
    )
    assert view["href"] == f"{app['url_prefix']}/" and view["destination"] == "nav" and view["url_route"]


def test_loading_the_plugin_imports_no_web_framework() -> None:
    import subprocess
    import sys

    # Over what Airflow's plugins manager imports itself (3.1's already brings FastAPI).
    code = (
        "import sys, airflow.plugins_manager; before = set(sys.modules); "
        "import airflow_provider_pioneer.ui.plugin; added = set(sys.modules) - before; "
        "print(sorted(m for m in added if m.split('.')[0] in ('fastapi', 'starlette') "
        "or m == 'airflow_provider_pioneer.ui.app'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout
