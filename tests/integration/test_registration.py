"""Airflow itself finds the provider: ProvidersManager and `airflow providers list`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_providers_manager_sees_package_hook_and_form() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-pioneer" in pm.providers
    from tests.airflow_compat import task_runtime_hooks

    hook = task_runtime_hooks()["pioneer"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_pioneer.hooks.pioneer.PioneerHook"
    assert hook.connection_type == "pioneer"
    from tests.airflow_compat import supports_provider_info_forms

    if not supports_provider_info_forms():
        # Airflow 3.1 builds forms from hook class methods, and only with flask_appbuilder: the
        # hook's own method carries the relabelling there (docs/compatibility.md "Supported versions").
        from airflow_provider_pioneer.hooks.pioneer import PioneerHook

        assert PioneerHook.get_ui_field_behaviour()["relabeling"]["password"] == "API key"
        return
    behaviour = pm.field_behaviours["pioneer"]
    assert behaviour["relabeling"]["password"] == "API key"
    widgets = pm.connection_form_widgets
    assert "extra__pioneer__key_variable" in widgets
    assert widgets["extra__pioneer__timeout"].field["value"] == 60


def test_airflow_providers_list_cli() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run(
        [str(airflow), "providers", "list", "--output", "plain"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=True,
    ).stdout
    assert "airflow-provider-pioneer" in out
