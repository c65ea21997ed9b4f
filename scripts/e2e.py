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
   ``pioneer_key_rotation`` runs while the batch is in flight (the shards switch to the new key),
   then ``pioneer_key_rotation_secrets_manager`` twice, beside the batch, on a second Pioneer
   account whose key lives in a secret on moto's Secrets Manager server (``e2e_secrets.py``);
6. ``pioneer_model_lifecycle``: upload, fine-tune with the wait deferred to the triggerer process,
   evaluate, gate, extract with the new job id (on the rotated key);
7. checks: every DAG run succeeded (batch, rotation, the asset-triggered ``pioneer_entity_report``,
   the lifecycle), every input id exactly once in the output, re-sent texts within the killed
   shard's in-flight window, one training job whose log reached the task log through the
   triggerer, the secret's ``AWSCURRENT`` key alive and its ``AWSPREVIOUS`` and seed keys revoked
   at the emulator, no API key (of either account) in any log file, the asset event and the report.

On CeleryExecutor (the default, ``--executor celery``; ``make e2e EXECUTOR=local`` for
LocalExecutor) the deployment adds Redis (Debian's ``redis-server``) as the broker, PostgreSQL as
the result backend, moto's S3 server holding the input and the output (``s3://``), and two
``airflow celery worker`` processes, each in its own UTS namespace with its own hostname (two
"hosts" to Airflow and to the output lease); see ``e2e_celery.py``. The faults, once every worker
runs a shard in the middle of its work, "machine" ``a`` dies in two steps: its worker's whole
process group gets SIGKILL (its task runners, in process groups of their own, outlive it), then
its task runners too; worker ``b`` runs on (the rotation hits its shards mid-flight) and a new
worker ``c`` on a new host replaces ``a``. ``[scheduler] task_instance_heartbeat_timeout`` is 30 s here (300 s by default):
it decides how long a dead worker's shards stay "running" before their retry is scheduled.

Exit code 0 only if every check passed. Logs stay in ``.e2e/run/`` (wiped at the next run).
Knobs: PIONEER_E2E_TEXTS (6000), PIONEER_E2E_SHARDS (4), PIONEER_E2E_PER_TEXT_MS (80),
PIONEER_E2E_POOL_SLOTS (4), PIONEER_E2E_WORKER_CONCURRENCY (2, Celery), PIONEER_E2E_FAULTS (1; 0 runs
the batch without killing anything, for a benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import e2e_celery as celery
import e2e_secrets
import requests
from e2e_base import (
    BIN,
    MARKER,
    PER_TEXT_MS,
    PORTS,
    RUN_TOKEN,
    Api,
    Emulator,
    Failed,
    Postgres,
    Processes,
    _on_sigterm,
    _Stop,
    free_port,
    listening,
    marked_pids,
    run,
    say,
    task_runner_pid,
    wait_for,
    wait_run,
)  # fmt: skip
from local_env import REPO, fresh_dir

RUN = REPO / ".e2e" / "run"
AIRFLOW = str(BIN / "airflow")
BATCH, ROTATION, REPORT = "pioneer_batch_inference", "pioneer_key_rotation", "pioneer_entity_report"
LIFECYCLE, LIFECYCLE_RUN_ID = "pioneer_model_lifecycle", "e2e_lifecycle"
VARIABLE = "pioneer_api_key"
POOL, POOL_SLOTS = "pioneer", int(os.environ.get("PIONEER_E2E_POOL_SLOTS", "4"))
TEXTS = int(os.environ.get("PIONEER_E2E_TEXTS", "6000"))
SHARDS = int(os.environ.get("PIONEER_E2E_SHARDS", "4"))
FAULTS = os.environ.get("PIONEER_E2E_FAULTS", "1") != "0"
# How long a task instance may go without a heartbeat before the scheduler fails it (the retry of a
# shard whose worker died waits this long). Airflow's default is 300 s; the supervisor beats every
# few seconds, so 30 s leaves a loaded CI machine a margin of several missed beats.
HEARTBEAT_TIMEOUT_S = 30
# Between the two steps of machine a's death: long enough to see what its orphaned task runners do.
ORPHAN_WATCH_S = 5.0
# The example DAG's extract_entities: operator default batch_size, max_concurrency=4. A killed shard
# re-sends at most the runner's window: 2 x max_concurrency batches.
BATCH_SIZE, MAX_CONCURRENCY = 64, 4
RESEND_BOUND_PER_KILL = 2 * MAX_CONCURRENCY * BATCH_SIZE
BATCH_RUN_ID, ROTATION_RUN_ID = "e2e_batch", "e2e_rotation"


# -- bookkeeping: step wall times and checks -------------------------------------------------------


class Report:
    def __init__(self, title: str = "make e2e") -> None:
        self.title = title
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
        lines = [
            "",
            "=" * 78,
            f"{self.title}: {'PASSED' if passed else 'FAILED'} in {total:.0f} s",
            "",
            "Steps",
        ]
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


def airflow_env(
    home: Path,
    pg: Postgres,
    emulator: Emulator,
    api_port: int,
    input_url: str,
    output_url: str,
    executor: dict[str, str],
) -> dict[str, str]:
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
            "PIONEER_EXAMPLE_INPUT": input_url,
            "PIONEER_EXAMPLE_OUTPUT": output_url,
            "PIONEER_POOL": POOL,
            "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            **executor,
        }
    )
    return base


def executor_env(executor: str, pg: Postgres, redis: celery.Redis, s3: celery.S3) -> dict[str, str]:
    if executor == "local":
        return {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis.url,
        # db+postgresql:// would load psycopg 3 (not installed) and the workers die with a message
        # that does not say so: name the driver.
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(celery.WORKER_CONCURRENCY),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        f"AIRFLOW_CONN_{celery.S3.conn_id.upper()}": s3.connection,
    }


def checkpoint_records(output: Path) -> int:
    """Records a shard has durably written so far: its manifest (``<out>.manifest.json``) says."""
    try:
        return int(json.loads(output.with_name(output.name + ".manifest.json").read_text())["records"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def kill_one_shard_mid_run(
    api: Api, entities_dir: Path, per_shard: int, procs: Processes
) -> list[dict[str, Any]]:
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
    return [{**found, "fault": "task runner SIGKILL"}]


def mid_work(done: int, per_shard: int) -> bool:
    """Some batches written, far from all: a kill now interrupts real work on both sides of it."""
    return 2 * BATCH_SIZE <= done <= per_shard - 4 * BATCH_SIZE


def crash_celery_machine(
    api: Api,
    s3: celery.S3,
    entities_key: str,
    per_shard: int,
    procs: Processes,
    workers: list[celery.Worker],
    env: dict[str, str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Once every worker runs a shard mid-work, machine ``a`` dies in two steps: SIGKILL of its
    worker's whole process group (its task runners, in process groups of their own, outlive it),
    then, ``ORPHAN_WATCH_S`` later, of those task runners too. Worker ``b`` runs on; a new worker
    ``c`` on a new host replaces ``a``. Returns the killed shards and what was seen at the fault."""
    a, b = workers

    def shard_key(ti: dict[str, Any]) -> str:
        return f"{entities_key}/shard-{ti['map_index']:03d}.jsonl"

    def candidate() -> dict[str, list[tuple[dict[str, Any], int]]] | None:
        by_host: dict[str, list[tuple[dict[str, Any], int]]] = {}
        for ti in api.task_instances(BATCH, BATCH_RUN_ID):
            if ti["task_id"] == "extract_entities" and ti["state"] == "running":
                done = celery.s3_checkpoint_records(s3, shard_key(ti))
                by_host.setdefault(str(ti.get("hostname")), []).append((ti, done))
        if not all(any(mid_work(d, per_shard) for _, d in by_host.get(w.host, [])) for w in workers):
            return None
        a.runners = {}
        for ti, _ in by_host[a.host]:
            pid = task_runner_pid(ti["id"])
            if pid is None:
                return None
            a.runners[ti["id"]] = pid
        return by_host

    found = wait_for("a shard mid-work on each worker", candidate, 420, procs, every=0.5)
    # Who the output leases name as their owners, right now: the two workers must be two hosts.
    lease_hosts = sorted(
        {str((s3.read_json(f"{shard_key(ti)}.lease.json") or {}).get("host")) for items in found.values()
         for ti, _ in items}
    )  # fmt: skip
    victims = [{"ti": ti, "done": done, "fault": "machine a"} for ti, done in found[a.host]]
    orphans = celery.kill_worker(procs, a, runners_too=False)
    say(
        f"SIGKILL worker {a.node}'s process group; {len(orphans)} of its {len(a.runners)} task runners "
        f"outlive it: {orphans}"
    )
    time.sleep(ORPHAN_WATCH_S)
    progress = sum(celery.s3_checkpoint_records(s3, shard_key(v["ti"])) - v["done"] for v in victims)
    left = celery.kill_worker(procs, a, runners_too=True)
    say(
        f"SIGKILL its task runners too ({progress} more records checkpointed in between): machine "
        f"{a.host} is dead; alive: {left}"
    )
    replacement = celery.start_worker(procs, env, RUN, "c", "pioneer-e2e-c")  # a new machine
    for v in victims:
        say(f"  killed extract_entities[{v['ti']['map_index']}] after {v['done']} of ~{per_shard} records")
    survivors = [ti["map_index"] for ti, _ in found.get(b.host, [])]
    say(f"  worker {b.node} runs on with extract_entities{survivors}")
    return victims, {
        "lease_hosts": lease_hosts, "orphans": orphans, "left": left, "progress": progress,
        "workers": [b, replacement],
    }  # fmt: skip


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


def deploy(
    report: Report,
    procs: Processes,
    pg: Postgres,
    emulator: Emulator,
    executor: str,
    redis: celery.Redis,
    s3: celery.S3,
    home: Path,
    data: Path | None,
    secrets_manager: e2e_secrets.SecretsManager | None = None,
) -> tuple[dict[str, str], Api, list[celery.Worker]]:
    """Steps 1 to 4 of the module docstring: the servers, the metastore, Airflow's components (and,
    on Celery, two workers), signed in to the REST API, the pool created. Also what
    ``benchmarks/celery_shards.py`` deploys its DAG on.

    :param home: the AIRFLOW_HOME, its ``dags`` folder already filled.
    :param data: the input JSONL (put into the bucket on Celery), or None.
    :param secrets_manager: also start moto's Secrets Manager server, seed its secret and add its
        connections to the environment (``scenario``'s rotation into Secrets Manager), or None.
    :returns: the Airflow processes' environment, the signed-in API, the Celery workers.
    """
    logs = RUN / "logs"
    for module in ("psycopg2", "asyncpg"):
        try:
            __import__(module)
        except ImportError:
            raise Failed(
                f"{module} is missing: Airflow on PostgreSQL needs psycopg2 (sync) AND asyncpg (async). "
                "Run `make e2e` (it installs the e2e extra) or `pip install -e '.[e2e]'`."
            ) from None
    on_celery = executor == "celery"
    base_env = {**os.environ, MARKER: RUN_TOKEN}
    with report.step("PostgreSQL: private cluster"):
        pg.start(base_env)
        say(f"PostgreSQL on 127.0.0.1:{pg.port} (data in {pg.dir}, server user {pg.user or 'self'})")
    with report.step("Pioneer emulator"):
        emulator.start(base_env)
        say(f"Pioneer emulator on {emulator.url} ({PER_TEXT_MS:g} ms per text)")
    if secrets_manager is not None:
        secrets_manager.launch(procs, base_env)  # boots during the migration; seeded after it
    if on_celery:
        with report.step("Redis (broker) and moto's S3 server (input and output)"):
            redis.start(procs, base_env)
            s3.start(procs, base_env)
            if data is not None:
                s3.put("input.jsonl", data.read_bytes())
            say(f"Redis on {redis.url}, S3 on {s3.endpoint} (bucket {s3.bucket})")
        input_url, output_url = s3.url("input.jsonl"), s3.url("output")
    else:
        input_url, output_url = str(data), str(home.parent / "output")
    api_port = free_port()
    more_env = executor_env(executor, pg, redis, s3)
    if secrets_manager is not None:
        more_env.update(secrets_manager.env(emulator.url))
    env = airflow_env(home, pg, emulator, api_port, input_url, output_url, more_env)
    with report.step("airflow db migrate"):
        run([AIRFLOW, "db", "migrate"], env, logs / "db-migrate.log", timeout=900)
    if secrets_manager is not None:
        with report.step("moto's Secrets Manager server, a secret holding account 2's key"):
            secrets_manager.seed(procs, emulator.url)

    api = Api(f"http://127.0.0.1:{api_port}")
    workers: list[celery.Worker] = []
    with report.step(
        "start api-server, scheduler, dag-processor, triggerer" + (", 2 celery workers" if on_celery else "")
    ):
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

        if on_celery:
            workers = [
                celery.start_worker(procs, env, RUN, "a", "pioneer-e2e-a"),
                celery.start_worker(procs, env, RUN, "b", "pioneer-e2e-b"),
            ]
        wait_for("every component to report healthy", healthy, 420, procs)
        wait_for("the celery workers to be ready", lambda: all(celery.worker_ready(logs, w) for w in workers),
                 300, procs)  # fmt: skip
        api.login()

    api.call("POST", "pools", json={"name": POOL, "slots": POOL_SLOTS, "description": "Pioneer account"})
    return env, api, workers


def scenario(
    report: Report,
    procs: Processes,
    pg: Postgres,
    emulator: Emulator,
    executor: str,
    redis: celery.Redis,
    s3: celery.S3,
) -> None:
    logs = RUN / "logs"
    home = RUN / "airflow"
    home.mkdir()
    on_celery = executor == "celery"
    data = RUN / "input.jsonl"
    inputs = write_input(data, TEXTS)
    shutil.copytree(REPO / "example_dags", home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    secrets_manager = e2e_secrets.SecretsManager()
    env, api, workers = deploy(report, procs, pg, emulator, executor, redis, s3, home, data, secrets_manager)

    with report.step("DAGs parsed and unpaused"):

        def parsed() -> bool:
            errors = api.call("GET", "importErrors")["import_errors"]
            if errors:
                raise Failed(f"DAG import errors: {json.dumps(errors)[:1500]}")
            ids = {d["dag_id"] for d in api.call("GET", "dags", params={"limit": 100})["dags"]}
            return {BATCH, ROTATION, REPORT, LIFECYCLE, e2e_secrets.DAG_ID} <= ids

        wait_for("the example DAGs to be parsed", parsed, 300, procs)
        for dag_id in (BATCH, ROTATION, REPORT, LIFECYCLE, e2e_secrets.DAG_ID):
            api.call("PATCH", f"dags/{dag_id}", json={"is_paused": False})

    entities_dir = home.parent / "output" / "news_entities" / BATCH_RUN_ID / "entities"
    entities_key = f"output/news_entities/{BATCH_RUN_ID}/entities"
    per_shard = -(-TEXTS // SHARDS)
    batch_started = time.monotonic()
    fault: dict[str, Any] = {}
    killed: list[dict[str, Any]] = []
    what = ("a machine dies" if on_celery else "one shard is killed") if FAULTS else "its shards run"
    with report.step(f"batch run ({TEXTS} texts, {SHARDS} shards) until {what}"):
        api.call("POST", f"dags/{BATCH}/dagRuns",
                 json={"dag_run_id": BATCH_RUN_ID, "logical_date": None, "conf": {"shards": SHARDS}})  # fmt: skip
        if FAULTS and on_celery:
            killed, fault = crash_celery_machine(api, s3, entities_key, per_shard, procs, workers, env)
        elif FAULTS:
            killed = kill_one_shard_mid_run(api, entities_dir, per_shard, procs)
        else:
            wait_for("a running shard", lambda: any(
                ti["task_id"] == "extract_entities" and ti["state"] == "running"
                for ti in api.task_instances(BATCH, BATCH_RUN_ID)), 420, procs)  # fmt: skip
    with report.step("rotation run while the batch is in flight"):
        in_flight = sum(
            1 for ti in api.task_instances(BATCH, BATCH_RUN_ID)
            if ti["task_id"] == "extract_entities" and ti["state"] in ("running", "up_for_retry", "queued", "scheduled")
        )  # fmt: skip
        api.call(
            "POST", f"dags/{ROTATION}/dagRuns", json={"dag_run_id": ROTATION_RUN_ID, "logical_date": None}
        )
        rotation = wait_run(api, ROTATION, ROTATION_RUN_ID, 420, procs)
        # The lifecycle (on the rotated key) runs while the killed shards wait out their retry:
        # it needs no pool slot, and the e2e does not pay its minute on top of the batch's.
        api.call(
            "POST", f"dags/{LIFECYCLE}/dagRuns", json={"dag_run_id": LIFECYCLE_RUN_ID, "logical_date": None}
        )
        say("model lifecycle run triggered (its training wait deferred to the triggerer)")
        # Beside them, on account 2: two rotations into the secret, one after the other.
        e2e_secrets.trigger_both(api)
        say(f"{e2e_secrets.DAG_ID} triggered twice (the second queued until the first ends)")
    with report.step("batch run to the end" + (" (retries resume the killed shards)" if killed else "")):
        batch = wait_run(api, BATCH, BATCH_RUN_ID, 900, procs)
    batch_wall = time.monotonic() - batch_started
    with report.step("asset-triggered report run"):

        def report_done() -> dict[str, Any] | None:
            runs = api.runs(REPORT)
            return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

        report_run = wait_for("the pioneer_entity_report run", report_done, 300, procs, every=3.0)
    with report.step("model lifecycle run to the end (beside the batch since the rotation)"):
        lifecycle = wait_run(api, LIFECYCLE, LIFECYCLE_RUN_ID, 600, procs)
    with report.step("Secrets Manager rotation runs to the end (beside the batch since the rotation)"):
        sm_runs = e2e_secrets.wait_rotations(api, procs, 300)
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
        task_logs = home / "logs"
        lines = []
        for k in killed:
            victim = next((ti for ti in shard_tis if ti["map_index"] == k["ti"]["map_index"]), {})
            resumed = [
                line.strip()
                for path in task_logs.rglob("*.log")
                if f"map_index={victim.get('map_index')}" in str(path) and BATCH_RUN_ID in str(path)
                for line in path.read_text(errors="replace").splitlines()
                if "Resuming from the checkpoint" in line
            ]
            # The task log is JSON lines: keep the message only.
            resumed = [str(json.loads(r).get("event", r)) if r.startswith("{") else r for r in resumed]
            ok = (
                victim.get("state") == "success" and int(victim.get("try_number") or 0) >= 2 and bool(resumed)
            )
            lines.append((ok, f"extract_entities[{victim.get('map_index')}] ({k['fault']}) {victim.get('state')} "
                              f"on try {victim.get('try_number')} on {victim.get('hostname')}, killed after "
                              f"{k['done']} records; {resumed[0] if resumed else 'NO resume line in its log'}"))  # fmt: skip
        report.check(
            "the killed shards were retried and resumed from their checkpoints",
            len(shard_tis) == SHARDS and bool(killed) == FAULTS and all(ok for ok, _ in lines),
            f"{len(shard_tis)} shards, {len(killed)} killed" + "".join(f"; {t}" for _, t in lines),
        )

        if on_celery:
            ids, errors, files, others = celery.s3_read_outputs(s3, entities_key + "/")
            # What else is left beside the shard files: their manifests only (parts and leases are
            # removed when an output is published).
            stray = [k for k in others if not k.endswith(".manifest.json")]
            where = f"s3://{s3.bucket}/{entities_key}"
        else:
            (ids, errors, files), stray, where = read_outputs(entities_dir), [], str(entities_dir)
        missing = [i for i in inputs if ids[i] == 0]
        duplicated = [i for i, n in ids.items() if n > 1]
        unknown = [i for i in ids if i not in inputs]
        report.check(
            "every input id exactly once in the output",
            not missing and not duplicated and not unknown and errors == 0 and len(files) == SHARDS,
            f"{sum(ids.values())} records in {len(files)} shard files in {where} for {len(inputs)} inputs: "
            f"{len(missing)} missing, {len(duplicated)} duplicated, {len(unknown)} unknown, {errors} errors"
            + (f"; left beside them: {stray[:5]}" if stray else ""),
        )

        if on_celery and FAULTS:
            hosts = sorted({str(ti.get("hostname")) for ti in shard_tis})
            report.check(
                "two workers were two hosts to the output lease; machine a died whole",
                fault["lease_hosts"] == sorted(w.host for w in workers) and not fault["left"],
                f"lease owners at the fault: {fault['lease_hosts']}; shards finished on {hosts}; "
                f"{len(fault['orphans'])} of machine a's task runners outlived its worker's process group "
                f"(checkpointing {fault['progress']} more records in {ORPHAN_WATCH_S:g} s), "
                f"{len(fault['left'])} alive after their own SIGKILL",
            )

        counters = emulator.admin("counters")
        text_counts = counters.get("text_counts") or {}
        resent = sum(max(0, int(text_counts.get(t, 0)) - 1) for t in inputs.values())
        unsent = sum(1 for t in inputs.values() if not text_counts.get(t))
        bound = RESEND_BOUND_PER_KILL * len(killed)
        report.check(
            "re-sent texts within the killed shards' in-flight windows",
            resent <= bound and unsent == 0,
            f"texts_committed {counters.get('texts_committed')} for {len(inputs)} inputs: {resent} re-sent "
            f"(bound {len(killed)} killed x 2 x {MAX_CONCURRENCY} x {BATCH_SIZE} = {bound}), {unsent} never sent; "
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

        sm_keys = e2e_secrets.check_rotations(report.check, api, sm_runs, secrets_manager, emulator.url)
        rotated = stored_key(env, logs / "variables-get.log")
        known = {k for k in (emulator.api_key, rotated, *sm_keys) if k}
        # The values scanned for are the real ones: the rotated key works, the bootstrap key is revoked.
        real = bool(rotated) and emulator.key_alive(rotated) and not emulator.key_alive(emulator.api_key)
        hits = scan_for_keys([home / "logs", logs, home.parent / "output"], sorted(known))
        if on_celery:
            hits += celery.s3_scan_for_keys(s3, sorted(known))
        # keys_created counts the bootstrap keys too: more than the keys we know (account 1's two,
        # account 2's seed and its two rotations') would be a key we cannot scan for (e.g. a
        # rotation retry that created one more).
        created = int(counters.get("keys_created") or 0)
        task_files = sum(1 for p in (home / "logs").rglob("*") if p.is_file())
        report.check(
            "no API key in any log file",
            not hits
            and len(known) == 2 + len(sm_keys)
            and len(sm_keys) == 3
            and real
            and created <= len(known),
            f"{task_files} task log files, {sum(1 for _ in logs.iterdir())} component logs and the output "
            + ("(every object in the bucket) " if on_celery else "")
            + f"scanned for {len(known)} keys (bootstrap, revoked; rotated, {'alive' if real else 'NOT the live key'}; "
            f"{len(sm_keys)} the secret held; the emulator created {created})"
            + (f"; FOUND in {hits[:5]}" if hits else ""),
        )
        # Where the shards ran and how long each one's last try took (for the benchmarks).
        per_host = dict(sorted(Counter(str(ti.get("hostname")) for ti in shard_tis).items()))
        durations = [float(ti.get("duration") or 0) for ti in shard_tis] or [0.0]
        report.check(
            "batch run wall time",
            True,
            f"{batch_wall:.0f} s from trigger to end on {executor}"
            + (", faults and retries included" if killed else ", no fault")
            + f"; last tries per host {per_host}, {min(durations):.0f} to {max(durations):.0f} s each",
        )


def run_deployment(
    executor: str,
    body: Callable[[Report, Processes, Postgres, Emulator, celery.Redis, celery.S3], None],
    emulator_options: Sequence[str] = (),
    title: str = "make e2e",
) -> int:
    """Run ``body`` on a fresh run directory, then stop everything it started (also on a failure
    or Ctrl-C) and check that nothing is left; print the steps and checks. Exit code 0 if all passed.

    :param body: what to do with the deployment's parts (``scenario``, or a benchmark's).
    :param emulator_options: extra command-line options of the Pioneer emulator (its rate limit).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    fresh_dir(RUN)
    logs = RUN / "logs"
    logs.mkdir()
    say(f"run directory {RUN}, {executor} executor")
    report = Report(title)
    procs = Processes(logs)
    pg = Postgres(logs)
    emulator = Emulator(logs / "emulator.log", list(emulator_options))
    redis, s3 = celery.Redis(logs), celery.S3()
    error: str | None = None
    try:
        body(report, procs, pg, emulator, redis, s3)
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
        redis.cleanup()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--executor", choices=("celery", "local"), default="celery")
    executor = parser.parse_args().executor

    def body(
        report: Report, procs: Processes, pg: Postgres, emulator: Emulator, redis: celery.Redis, s3: celery.S3
    ) -> None:
        scenario(report, procs, pg, emulator, executor, redis, s3)

    return run_deployment(executor, body)


if __name__ == "__main__":
    sys.exit(main())
