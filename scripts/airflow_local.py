"""``make airflow``: the example DAGs under ``airflow standalone`` on http://127.0.0.1:8080, with the emulator.

* a throwaway AIRFLOW_HOME on SQLite under ``.demo/airflow`` (wiped at each start: the emulator's
  keys live in memory, so a kept Variable would hold a key the new emulator does not know);
* the Pioneer emulator on 127.0.0.1:8090 (or a free port), and ``pioneer_default`` pointed at it,
  stored in the metastore (Admin -> Connections shows it, and an edit there takes effect);
* no login (SimpleAuthManager with every user admin), DAGs unpaused at creation, a pool
  ``pioneer`` (4 slots) that the batch DAG's inference shards run in;
* Ctrl-C (or SIGTERM) stops standalone and all its components, then the emulator.

Set PIONEER_UI_PORT to serve on another port than 8080, PIONEER_EMULATOR_PER_TEXT_MS to change the
emulator's simulated model time per text (default 250 ms, so a run lasts long enough to watch).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from local_env import REPO, Emulator, airflow_env, fresh_dir, port_is_free, run_logged, setup_airflow_home

HOME = REPO / ".demo" / "airflow"
POOL, POOL_SLOTS = "pioneer", 4
EMULATOR_PORT = 8090
READY_TIMEOUT_S = 180


class _Stop(Exception):
    """SIGTERM, turned into an exception so the same shutdown path as Ctrl-C runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            health = requests.get(f"{url}/api/v2/monitor/health", timeout=2).json()
            if all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "dag_processor")
            ):
                return True
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    return False


def _stop_standalone(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT is standalone's own way to stop its components; escalate if it does not finish."""
    if proc.poll() is None:
        print("\nStopping airflow standalone ...", flush=True)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # Whatever standalone started and did not reap (task processes, server workers) shares its group.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def base_url_of(ui_port: int) -> str:
    return f"http://127.0.0.1:{ui_port}"


def standalone_env(home: Path, ui_port: int) -> dict[str, str]:
    """The environment of ``airflow standalone`` and its setup commands.

    The user's ``AIRFLOW__*`` settings are kept (e.g. the log-server ports of the port table in
    docs/getting-started.md), except what this setup must own: besides what :func:`local_env.airflow_env` owns, the UI's
    address (``PIONEER_UI_PORT`` sets the port; the health check, the banner and the tasks'
    Execution API URL all follow from it) and the pool the example runs its shards in. The
    no-login auth, unpaused DAGs and the parallelism are defaults a user may override.
    """
    base_url = base_url_of(ui_port)
    return airflow_env(
        home / "airflow_home",
        home / "output",
        owned={
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(ui_port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            # The pool this script creates: another name would leave the shards waiting for a
            # pool that does not exist.
            "PIONEER_POOL": POOL,
        },
        defaults={
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # LocalExecutor forks one worker per slot: 32 by default is a lot for a laptop demo.
            "AIRFLOW__CORE__PARALLELISM": "8",
        },
    )


def main() -> int:
    # Ctrl-C must work even when the shell started us with SIGINT ignored (a background job):
    # an installed handler also means the children start with SIGINT at its default, not ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    ui_port = int(os.environ.get("PIONEER_UI_PORT", "8080"))
    if not port_is_free(ui_port):
        print(
            f"Port {ui_port} on 127.0.0.1 is in use: stop what listens there, or run "
            f"`PIONEER_UI_PORT=8081 make airflow`.",
            file=sys.stderr,
        )
        return 1
    home = fresh_dir(HOME)
    logs = home / "setup-logs"
    logs.mkdir()
    airflow = str(Path(sys.executable).with_name("airflow"))
    proc: subprocess.Popen[bytes] | None = None
    # The emulator answers at once; a model-like delay per text makes a run last long enough to
    # watch its mapped tasks and progress lines in the UI. PIONEER_EMULATOR_PER_TEXT_MS=0: full speed.
    per_text_ms = os.environ.get("PIONEER_EMULATOR_PER_TEXT_MS", "250")
    emulator = Emulator(
        port=EMULATOR_PORT if port_is_free(EMULATOR_PORT) else 0,
        options=["--latency-ms", "100", "--per-text-latency-ms", per_text_ms],
    )
    try:
        emulator.start()
        print(f"Pioneer emulator on {emulator.url}", flush=True)
        base_url = base_url_of(ui_port)
        env = standalone_env(home, ui_port)
        print("airflow db migrate, connection 'pioneer_default', pool 'pioneer' ...", flush=True)
        failed = setup_airflow_home(env, emulator, logs)
        if failed:
            print(f"FAILED: {failed}", file=sys.stderr)
            return 1
        pool = [airflow, "pools", "set", POOL, str(POOL_SLOTS), "Pioneer account-wide concurrency"]
        if run_logged(pool, env, logs / "pool.log", timeout=180) != 0:
            print(f"FAILED: airflow pools set (see {logs / 'pool.log'})", file=sys.stderr)
            return 1

        # Its own session: a terminal Ctrl-C reaches only this script, which stops things in order.
        proc = subprocess.Popen([airflow, "standalone"], env=env, start_new_session=True)
        if not _wait_healthy(base_url, proc, READY_TIMEOUT_S):
            print(f"FAILED: Airflow did not become healthy on {base_url}", file=sys.stderr)
            return 1
        print(
            "\n"
            + "=" * 72
            + f"\nAirflow UI      {base_url}  (no login)"
            + "\nDAGs            pioneer_batch_inference, pioneer_key_rotation (unpaused);"
            + "\n                pioneer_entity_report runs after each batch run (asset-triggered);"
            + "\n                pioneer_model_lifecycle on demand (Trigger): its training waits on the triggerer"
            + f"\nPioneer         emulator on {emulator.url} ({per_text_ms} ms per text);"
            + " connection pioneer_default (Admin > Connections) points at it"
            + f"\nOutput          {home / 'output'}"
            + "\nCtrl-C stops Airflow and the emulator.\n"
            + "=" * 72,
            flush=True,
        )
        return proc.wait()
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if proc is not None:
            _stop_standalone(proc)
        emulator.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
