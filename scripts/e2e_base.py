"""Plumbing of ``make e2e`` (``scripts/e2e.py``): processes, PostgreSQL, the emulator, Airflow's REST API.

Every process started here carries :data:`MARKER` in its environment, so the final sweep finds any
that outlived the shutdown; every port is recorded in :data:`PORTS` and checked closed at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent
PER_TEXT_MS = float(os.environ.get("PIONEER_E2E_PER_TEXT_MS", "80"))
# Every process this script starts carries this marker in its environment: the final sweep finds
# any that outlived the shutdown (task processes, postgres backends) by it.
MARKER = "PIONEER_E2E_RUN"
RUN_TOKEN = secrets.token_hex(8)


class Failed(Exception):
    """A step failed: the message says what and where to look."""


class _Stop(BaseException):
    """SIGTERM, turned into an exception so the same cleanup as Ctrl-C runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop


def say(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


PORTS: list[int] = []  # every port this run listens on: checked to be closed at the end


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    PORTS.append(port)
    return port


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- processes -------------------------------------------------------------------------------------


class Processes:
    """Children in their own process groups, stopped in reverse order: SIGTERM, then SIGKILL."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise Failed(f"{name} exited with code {proc.returncode} (see {self.logs / name}.log)")

    def kill(self, name: str) -> None:
        """SIGKILL one child's whole process group and forget it (a fault, not a shutdown)."""
        for i, (n, proc) in enumerate(self.procs):
            if n == name:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                del self.procs[i]
                return
        raise Failed(f"no process named {name} to kill")

    def stop_all(self, last: tuple[str, ...] = ("redis", "moto-s3", "moto-secretsmanager")) -> None:
        """Every Airflow process at once (each takes seconds to shut down), then the servers they use."""
        for tier in ([p for p in self.procs if p[0] not in last], [p for p in self.procs if p[0] in last]):
            t0 = time.monotonic()
            for _, proc in tier:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            for name, proc in reversed(tier):
                stop_group(proc, name, grace=max(1.0, 30.0 - (time.monotonic() - t0)), term=False)
            if tier and time.monotonic() - t0 > 5:
                say(f"{', '.join(n for n, _ in tier)}: {time.monotonic() - t0:.0f} s to stop")
        self.procs.clear()


def stop_group(proc: subprocess.Popen[Any], name: str, grace: float = 30.0, term: bool = True) -> None:
    """SIGTERM the child's process group (its workers and task processes too), SIGKILL what remains.

    ``term=False``: the caller sent the SIGTERM already (a second one may mean "hurry" to some).
    """
    if term:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        say(f"{name} did not stop in {grace:.0f} s: SIGKILL")
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren that outlived their parent
    if proc.poll() is None:
        proc.wait(timeout=10)


def marked_pids() -> list[int]:
    """Processes whose environment carries this run's marker (anything we started, at any depth)."""
    needle = f"{MARKER}={RUN_TOKEN}".encode()
    found = []
    for entry in glob.glob("/proc/[0-9]*/environ"):
        pid = int(entry.split("/")[2])
        if pid == os.getpid():
            continue
        try:
            with open(entry, "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


def task_runner_pid(ti_id: str) -> int | None:
    """The task runner of one TI: the supervisor's child that retitles itself ``airflow worker -- <ti id>``."""
    title = f"airflow worker -- {ti_id}".encode()
    for entry in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if cmdline == title:
            return int(entry.split("/")[2])
    return None


def run(
    cmd: list[str],
    env: dict[str, str] | None,
    log: Path,
    timeout: float,
    user: str | None = None,
    cwd: Path | None = None,
) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, user=user, cwd=cwd,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=timeout)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if code != 0:
        raise Failed(
            f"`{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}` exited {code} (see {log})"
        )


# -- PostgreSQL ------------------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    dirs = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    dirs.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    return dirs[-1] if dirs else None


def apt_install(package: str, log: Path) -> None:
    """``apt-get install -y <package>`` (root only), without letting the package start its service."""
    if os.geteuid() != 0:
        raise Failed(f"{package} is not installed: run `sudo apt-get install -y {package}`, then `make e2e`.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"{package} not found: apt-get install -y {package}")
    # The package would start a system-wide server (postgresql on :5432, redis-server on :6379)
    # that outlives this script: a policy-rc.d that denies service starts (Debian's switch for
    # that) while apt-get runs.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text(f"#!/bin/sh\n# make e2e: no service starts while it installs {package}\nexit 101\n")
        policy.chmod(0o755)
    try:
        try:
            run(["apt-get", "install", "-y", "-q", package], env, log, timeout=900)
        except Failed:
            say("apt-get install failed: apt-get update, then again")
            run(["apt-get", "update", "-q"], env, log, timeout=600)
            run(["apt-get", "install", "-y", "-q", package], env, log, timeout=900)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def install_postgres(log: Path) -> Path:
    apt_install("postgresql", log)
    bindir = pg_bindir()
    if bindir is None:
        raise Failed(
            f"apt-get installed postgresql but no /usr/lib/postgresql/*/bin/pg_ctl exists (see {log})"
        )
    return bindir


class Postgres:
    """A private cluster in a temp dir: trust auth on 127.0.0.1 only, no fsync (it is thrown away)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.port = 0
        self.dir: Path | None = None
        self.bindir: Path | None = None
        self.user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def _server_user(self) -> str | None:
        """initdb and postgres refuse to run as root: use the package's ``postgres`` user (or make one)."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "pioneer-e2e"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pioneer-e2e"],
            None, self.logs / "postgres-setup.log", timeout=60)  # fmt: skip
        return "pioneer-e2e"

    def start(self, env: dict[str, str]) -> None:
        log = self.logs / "postgres-setup.log"
        self.bindir = pg_bindir() or install_postgres(self.logs / "apt-get.log")
        self.user = self._server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="pioneer-e2e-pg-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        data = self.dir / "data"
        pg_env = {**env, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        run([str(self.bindir / "initdb"), "-D", str(data), "-U", "airflow", "-A", "trust", "-E", "UTF8",
             "--no-sync"], pg_env, log, timeout=300, user=self.user, cwd=self.dir)  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run([str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "postgres.log"), "-o", options,
             "-w", "-t", "120", "start"], pg_env, log, timeout=180, user=self.user, cwd=self.dir)  # fmt: skip
        run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", "airflow"],
            pg_env, log, timeout=60)  # fmt: skip

    def stop(self) -> None:
        if self.dir is None or self.bindir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            try:
                run([str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
                    None, self.logs / "postgres-setup.log", timeout=90, user=self.user, cwd=self.dir)  # fmt: skip
            except (Failed, subprocess.TimeoutExpired, OSError) as exc:
                say(f"pg_ctl stop failed ({exc}): SIGKILL the postmaster")
                try:
                    pid = int((data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError, IndexError):
                    pass
        if (self.dir / "postgres.log").exists():
            shutil.copy(self.dir / "postgres.log", self.logs / "postgres.log")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


# -- the Pioneer emulator --------------------------------------------------------------------------


class Emulator:
    """``python -m airflow_provider_pioneer.testing`` in its own session; its log hides the key."""

    def __init__(self, log: Path, options: list[str] | None = None) -> None:
        self.log = log
        self.options = options or []  # more command-line options (a benchmark's rate limit)
        self.url = ""
        self.api_key = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_pioneer.testing", "--host", "127.0.0.1", "--port", "0",
             "--latency-ms", "50", "--per-text-latency-ms", str(PER_TEXT_MS), *self.options],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            with self.log.open("a") as log:
                for line in self.proc.stdout:
                    shown = line
                    if line.startswith("Pioneer emulator on "):
                        self.url = line.split(" on ", 1)[1].strip()
                    if line.startswith("Bootstrap API key: "):
                        self.api_key = line.split(": ", 1)[1].strip()
                        shown = "Bootstrap API key: ***\n"
                        ready.set()
                    log.write(shown)
                    log.flush()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(timeout=60)
        if not (self.url and self.api_key):
            raise Failed(f"the Pioneer emulator did not start (see {self.log})")

    def admin(self, path: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/_emulator/{path}", timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def key_alive(self, key: str) -> bool:
        response = requests.post(f"{self.url}/_emulator/keys/alive", json={"key": key}, timeout=30)
        response.raise_for_status()
        return bool(response.json()["alive"])

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, "emulator", grace=15)
            self.proc = None


# -- Airflow's REST API ----------------------------------------------------------------------------


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def login(self) -> None:
        # SimpleAuthManager with every user an admin hands out a token without credentials.
        token = requests.get(f"{self.base}/auth/token", timeout=30).json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base}/api/v2/{path}", timeout=60, **kwargs)
        if response.status_code >= 400:
            raise Failed(f"{method} /api/v2/{path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        doc = self.call("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 200})
        return list(doc["task_instances"])


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float, procs: Processes, every: float = 2.0
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        procs.check_alive()
        try:
            value = probe()
        except (requests.RequestException, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def wait_run(api: Api, dag_id: str, run_id: str, timeout: float, procs: Processes) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc = dict(api.call("GET", f"dags/{dag_id}/dagRuns/{run_id}"))
        return doc if doc["state"] in ("success", "failed") else None

    return dict(wait_for(f"{dag_id} run {run_id} to finish", done, timeout, procs, every=3.0))
