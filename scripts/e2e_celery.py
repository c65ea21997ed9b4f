"""The CeleryExecutor half of ``make e2e``: Redis, an S3 API (moto), two workers on two "hosts", and the faults.

* :class:`Redis`: Debian's ``redis-server`` (``apt-get install -y redis-server`` when missing),
  on a free loopback port with its own config and directory, nothing persisted;
* :class:`S3`: moto's S3 server on loopback (``moto_server`` of the test-providers extra), one
  bucket, an Airflow connection that points at it; the run's input and output live there;
* :func:`start_worker`: ``airflow celery worker`` in its own UTS namespace (``unshare --uts``) with
  its own hostname, so ``socket.gethostname()`` differs between the workers: the output lease
  names its owner by that (``Owner.host`` in ``airflow_provider_pioneer/batching/output.py``), and
  ``--celery-hostname`` alone would leave it the same. ``--pid`` and ``--skip-serve-logs`` are
  needed for two workers on one machine (a pidfile and a log-server port each otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_base import BIN, Failed, Processes, apt_install, free_port, listening

AIRFLOW = str(BIN / "airflow")
REDIS_SERVER = Path("/usr/bin/redis-server")
#: Each worker's slots: 3 + 3 for the pool's 4 shards, so each worker runs at least one and a slot
#: stays free for the rotation and the lifecycle while the shards run.
WORKER_CONCURRENCY = int(os.environ.get("PIONEER_E2E_WORKER_CONCURRENCY", "3"))


# -- Redis -----------------------------------------------------------------------------------------


class Redis:
    """A private ``redis-server``: its config and working dir in a temp dir, no RDB/AOF files."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.port = 0
        self.dir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, procs: Processes, env: dict[str, str]) -> None:
        if not REDIS_SERVER.exists():
            apt_install("redis-server", self.logs / "apt-get.log")
            if not REDIS_SERVER.exists():
                raise Failed(f"apt-get installed redis-server but {REDIS_SERVER} is missing")
        self.dir = Path(tempfile.mkdtemp(prefix="pioneer-e2e-redis-"))
        self.port = free_port()
        conf = self.dir / "redis.conf"
        conf.write_text(
            f'bind 127.0.0.1\nport {self.port}\nprotected-mode yes\ndir {self.dir}\nsave ""\n'
            'appendonly no\ndaemonize no\nlogfile ""\n'
        )
        procs.start("redis", [str(REDIS_SERVER), str(conf)], env)

        import redis

        deadline = time.monotonic() + 30
        while True:
            procs.check_alive()
            try:
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2).ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise Failed(f"redis-server did not answer PING in 30 s (see {self.logs / 'redis.log'})")
            time.sleep(0.2)

    def cleanup(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# -- S3 (moto) -------------------------------------------------------------------------------------


class S3:
    """moto's S3 server and one bucket; ``url(key)`` is an ``s3://<conn id>@bucket/key`` URL."""

    conn_id = "pioneer_e2e_s3"
    bucket = "pioneer-e2e"

    def __init__(self) -> None:
        self.port = 0
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connection(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            }
        )

    def url(self, key: str) -> str:
        # With the connection id: a bare s3://bucket/... would not use it (nor aws_default).
        return f"s3://{self.conn_id}@{self.bucket}/{key}"

    def start(self, procs: Processes, env: dict[str, str]) -> None:
        self.port = free_port()
        procs.start("moto-s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], env)
        deadline = time.monotonic() + 60
        while not listening(self.port):
            procs.check_alive()
            if time.monotonic() > deadline:
                raise Failed("moto_server did not listen in 60 s (see its log)")
            time.sleep(0.3)
        self.client().create_bucket(Bucket=self.bucket)

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
        return self._client

    def put(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.client().exceptions.NoSuchKey:
            return None

    def read_json(self, key: str) -> dict[str, Any] | None:
        data = self.get(key)
        try:
            return dict(json.loads(data)) if data else None
        except ValueError:
            return None

    def list(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def s3_checkpoint_records(s3: S3, key: str) -> int:
    """Records a shard has durably written so far: its manifest (``<out>.manifest.json``) says."""
    doc = s3.read_json(f"{key}.manifest.json") or {}
    try:
        return int(doc.get("records") or 0)
    except (TypeError, ValueError):
        return 0


def s3_read_outputs(s3: S3, prefix: str) -> tuple[Counter[str], int, list[str], list[str]]:
    """ids -> count over the published shard files, errors, their names, and anything else left there."""
    ids: Counter[str] = Counter()
    errors = 0
    keys = s3.list(prefix)
    files = sorted(k for k in keys if k.rsplit("/", 1)[-1].startswith("shard-") and k.endswith(".jsonl"))
    others = sorted(k for k in keys if k not in files)
    for key in files:
        for line in (s3.get(key) or b"").decode().splitlines():
            if line.strip():
                record = json.loads(line)
                ids[str(record["id"])] += 1
                errors += "error" in record
    return ids, errors, [k.rsplit("/", 1)[-1] for k in files], others


def s3_scan_for_keys(s3: S3, keys: list[str]) -> list[str]:
    needles = [k.encode() for k in keys if k]
    return [f"s3://{s3.bucket}/{k}" for k in s3.list() if any(n in (s3.get(k) or b"") for n in needles)]


# -- the workers -----------------------------------------------------------------------------------


@dataclass
class Worker:
    """One ``airflow celery worker``, alone in its UTS namespace with hostname ``host``."""

    name: str
    host: str
    proc: subprocess.Popen[bytes] | None = None
    runners: dict[str, int] = field(default_factory=dict)  # TI id -> task runner pid, at the fault

    @property
    def node(self) -> str:
        return f"{self.name}@{self.host}"


def start_worker(procs: Processes, env: dict[str, str], run_dir: Path, name: str, host: str) -> Worker:
    # As root unshare --uts is enough; otherwise a user namespace mapped to root grants it.
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    cmd = [
        "unshare", *userns, "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host,
        AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@{host}",
        "--concurrency", str(WORKER_CONCURRENCY), "--pid", str(run_dir / f"worker-{name}.pid"),
        "--skip-serve-logs",
    ]  # fmt: skip
    if shutil.which("unshare") is None:
        raise Failed("`unshare` (util-linux) is missing: the two workers need their own hostnames")
    worker = Worker(name, host)
    worker.proc = procs.start(f"worker-{name}", cmd, env)
    return worker


def worker_ready(logs: Path, worker: Worker) -> bool:
    """Celery logs ``<node> ready.`` once it consumes from the broker."""
    try:
        return f"{worker.node} ready" in (logs / f"worker-{worker.name}.log").read_text(errors="replace")
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (reaped by nobody yet) is dead for our purpose.
    with suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return False


def kill_worker(procs: Processes, worker: Worker, runners_too: bool) -> list[int]:
    """SIGKILL the worker's process group (celery's main process, its pool, the task supervisors).

    The task runners are in process groups of their own (the supervisor ``setpgid``\\ s them), so
    they outlive this unless ``runners_too``: then they get SIGKILL as well, as when a machine dies.
    Returns the runners still alive afterwards.
    """
    if worker.proc is not None:
        procs.kill(f"worker-{worker.name}")
        worker.proc = None
    if runners_too:
        for pid in worker.runners.values():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    return [pid for pid in worker.runners.values() if alive(pid)]
