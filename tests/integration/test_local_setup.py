"""``make airflow`` / ``make demo`` setup: ``pioneer_default`` in the metastore, and its Test button.

One throwaway Airflow home for the module: ``airflow db migrate`` and the connection, added by the
scripts' own ``setup_airflow_home``; then the REST API in a child process, as the UI calls it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow import __version__ as _airflow_version

from airflow_provider_pioneer.testing import PioneerEmulator

_AIRFLOW = tuple(int(part) for part in _airflow_version.split(".")[:2])

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import local_env  # noqa: E402

CHILD = Path(__file__).with_name("connection_test_child.py")
# One worker runs the module under pytest-xdist: its Airflow home (a migrate and a setup in child
# processes, about 40 s) is built once, not once per worker.
pytestmark = pytest.mark.xdist_group("local_setup_home")


@pytest.fixture(scope="module")
def local_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PioneerEmulator, dict[str, str]]]:
    home = tmp_path_factory.mktemp("local-airflow")
    logs = home / "logs"
    logs.mkdir()
    with PioneerEmulator() as emu:
        env = local_env.airflow_env(home / "airflow_home", home / "output")
        # The suite's own Fernet key, so the child processes agree on how the password is encrypted.
        env["AIRFLOW__CORE__FERNET_KEY"] = local_env.os.environ["AIRFLOW__CORE__FERNET_KEY"]
        env["PYTHONPATH"] = str(REPO)
        failed = local_env.setup_airflow_home(env, emu, logs)  # type: ignore[arg-type]
        assert failed is None, failed
        yield emu, env


def _airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(local_env.BIN / "airflow"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _press_test(env: dict[str, str], *typed_keys: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, str(CHILD), "pioneer_default", *typed_keys],
        env={**env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"status_code"')]


def test_pioneer_default_is_in_the_metastore_not_the_environment(
    local_home: tuple[PioneerEmulator, dict[str, str]],
) -> None:
    emu, env = local_home
    assert not [name for name in env if name.startswith("AIRFLOW_CONN_")]
    got = _airflow(env, "connections", "get", "pioneer_default", "-o", "json")
    assert got.returncode == 0, got.stderr[-2000:]
    (conn,) = json.loads(got.stdout)
    assert conn["conn_type"] == "pioneer"
    assert conn["host"] == emu.url
    assert conn["extra_dejson"] == {"key_name": "bootstrap", "key_variable": "pioneer_api_key"}
    assert conn["password"] == emu.api_key
    # What the 3.3 UI's Test button sends for "no port" (see local_env.pioneer_connection).
    assert str(conn["port"]) == "0"
    # An edit in the UI is what tasks get: nothing in the environment overrides the row.
    listed = _airflow(env, "connections", "list", "-o", "json")
    assert [c["conn_id"] for c in json.loads(listed.stdout)] == ["pioneer_default"]


@pytest.mark.skipif(
    _AIRFLOW < (3, 3),
    reason="replays the Test button of Airflow 3.3's connection page (its request body and its REST route)",
)
def test_the_ui_test_button_succeeds_and_a_bad_key_fails_clearly(
    local_home: tuple[PioneerEmulator, dict[str, str]],
) -> None:
    _, env = local_home
    pressed, bad = _press_test(env, "pio_sk_not-a-real-key-0000")
    assert pressed["sent_port"] == 0
    assert pressed["status_code"] == 200, pressed
    assert pressed["body"]["status"] is True, pressed
    assert "the key is valid" in pressed["body"]["message"]

    assert bad["status_code"] == 200, bad
    assert bad["body"]["status"] is False
    message = bad["body"]["message"]
    assert "401" in message or "key" in message.lower(), message
    assert "not-a-real-key" not in message


_READ_CONFIG = """
import json
from airflow.configuration import conf
print(json.dumps({f"{s}.{k}": conf.get(s, k) for s, k in [
    ("logging", "worker_log_server_port"), ("logging", "trigger_log_server_port"),
    ("core", "parallelism"), ("database", "sql_alchemy_conn"), ("api", "port"), ("core", "dags_folder"),
]}))
"""


def test_make_airflow_keeps_the_users_airflow_settings_but_owns_its_home_db_and_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import airflow_local

    user = {
        # What the port table of docs/getting-started.md tells a user to set, and a default they may override.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "18793",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": "18794",
        "AIRFLOW__CORE__PARALLELISM": "3",
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://",
        # What the throwaway setup must own: migrating a user's real metastore, serving on
        # another port than the one it checks, or a connection overriding the metastore's row.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://prod.example/airflow",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "echo postgresql://prod.example/airflow",
        "AIRFLOW__API__PORT": "9999",
        "AIRFLOW_CONN_PIONEER_DEFAULT": "pioneer://elsewhere",
        "AIRFLOW_VAR_PIONEER_API_KEY": "{}",
        "PIONEER_POOL": "not_created",
    }
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    env = airflow_local.standalone_env(tmp_path, 8123)

    assert env["AIRFLOW_CONN_AWS_DEFAULT"] == "aws://"
    for name in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
        "AIRFLOW_CONN_PIONEER_DEFAULT",
        "AIRFLOW_VAR_PIONEER_API_KEY",
    ):
        assert name not in env
    assert env["PIONEER_POOL"] == airflow_local.POOL
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    # What Airflow itself reads from that environment.
    read = subprocess.run(
        [sys.executable, "-c", _READ_CONFIG],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr[-2000:]
    assert json.loads(read.stdout.splitlines()[-1]) == {
        "logging.worker_log_server_port": "18793",
        "logging.trigger_log_server_port": "18794",
        "core.parallelism": "3",
        "database.sql_alchemy_conn": f"sqlite:///{tmp_path / 'airflow_home' / 'airflow.db'}",
        "api.port": "8123",
        "core.dags_folder": str(local_env.DAGS_FOLDER),
    }
