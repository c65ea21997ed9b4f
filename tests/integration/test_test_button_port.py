"""The connection list's Test button on a Pioneer connection stored without a port (as the UI's own
Add Connection form stores it): the UI posts ``"port": 0`` and, on Airflow 3.3.1 and later without
the provider's root middleware (airflow_provider_pioneer/ui/test_button.py), the api-server answers
400. The middleware is installed only on the releases that refuse the request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer.ui.test_button import (
    PioneerTestButtonMiddleware,
    needs_port_fix,
    root_middlewares,
    without_empty_port,
)
from tests.dags.conftest import airflow_db  # noqa: F401  (the session's migrated DB)

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("port_test_child.py")
CONN_ID = "pioneer_no_port"


def test_only_an_empty_port_of_a_pioneer_test_request_is_dropped() -> None:
    ui_body = {"connection_id": "c", "conn_type": "pioneer", "host": "http://h", "password": "***", "port": 0}
    assert "port" not in json.loads(without_empty_port(json.dumps(ui_body).encode()))
    for untouched in ({**ui_body, "port": 8443}, {**ui_body, "conn_type": "http"}):
        raw = json.dumps(untouched).encode()
        assert without_empty_port(raw) == raw
    assert without_empty_port(b"not json") == b"not json"


def test_the_middleware_is_installed_only_on_the_releases_that_refuse_port_0() -> None:
    # Read in each release's apache-airflow-core wheel: 3.1.x to 3.3.0 compare no port, 3.3.1 and
    # 3.3.2 take 0 for another endpoint; no release carries apache/airflow#73298 yet.
    for version in ("3.1.2", "3.1.8", "3.2.2", "3.3.0"):
        assert not needs_port_fix(version), version
        assert root_middlewares(version) == [], version
    for version in ("3.3.1rc1", "3.3.1", "3.3.2", "3.4.0.dev0", "4.0.0", "nightly"):
        assert needs_port_fix(version), version
        (entry,) = root_middlewares(version)
        assert entry["middleware"] is PioneerTestButtonMiddleware, version
    from airflow import __version__

    from airflow_provider_pioneer.ui.plugin import PioneerViewPlugin

    assert PioneerViewPlugin.fastapi_root_middlewares == root_middlewares(__version__)


def test_the_gate_matches_what_the_installed_airflow_refuses() -> None:
    """A tripwire for the release that carries apache/airflow#73298: once the matrix installs it,
    this fails until ``FIXED_IN`` names it (the middleware would then run where nothing needs it)."""
    import inspect

    from airflow import __version__
    from airflow.api_fastapi.core_api.routes.public import connections as routes

    compares_endpoints = "differs from the stored connection" in inspect.getsource(routes.test_connection)
    same_endpoint = getattr(routes, "_same_endpoint", None)  # 3.3.2 on; 3.3.1 compares with !=
    refuses_port_0 = compares_endpoints and (same_endpoint is None or not same_endpoint(0, None))
    assert needs_port_fix(__version__) == refuses_port_0, (__version__, compares_endpoints)


@pytest.fixture
def connection_without_port(airflow_db: object, pioneer_emulator: Any) -> Iterator[None]:  # noqa: F811
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == CONN_ID).delete()
        session.add(
            Connection(
                conn_id=CONN_ID,
                conn_type="pioneer",
                host=pioneer_emulator.url,
                password=pioneer_emulator.api_key,
            )
        )
    yield
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == CONN_ID).delete()


def test_the_test_button_works_for_a_connection_stored_without_a_port(
    connection_without_port: None, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    if not any(ep.name == "pioneer" for ep in entry_points(group="airflow.plugins")):
        # An editable install made before the entry point existed: load the plugin from the folder.
        (plugins / "pioneer_view.py").write_text(
            "from airflow_provider_pioneer.ui.plugin import PioneerViewPlugin\n"
        )
    result = subprocess.run(
        [sys.executable, str(CHILD), CONN_ID],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (pressed,) = [
        json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"status_code"')
    ]
    assert pressed.get("sent_port") == 0, pressed  # what the UI sends for an empty port
    assert pressed["status_code"] == 200, pressed  # not 400 "the host or port differs"
    from airflow import __version__
    from packaging.version import Version

    if Version(__version__) >= Version("3.3"):
        # 3.3 tests the stored connection (its key) when the UI sends the masked password.
        assert pressed["body"]["status"] is True, pressed["body"]
    else:
        # 3.1 tests the body as sent: the masked "***" is no key, and the hook says so.
        assert pressed["body"]["status"] is False and "401" in pressed["body"]["message"], pressed["body"]
