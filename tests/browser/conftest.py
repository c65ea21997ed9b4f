"""A ``make airflow``-like deployment for the browser tests, and headless Chromium to drive its UI.

One session: the Pioneer emulator (a child process on 127.0.0.1), a throwaway Airflow home on
SQLite with ``pioneer_default`` in the metastore, Airflow's api-server (127.0.0.1), scheduler
(LocalExecutor) and dag-processor (``airflow standalone`` would force SimpleAuthManager), login
required (SimpleAuthManager users ``admin`` and ``viewer``; ``viewer`` may read
``pioneer_key_rotation`` only, through tests.restricted_auth), the example DAGs. Both example DAGs
run once before the tests. Everything is stopped at the end, whatever happened.

Collected only under ``make browser`` (PIONEER_BROWSER_TESTS=1, see tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_local import _wait_healthy  # noqa: E402
from local_env import Emulator, airflow_env, setup_airflow_home  # noqa: E402

ARTIFACTS = REPO / ".browser-artifacts"
CHROMIUM = os.environ.get("PIONEER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORDS = {"admin": "admin-browser-pw", "viewer": "viewer-browser-pw"}
#: viewer may read the rotation DAG only: the batch DAG's runs must stay out of their view.
DAG_ACCESS = {"viewer": ["pioneer_key_rotation"]}
BATCH, ROTATION = "pioneer_batch_inference", "pioneer_key_rotation"
READY_TIMEOUT_S = 240
RUN_TIMEOUT_S = 240


COMPONENTS = ("api-server", "scheduler", "dag-processor")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each component's process group (task processes included), then SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        if all(proc.poll() is not None for proc in procs):
            # The groups may still hold children (a task's supervisor): one last sweep.
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            return


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """The running Airflow: its URL, a token per user, the finished runs, the emulator."""

    url: str
    emulator: Emulator
    home: Path
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, user: str = "admin", **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


def _token(url: str, user: str) -> str:
    answer = requests.post(
        f"{url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def _run_dag(ui: Deployment, dag_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while ui.api("GET", f"/api/v2/dags/{dag_id}").status_code != 200:
        assert time.monotonic() < deadline, f"{dag_id} was never parsed"
        time.sleep(2)
    ui.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    created = ui.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert created.status_code == 200, created.text
    return str(created.json()["dag_run_id"])


def _wait_run(ui: Deployment, dag_id: str, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = ui.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            return str(state)
        time.sleep(2)
    raise AssertionError(f"{dag_id} {run_id} did not finish in {RUN_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def airflow_ui() -> Iterator[Deployment]:
    ARTIFACTS.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="pioneer-browser-"))
    logs = ARTIFACTS / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = Emulator(port=0, options=["--latency-ms", "0"])
    procs: list[subprocess.Popen[bytes]] = []
    try:
        emulator.start()
        env = airflow_env(home / "airflow_home", home / "output")
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps(PASSWORDS))
        plugins = home / "plugins"
        plugins.mkdir()
        if not any(ep.name == "pioneer" for ep in entry_points(group="airflow.plugins")):
            # An editable install made before the entry point existed: load it from the plugins folder.
            (plugins / "pioneer_view.py").write_text(
                "from airflow_provider_pioneer.ui.plugin import PioneerViewPlugin\n"
            )
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "AIRFLOW__CORE__AUTH_MANAGER": "tests.restricted_auth.RestrictedAuthManager",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "PIONEER_TEST_DAG_ACCESS": json.dumps(DAG_ACCESS),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__BASE_URL": url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            }
        )
        failed = setup_airflow_home(env, emulator, logs)
        assert failed is None, failed
        airflow = str(Path(sys.executable).with_name("airflow"))
        for component in COMPONENTS:
            with (logs / f"{component}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [airflow, component],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        assert _wait_healthy(url, procs[0], READY_TIMEOUT_S), f"Airflow did not become healthy (see {logs})"
        ui = Deployment(url=url, emulator=emulator, home=home, env=env)
        ui.tokens = {user: _token(url, user) for user in PASSWORDS}
        # Both example DAGs at once: the rotation first stores its key, the batch run then uses it or
        # the bootstrap key (either works: the hook re-reads the Variable on a 401).
        started = {dag: _run_dag(ui, dag) for dag in (ROTATION, BATCH)}
        for dag, run_id in started.items():
            assert _wait_run(ui, dag, run_id) == "success", f"{dag} {run_id} failed (see {logs})"
            ui.runs[dag] = run_id
        yield ui
    finally:
        _stop(procs)
        emulator.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright gives the browser a new, empty --user-data-dir of its own.
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.pioneer_failed = report.failed


@pytest.fixture
def page_as(request: pytest.FixtureRequest, airflow_ui: Deployment, browser: Any) -> Iterator[Any]:
    """``page_as(user)``: a tab logged in as ``user`` (the UI's ``_token`` cookie); None = anonymous.

    Each call is its own browser context: no cookie or localStorage token carries over between users.
    A failing test leaves a screenshot of each of its tabs in .browser-artifacts/.
    """
    contexts = []

    def open_as(user: str | None, color_scheme: str = "light") -> Any:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=color_scheme)
        contexts.append(context)
        if user is not None:
            context.add_cookies([{"name": "_token", "value": airflow_ui.tokens[user], "url": airflow_ui.url}])
        return context.new_page()

    yield open_as
    for i, context in enumerate(contexts):
        if getattr(request.node, "pioneer_failed", False):
            for j, page in enumerate(context.pages):
                page.screenshot(
                    path=str(ARTIFACTS / f"FAILED-{request.node.name}-{i}-{j}.png"), full_page=True
                )
                (ARTIFACTS / f"FAILED-{request.node.name}-{i}-{j}.html").write_text(page.content())
        context.close()
