"""Shared plumbing of ``make demo`` and ``make airflow``: a throwaway Airflow home and the Pioneer emulator.

Nothing here imports Airflow: the scripts set the environment first, then run the ``airflow`` CLI
in child processes, so every child sees one consistent configuration.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAGS_FOLDER = REPO / "example_dags"
# Name of the emulator's built-in key: the first rotation needs it to revoke that key.
BOOTSTRAP_KEY_NAME = "bootstrap"
ROTATED_KEY_VARIABLE = "pioneer_api_key"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


_MARKER = ".pioneer-demo"


def fresh_dir(path: Path) -> Path:
    """Wipe and recreate ``path``: only a directory this tooling made (it carries a marker file)."""
    if path.exists() and any(path.iterdir()) and not (path / _MARKER).exists():
        raise SystemExit(f"Refusing to wipe {path}: it is not empty and was not made by this script.")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / _MARKER).touch()
    return path


class Emulator:
    """The Pioneer emulator CLI as a child process on loopback, stopped with SIGTERM on exit.

    It runs in its own session so a Ctrl-C in the terminal reaches only the script, which then
    stops the children in order.

    :param port: port to bind; 0 picks a free one.
    :param options: more CLI options, e.g. ``["--per-text-latency-ms", "250"]``.
    """

    def __init__(self, port: int = 0, options: list[str] | None = None) -> None:
        self.port = port
        self.options = list(options or [])
        self.url = ""
        self.api_key = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_provider_pioneer.testing",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not (self.url and self.api_key):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line.startswith("Pioneer emulator on "):
                self.url = line.split(" on ", 1)[1].strip()
            elif line.startswith("Bootstrap API key: "):
                self.api_key = line.split(": ", 1)[1].strip()
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read() if self._proc.stderr else ""
                self.stop()
                raise RuntimeError(f"the Pioneer emulator did not start: {err.strip()[-800:]}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def alive_key_names(self) -> list[str]:
        """Names of the keys the default account still has (admin API: names only, never values)."""
        from airflow_provider_pioneer.testing import EmulatorControl

        control = EmulatorControl(self.url)
        try:
            return sorted(control.alive_key_names())
        finally:
            control.close()


CONN_ID = "pioneer_default"

#: Adds the connection through Airflow's own model, reading it as JSON on stdin: the key never sits
#: on a command line (``ps``), and the row is what Admin -> Connections shows and edits.
_ADD_CONNECTION = """
import json, sys
from airflow.models.connection import Connection
from airflow.utils.session import create_session
spec = json.load(sys.stdin)
with create_session() as session:
    old = session.query(Connection).filter_by(conn_id=spec["conn_id"]).one_or_none()
    if old is not None:
        session.delete(old)
        session.flush()
    session.add(Connection(**spec))
print("Added connection", spec["conn_id"])
"""


def pioneer_connection(emulator: Emulator) -> dict[str, object]:
    """``pioneer_default`` as the metastore keeps it: the emulator's URL and bootstrap key."""
    return {
        "conn_id": CONN_ID,
        "conn_type": "pioneer",
        "host": emulator.url,
        "password": emulator.api_key,
        # Airflow 3.3's connection list sends "port": 0 to its Test button for a port stored empty
        # (Number(null) in the UI) and then refuses the test as "a different endpoint" (Bad Request).
        # 0 is what the UI means by "no port", and the hook ignores a port of 0.
        "port": 0,
        # key_name lets the first rotation revoke the bootstrap key; key_variable makes every
        # task pick up the key the rotation stores.
        "extra": json.dumps({"key_name": BOOTSTRAP_KEY_NAME, "key_variable": ROTATED_KEY_VARIABLE}),
    }


#: Connections and Variables the setup stores in the metastore: an environment variable of the
#: same name would silently win over the row the UI shows and edits.
OWNED_SECRETS = ("AIRFLOW_CONN_PIONEER_DEFAULT", f"AIRFLOW_VAR_{ROTATED_KEY_VARIABLE.upper()}")


def airflow_env(
    home: Path,
    output: Path,
    owned: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment for every ``airflow`` child: SQLite in ``home``, the example DAGs.

    The caller's own ``AIRFLOW__*`` settings (log-server ports, parallelism, logging...) are kept.
    Replaced are only what the setup must own, and ``owned``: the throwaway home and its config
    file, its SQLite DB (a user's ``sql_alchemy_conn`` would have ``airflow db migrate`` run
    against their real metastore), the example DAGs as the DAGs folder and their output. Their
    ``_CMD`` / ``_SECRET`` variants go too: Airflow reads the plain variable first, but whoever
    reads the environment would be misled. ``defaults`` apply only where the caller set nothing.

    No ``AIRFLOW_CONN_PIONEER_DEFAULT``: ``pioneer_default`` lives in the metastore
    (:func:`setup_airflow_home`), where the UI shows it and an edit there takes effect (an
    environment variable would win over it). Other ``AIRFLOW_CONN_*`` (``aws_default`` for an
    ``s3://`` output) are kept.

    :param home: the throwaway AIRFLOW_HOME.
    :param output: where the example DAGs write (``PIONEER_EXAMPLE_OUTPUT``).
    :param owned: more settings the caller must own (``make airflow``: its UI address).
    :param defaults: settings the caller's environment may override.
    """
    owned_settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PIONEER_EXAMPLE_OUTPUT": str(output),
        **(owned or {}),
    }
    dropped = {*owned_settings, *OWNED_SECRETS}
    dropped |= {f"{name}{suffix}" for name in owned_settings for suffix in ("_CMD", "_SECRET")}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    for name, value in {
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        **(defaults or {}),
    }.items():
        env.setdefault(name, value)
    env.update(owned_settings)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def setup_airflow_home(env: dict[str, str], emulator: Emulator, logs: Path) -> str | None:
    """``airflow db migrate``, then ``pioneer_default`` into the metastore; returns what failed, or None."""
    airflow = str(BIN / "airflow")
    if run_logged([airflow, "db", "migrate"], env, logs / "db-migrate.log", timeout=180) != 0:
        return f"airflow db migrate (see {logs / 'db-migrate.log'})"
    log_path = logs / "connection.log"
    with log_path.open("w") as log:
        added = subprocess.run(
            [str(BIN / "python"), "-c", _ADD_CONNECTION],
            input=json.dumps(pioneer_connection(emulator)),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
    if added.returncode != 0:
        return f"adding connection {CONN_ID} (see {log_path})"
    return None


def run_logged(
    cmd: list[str],
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    echo: Callable[[str], str | None] | None = None,
) -> int:
    """Run ``cmd`` with its output to ``log_path``; ``echo`` turns a line into what to print (or None).

    Returns the exit code, or 124 when ``timeout`` seconds passed and the process group was killed.
    """
    timed_out = threading.Event()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )

        def kill() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                shown = echo(line) if echo is not None else None
                if shown is not None:
                    print(shown, flush=True)
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            timer.cancel()
    return 124 if timed_out.is_set() else code
