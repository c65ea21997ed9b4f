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


def test_key_max_age_days_is_a_declared_config_option_with_the_views_default() -> None:
    import subprocess
    import sys
    from pathlib import Path as _Path

    from airflow_provider_pioneer.get_provider_info import get_provider_info
    from airflow_provider_pioneer.ui.app import DEFAULT_KEY_MAX_AGE_DAYS

    option = get_provider_info()["config"]["pioneer"]["options"]["key_max_age_days"]
    assert option["type"] == "integer" and int(option["default"]) == DEFAULT_KEY_MAX_AGE_DAYS
    # What `airflow config get-value` answers once Airflow has read the provider's options.
    airflow = _Path(sys.executable).with_name("airflow")
    got = subprocess.run(
        [str(airflow), "config", "get-value", "pioneer", "key_max_age_days"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert got.stdout.strip().splitlines()[-1:] == ["30"], got.stderr[-2000:]
