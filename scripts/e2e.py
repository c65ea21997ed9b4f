"""``make e2e``: the example DAGs on a real multi-process Airflow deployment, killed mid-shard, checked.

What it builds, all on 127.0.0.1 and all stopped at the end (also on failure or Ctrl-C):

1. a private PostgreSQL cluster (``initdb`` into a temp dir, a free port, its unix socket in that
   dir), installed with ``apt-get install -y postgresql`` when no ``/usr/lib/postgresql/*/bin``
   exists; as root, the server runs as the ``postgres`` system user;
2. ``airflow db migrate`` against it, with a throwaway AIRFLOW_HOME under ``.e2e/run/``;
3. the Pioneer emulator (a delay per text, so a shard lasts long enough to be killed), the
   connection ``pioneer_default`` pointing at it, a pool ``pioneer`` of 4 slots;
4. ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as separate processes,
   LocalExecutor, the example DAGs (with their ``data/`` folder) as the dags folder;
5. ``pioneer_batch_inference`` on generated texts in 4 shards (REST API trigger with a conf); one
   shard's task process gets SIGKILL mid-shard and Airflow's retry resumes it from its checkpoint;
   ``pioneer_key_rotation`` runs while the batch is in flight (the shards switch to the new key);
6. ``pioneer_model_lifecycle``: upload, fine-tune with the wait deferred to the triggerer process,
   evaluate, gate, extract with the new job id (on the rotated key);
7. checks: every DAG run succeeded (batch, rotation, the asset-triggered ``pioneer_entity_report``,
   the lifecycle), every input id exactly once in the output, re-sent texts within the killed
   shard's in-flight window, one training job whose log reached the task log through the
   triggerer, no API key in any log file, the asset event and the report.

Exit code 0 only if every check passed. Logs stay in ``.e2e/run/`` (wiped at the next run).
Knobs: PIONEER_E2E_TEXTS (6000), PIONEER_E2E_SHARDS (4), PIONEER_E2E_PER_TEXT_MS (80).
"""

from __future__ import annotations

import glob
import json
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests
from local_env import REPO, fresh_dir

RUN = REPO / ".e2e" / "run"
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
BATCH, ROTATION, REPORT = "pioneer_batch_inference", "pioneer_key_rotation", "pioneer_entity_report"
LIFECYCLE, LIFECYCLE_RUN_ID = "pioneer_model_lifecycle", "e2e_lifecycle"
VARIABLE = "pioneer_api_key"
POOL, POOL_SLOTS = "pioneer", 4
TEXTS = int(os.environ.get("PIONEER_E2E_TEXTS", "6000"))
SHARDS = int(os.environ.get("PIONEER_E2E_SHARDS", "4"))
PER_TEXT_MS = float(os.environ.get("PIONEER_E2E_PER_TEXT_MS", "80"))
# The example DAG's extract_entities: operator default batch_size, max_concurrency=4. A killed shard
# re-sends at most the runner's window: 2 x max_concurrency batches.
BATCH_SIZE, MAX_CONCURRENCY = 64, 4
RESEND_BOUND_PER_KILL = 2 * MAX_CONCURRENCY * BATCH_SIZE
BATCH_RUN_ID, ROTATION_RUN_ID = "e2e_batch", "e2e_rotation"
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


# -- bookkeeping: step wall times and checks -------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float, bool]] = []
        self.checks: list[tuple[str, bool, str]] = []
        self.started = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        say(f"{name} ...")
        t0 = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            elapsed = time.monotonic() - t0
            self.steps.append((name, elapsed, ok))
            say(f"{name}: {'done' if ok else 'FAILED'} in {elapsed:.1f} s")

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        say(f"check {'ok  ' if ok else 'FAIL'} {name}: {detail}")
        return ok

    def print(self, error: str | None) -> bool:
        total = time.monotonic() - self.started
        passed = error is None and bool(self.checks) and all(ok for _, ok, _ in self.checks)
        lines = ["", "=" * 78, f"make e2e: {'PASSED' if passed else 'FAILED'} in {total:.0f} s", "", "Steps"]
        lines += [
            f"  {'ok  ' if ok else 'FAIL'} {elapsed:7.1f} s  {name}" for name, elapsed, ok in self.steps
        ]
        if self.checks:
            lines += ["", "Checks"]
            lines += [f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}" for name, ok, detail in self.checks]
        if error:
            lines += ["", f"Error: {error}"]
        if not passed:
            lines += ["", f"Logs: {RUN / 'logs'} (components) and {RUN / 'airflow' / 'logs'} (tasks)"]
        lines.append("=" * 78)
        print("\n".join(lines), flush=True)
        return passed


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

    def stop_all(self) -> None:
        for name, proc in reversed(self.procs):
            stop_group(proc, name)
        self.procs.clear()


def stop_group(proc: subprocess.Popen[Any], name: str, grace: float = 30.0) -> None:
    """SIGTERM the child's process group (its workers and task processes too), SIGKILL what remains."""
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


def install_postgres(log: Path) -> Path:
    if os.geteuid() != 0:
        raise Failed(
            "PostgreSQL is not installed: run `sudo apt-get install -y postgresql`, then `make e2e`."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say("PostgreSQL not found: apt-get install -y postgresql")
    # The package would start a system-wide cluster on :5432 that outlives this script: a
    # policy-rc.d that denies service starts (Debian's switch for that) while apt-get runs.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# make e2e: no service starts while it installs postgresql\nexit 101\n")
        policy.chmod(0o755)
    try:
        try:
            run(["apt-get", "install", "-y", "-q", "postgresql"], env, log, timeout=900)
        except Failed:
            say("apt-get install failed: apt-get update, then again")
            run(["apt-get", "update", "-q"], env, log, timeout=600)
            run(["apt-get", "install", "-y", "-q", "postgresql"], env, log, timeout=900)
    finally:
        if ours:
            policy.unlink(missing_ok=True)
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

    def __init__(self, log: Path) -> None:
        self.log = log
        self.url = ""
        self.api_key = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_pioneer.testing", "--host", "127.0.0.1", "--port", "0",
             "--latency-ms", "50", "--per-text-latency-ms", str(PER_TEXT_MS)],
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


# -- the scenario ----------------------------------------------------------------------------------

PEOPLE = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Linus Torvalds", "Tim Cook"]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella Inc", "Stark Industries", "Wayne Enterprises"]
PLACES = ["Berlin", "Paris", "Lagos", "Osaka", "Lima", "Toronto"]


def write_input(path: Path, count: int) -> dict[str, str]:
    """``count`` records with unique ids and texts; returns id -> text."""
    records = {}
    with path.open("w") as f:
        for i in range(count):
            text = (
                f"{PEOPLE[i % 6]} of {ORGS[(i // 6) % 6]} opened an office in {PLACES[(i // 36) % 6]} "
                f"on March {1 + i % 28}, 2026, investing ${10 + i} million (report {i})."
            )
            records[f"e2e-{i:05d}"] = text
            f.write(json.dumps({"id": f"e2e-{i:05d}", "text": text}) + "\n")
    return records


def airflow_env(home: Path, pg: Postgres, emulator: Emulator, api_port: int, data: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    connection = {
        "conn_type": "pioneer",
        "host": emulator.url,
        "password": emulator.api_key,
        # key_name: the first rotation revokes the bootstrap key by that name. key_variable: every
        # task reads the rotated key from that Variable.
        "extra": {"key_name": "bootstrap", "key_variable": VARIABLE},
    }
    api_url = f"http://127.0.0.1:{api_port}"
    base.update(
        {
            MARKER: RUN_TOKEN,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url,
            # Workers reach the Execution API on the api-server: it is not on :8080, so say where.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api_url,
            # Separate processes must share these secrets (each would otherwise invent its own, and
            # the api-server would reject the tokens the scheduler signs for task processes).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW_CONN_PIONEER_DEFAULT": json.dumps(connection),
            "PIONEER_EXAMPLE_INPUT": str(data),
            "PIONEER_EXAMPLE_OUTPUT": str(home.parent / "output"),
            "PIONEER_POOL": POOL,
            "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return base


def checkpoint_records(output: Path) -> int:
    """Records a shard has durably written so far: its manifest (``<out>.manifest.json``) says."""
    try:
        return int(json.loads(output.with_name(output.name + ".manifest.json").read_text())["records"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def kill_one_shard_mid_run(api: Api, entities_dir: Path, per_shard: int, procs: Processes) -> dict[str, Any]:
    """SIGKILL the task runner of the first shard that has written some batches but far from all."""

    def candidate() -> dict[str, Any] | None:
        for ti in api.task_instances(BATCH, BATCH_RUN_ID):
            if ti["task_id"] != "extract_entities" or ti["state"] != "running":
                continue
            done = checkpoint_records(entities_dir / f"shard-{ti['map_index']:03d}.jsonl")
            if 2 * BATCH_SIZE <= done <= per_shard - 4 * BATCH_SIZE:
                pid = task_runner_pid(ti["id"])
                if pid is not None:
                    return {"ti": ti, "pid": pid, "done": done}
        return None

    found = wait_for("a shard in the middle of its work", candidate, 420, procs, every=0.5)
    os.kill(found["pid"], signal.SIGKILL)
    say(
        f"SIGKILL task runner pid {found['pid']} of extract_entities[{found['ti']['map_index']}] "
        f"(try {found['ti']['try_number']}) after {found['done']} of ~{per_shard} records"
    )
    return dict(found)


def read_outputs(entities_dir: Path) -> tuple[Counter[str], int, list[str]]:
    ids: Counter[str] = Counter()
    errors = 0
    files = sorted(p.name for p in entities_dir.glob("shard-*.jsonl"))
    for name in files:
        with (entities_dir / name).open() as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    ids[str(record["id"])] += 1
                    errors += "error" in record
    return ids, errors, files


def scan_for_keys(roots: list[Path], keys: list[str]) -> list[str]:
    needles = [k.encode() for k in keys if k]
    hits = []
    for root in roots:
        for path in root.rglob("*") if root.is_dir() else [root]:
            if path.is_file():
                data = path.read_bytes()
                if any(n in data for n in needles):
                    hits.append(str(path))
    return hits


def stored_key(env: dict[str, str], log: Path) -> str:
    """The rotated key, from ``airflow variables get`` (never printed: only parsed)."""
    out = subprocess.run(
        [AIRFLOW, "variables", "get", VARIABLE], check=False, env=env, capture_output=True, text=True, timeout=300,
        start_new_session=True,
    )  # fmt: skip
    with log.open("a") as f:
        f.write(f"$ airflow variables get {VARIABLE}: exit {out.returncode} (stdout not logged: a key)\n")
        f.write(out.stderr)
    if out.returncode != 0:
        raise Failed(f"`airflow variables get {VARIABLE}` exited {out.returncode} (see {log})")
    value = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    try:
        return str(json.loads(value)["api_key"])
    except (ValueError, KeyError, TypeError):
        return value


def scenario(report: Report, procs: Processes, pg: Postgres, emulator: Emulator) -> None:
    logs = RUN / "logs"
    home = RUN / "airflow"
    home.mkdir()
    for module in ("psycopg2", "asyncpg"):
        try:
            __import__(module)
        except ImportError:
            raise Failed(
                f"{module} is missing: Airflow on PostgreSQL needs psycopg2 (sync) AND asyncpg (async). "
                "Run `make e2e` (it installs the e2e extra) or `pip install -e '.[e2e]'`."
            ) from None
    data = RUN / "input.jsonl"
    inputs = write_input(data, TEXTS)
    shutil.copytree(REPO / "example_dags", home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    base_env = {**os.environ, MARKER: RUN_TOKEN}

    with report.step("PostgreSQL: private cluster"):
        pg.start(base_env)
        say(f"PostgreSQL on 127.0.0.1:{pg.port} (data in {pg.dir}, server user {pg.user or 'self'})")
    with report.step("Pioneer emulator"):
        emulator.start(base_env)
        say(f"Pioneer emulator on {emulator.url} ({PER_TEXT_MS:g} ms per text)")
    api_port = free_port()
    env = airflow_env(home, pg, emulator, api_port, data)
    with report.step("airflow db migrate"):
        run([AIRFLOW, "db", "migrate"], env, logs / "db-migrate.log", timeout=900)

    api = Api(f"http://127.0.0.1:{api_port}")
    with report.step("start api-server, scheduler, dag-processor, triggerer"):
        procs.start(
            "api-server", [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(api_port)], env
        )
        procs.start("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"], env)
        procs.start("dag-processor", [AIRFLOW, "dag-processor"], env)
        procs.start("triggerer", [AIRFLOW, "triggerer", "--skip-serve-logs"], env)

        def healthy() -> bool:
            health = requests.get(f"{api.base}/api/v2/monitor/health", timeout=5).json()
            parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
            return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

        wait_for("every component to report healthy", healthy, 420, procs)
        api.login()

    with report.step("pool, DAGs parsed and unpaused"):
        api.call("POST", "pools", json={"name": POOL, "slots": POOL_SLOTS, "description": "Pioneer account"})

        def parsed() -> bool:
            errors = api.call("GET", "importErrors")["import_errors"]
            if errors:
                raise Failed(f"DAG import errors: {json.dumps(errors)[:1500]}")
            ids = {d["dag_id"] for d in api.call("GET", "dags", params={"limit": 100})["dags"]}
            return {BATCH, ROTATION, REPORT, LIFECYCLE} <= ids

        wait_for("the example DAGs to be parsed", parsed, 300, procs)
        for dag_id in (BATCH, ROTATION, REPORT, LIFECYCLE):
            api.call("PATCH", f"dags/{dag_id}", json={"is_paused": False})

    entities_dir = home.parent / "output" / "news_entities" / BATCH_RUN_ID / "entities"
    per_shard = -(-TEXTS // SHARDS)
    batch_started = time.monotonic()
    with report.step(f"batch run ({TEXTS} texts, {SHARDS} shards) until one shard is killed"):
        api.call("POST", f"dags/{BATCH}/dagRuns",
                 json={"dag_run_id": BATCH_RUN_ID, "logical_date": None, "conf": {"shards": SHARDS}})  # fmt: skip
        killed = kill_one_shard_mid_run(api, entities_dir, per_shard, procs)
    with report.step("rotation run while the batch is in flight"):
        in_flight = sum(
            1 for ti in api.task_instances(BATCH, BATCH_RUN_ID)
            if ti["task_id"] == "extract_entities" and ti["state"] in ("running", "up_for_retry", "queued", "scheduled")
        )  # fmt: skip
        api.call(
            "POST", f"dags/{ROTATION}/dagRuns", json={"dag_run_id": ROTATION_RUN_ID, "logical_date": None}
        )
        rotation = wait_run(api, ROTATION, ROTATION_RUN_ID, 420, procs)
    with report.step("batch run to the end (retry resumes the killed shard)"):
        batch = wait_run(api, BATCH, BATCH_RUN_ID, 900, procs)
    batch_wall = time.monotonic() - batch_started
    with report.step("asset-triggered report run"):

        def report_done() -> dict[str, Any] | None:
            runs = api.runs(REPORT)
            return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

        report_run = wait_for("the pioneer_entity_report run", report_done, 300, procs, every=3.0)
    with report.step("model lifecycle run (the training wait deferred to the triggerer)"):
        api.call(
            "POST", f"dags/{LIFECYCLE}/dagRuns", json={"dag_run_id": LIFECYCLE_RUN_ID, "logical_date": None}
        )
        lifecycle = wait_run(api, LIFECYCLE, LIFECYCLE_RUN_ID, 600, procs)
    # Give a scheduled run that should not exist a moment to show up before counting runs.
    time.sleep(5)

    with report.step("checks"):
        runs = {dag_id: api.runs(dag_id) for dag_id in (BATCH, ROTATION, REPORT)}
        report.check(
            "every DAG run succeeded",
            all(len(r) == 1 and r[0]["state"] == "success" for r in runs.values()),
            ", ".join(f"{d}: {[r['state'] for r in rs]}" for d, rs in runs.items())
            + f" (batch {batch['state']}, rotation {rotation['state']}, report {report_run['state']})",
        )
        tis = api.task_instances(BATCH, BATCH_RUN_ID)
        shard_tis = [ti for ti in tis if ti["task_id"] == "extract_entities"]
        victim = next((ti for ti in shard_tis if ti["map_index"] == killed["ti"]["map_index"]), {})
        task_logs = home / "logs"
        resumed = [
            line.strip()
            for path in task_logs.rglob("*.log")
            if f"map_index={victim.get('map_index')}" in str(path) and BATCH_RUN_ID in str(path)
            for line in path.read_text(errors="replace").splitlines()
            if "Resuming from the checkpoint" in line
        ]
        # The task log is JSON lines: keep the message only.
        resumed = [str(json.loads(r).get("event", r)) if r.startswith("{") else r for r in resumed]
        report.check(
            "the killed shard was retried and resumed from its checkpoint",
            len(shard_tis) == SHARDS and victim.get("state") == "success"
            and int(victim.get("try_number") or 0) >= 2 and bool(resumed),
            f"{len(shard_tis)} shards; extract_entities[{victim.get('map_index')}] {victim.get('state')} on try "
            f"{victim.get('try_number')}, killed after {killed['done']} records; "
            f"{resumed[0] if resumed else 'NO resume line in its log'}",
        )  # fmt: skip

        ids, errors, files = read_outputs(entities_dir)
        missing = [i for i in inputs if ids[i] == 0]
        duplicated = [i for i, n in ids.items() if n > 1]
        unknown = [i for i in ids if i not in inputs]
        report.check(
            "every input id exactly once in the output",
            not missing and not duplicated and not unknown and errors == 0 and len(files) == SHARDS,
            f"{sum(ids.values())} records in {len(files)} shard files for {len(inputs)} inputs: "
            f"{len(missing)} missing, {len(duplicated)} duplicated, {len(unknown)} unknown, {errors} errors",
        )

        counters = emulator.admin("counters")
        text_counts = counters.get("text_counts") or {}
        resent = sum(max(0, int(text_counts.get(t, 0)) - 1) for t in inputs.values())
        unsent = sum(1 for t in inputs.values() if not text_counts.get(t))
        report.check(
            "re-sent texts within the killed shard's in-flight window",
            resent <= RESEND_BOUND_PER_KILL and unsent == 0,
            f"texts_committed {counters.get('texts_committed')} for {len(inputs)} inputs: {resent} re-sent "
            f"(bound 2 x {MAX_CONCURRENCY} x {BATCH_SIZE} = {RESEND_BOUND_PER_KILL}), {unsent} never sent; "
            f"401s (shards switching to the rotated key): {(counters.get('statuses') or {}).get('401', 0)}",
        )

        rotate_ti = next((ti for ti in api.task_instances(ROTATION, ROTATION_RUN_ID)
                          if ti["task_id"] == "rotate_api_key"), {})  # fmt: skip
        report.check(
            "the rotation ran while the batch was in flight",
            in_flight > 0 and bool(rotate_ti.get("end_date")) and bool(batch.get("end_date"))
            and str(rotate_ti["end_date"]) < str(batch["end_date"]),
            f"{in_flight} shards unfinished at the trigger; rotate_api_key ended {rotate_ti.get('end_date')}, "
            f"the batch run {batch.get('end_date')}; keys alive {counters.get('keys_alive')}, "
            f"created {counters.get('keys_created')}, revoked {counters.get('keys_revoked')}",
        )  # fmt: skip

        events = api.call("GET", "assets/events", params={"source_dag_id": BATCH, "limit": 100})[
            "asset_events"
        ]
        report_value: Any = None
        if report_run.get("state") == "success":
            xcom = api.call(
                "GET",
                f"dags/{REPORT}/dagRuns/{report_run['dag_run_id']}/taskInstances/top_entities/xcomEntries/return_value",
            )
            report_value = xcom.get("value")
        extra = (events[0].get("extra") or {}) if events else {}
        report.check(
            "the asset event fired and the report ran on it",
            len(events) == 1 and extra.get("items") == len(inputs)
            and report_run.get("run_type") == "asset_triggered" and bool(report_value),
            f"{len(events)} event(s) from {BATCH} (items {extra.get('items')}); report run "
            f"{report_run.get('run_type')} {report_run.get('state')}, top entities: "
            f"{', '.join(list((report_value or {}).get('organization', {}))[:3]) if isinstance(report_value, dict) else report_value}",
        )  # fmt: skip

        lifecycle_counters = emulator.admin("lifecycle/counters")
        train_ti = next(
            (ti for ti in api.task_instances(LIFECYCLE, LIFECYCLE_RUN_ID) if ti["task_id"] == "train"), {}
        )
        # The triggerer writes a deferred task's trigger log beside its task log (attempt=N.log.trigger.M.log).
        streamed = [
            line for path in (home / "logs").rglob("*.log")
            if LIFECYCLE_RUN_ID in str(path) and "task_id=train" in str(path) and ".trigger." in path.name
            for line in path.read_text(errors="replace").splitlines() if "[training " in line
        ]  # fmt: skip
        report.check(
            "the lifecycle run trained once on the triggerer and used the new model",
            lifecycle.get("state") == "success" and lifecycle_counters.get("jobs_submitted") == 1
            and int(train_ti.get("try_number") or 0) == 1 and bool(streamed)
            and int(lifecycle_counters.get("inference_on_jobs") or 0) > 0,
            f"run {lifecycle.get('state')}; {lifecycle_counters.get('jobs_submitted')} job(s) submitted, "
            f"train try {train_ti.get('try_number')}, {len(streamed)} training log lines in its trigger log "
            "(written by the triggerer process), "
            f"{lifecycle_counters.get('inference_on_jobs')} /inference calls with the job id",
        )  # fmt: skip

        rotated = stored_key(env, logs / "variables-get.log")
        known = {k for k in (emulator.api_key, rotated) if k}
        # The values scanned for are the real ones: the rotated key works, the bootstrap key is revoked.
        real = bool(rotated) and emulator.key_alive(rotated) and not emulator.key_alive(emulator.api_key)
        hits = scan_for_keys([home / "logs", logs, home.parent / "output"], sorted(known))
        # keys_created counts the bootstrap key too: more than the two we know would be a key we
        # cannot scan for (e.g. a rotation retry that created one more).
        created = int(counters.get("keys_created") or 0)
        task_files = sum(1 for p in (home / "logs").rglob("*") if p.is_file())
        report.check(
            "no API key in any log file",
            not hits and len(known) == 2 and real and created <= len(known),
            f"{task_files} task log files, {sum(1 for _ in logs.iterdir())} component logs and the output "
            f"scanned for {len(known)} keys (bootstrap, revoked; rotated, {'alive' if real else 'NOT the live key'}; "
            f"the emulator created {created})" + (f"; FOUND in {hits[:5]}" if hits else ""),
        )
        report.check(
            "batch run wall time", True, f"{batch_wall:.0f} s from trigger to end, kill and retry included"
        )


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    fresh_dir(RUN)
    logs = RUN / "logs"
    logs.mkdir()
    say(f"run directory {RUN}")
    report = Report()
    procs = Processes(logs)
    pg = Postgres(logs)
    emulator = Emulator(logs / "emulator.log")
    error: str | None = None
    try:
        scenario(report, procs, pg, emulator)
    except Failed as exc:
        error = str(exc)
    except (KeyboardInterrupt, _Stop):
        error = "interrupted"
    except Exception as exc:  # a bug in this script: still clean up and say where
        error = f"{type(exc).__name__}: {exc}"
        import traceback

        traceback.print_exc()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        t0 = time.monotonic()
        if emulator.url:
            PORTS.append(int(emulator.url.rsplit(":", 1)[1].split("/")[0]))
        procs.stop_all()
        emulator.stop()
        pg.stop()
        leftovers = marked_pids()
        for pid in leftovers:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        still_listening = [p for p in PORTS if listening(p)]
        report.steps.append(
            ("stop every process", time.monotonic() - t0, not leftovers and not still_listening)
        )
        if leftovers or still_listening:
            report.check(
                "clean shutdown", False, f"orphans killed: {leftovers}; still listening: {still_listening}"
            )
        else:
            report.check("clean shutdown", True, "no process of this run left, nothing listening")
    return 0 if report.print(error) else 1


if __name__ == "__main__":
    sys.exit(main())
