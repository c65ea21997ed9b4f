"""Who writes an ``output_path``: the owner record and the lease renewed by a heartbeat.

See :mod:`airflow_provider_pioneer.batching.output` for the design (stale leases, the settle
wait on stores without an atomic create, a task that loses its lease).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_pioneer._compat import AirflowFailException
from airflow_provider_pioneer.batching.store import Store

__all__ = [
    "LEASE_HEARTBEAT_S",
    "LEASE_SETTLE_LOCAL_S",
    "LEASE_SETTLE_S",
    "LEASE_TTL_S",
    "Lease",
    "OutputConflictError",
    "Owner",
    "template_advice",
]

#: A lease whose heartbeat is older than this belongs to a task that died.
LEASE_TTL_S = 90.0
#: How often a running task renews its lease.
LEASE_HEARTBEAT_S = 10.0
#: Wait between writing a lease and reading it back: two tasks that start within this time of
#: each other on one path see the same last writer, and the other one fails. Local disks and
#: memory are written synchronously, so a shorter wait covers the gap between a read and a write.
LEASE_SETTLE_S = 1.0
LEASE_SETTLE_LOCAL_S = 0.2

log = logging.getLogger(__name__)


class OutputConflictError(AirflowFailException):
    """Another task instance writes (or wrote) this ``output_path``; nothing of its output was touched."""


@dataclass(frozen=True)
class Owner:
    """The task instance (and process) writing an output.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param run_id: the DAG run.
    :param map_index: the mapped task's index (-1 when not mapped).
    :param try_number: the attempt.
    """

    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Owner:
        """The running task instance, from the task's context."""
        ti = context.get("ti")

        def attr(name: str) -> Any:
            value = getattr(ti, name, None)
            return value if isinstance(value, str | int) else None

        return cls(attr("dag_id"), attr("task_id"), attr("run_id"), attr("map_index"), attr("try_number"))

    def same_task(self, doc: Mapping[str, Any]) -> bool:
        """Same dag, task and map index (any run)."""
        return all(doc.get(k) == getattr(self, k) for k in ("dag_id", "task_id", "map_index"))

    def same_task_instance(self, doc: Mapping[str, Any]) -> bool:
        """Same task instance (any try): a retry, or a task restarted after its worker died."""
        return self.same_task(doc) and doc.get("run_id") == self.run_id

    @staticmethod
    def describe(doc: Mapping[str, Any]) -> str:
        """``dag_id=..., task_id=..., ...`` of an owner record (for messages)."""
        keys = ("dag_id", "task_id", "run_id", "map_index", "try_number", "host", "pid")
        return ", ".join(f"{k}={doc.get(k)!r}" for k in keys if doc.get(k) is not None) or "an unknown task"


def template_advice(path: Any) -> str:
    """How to give every task its own ``output_path`` (for conflict messages)."""
    return (
        "Give every task its own output_path: template it with {{ ti.map_index }} for mapped tasks "
        f"and {{{{ run_id }}}} (or {{{{ ds }}}}) for runs that may overlap. The output is {path}."
    )


def _process_gone(doc: Mapping[str, Any]) -> bool:
    """The lease's process ran on this host and is gone (killed): no need to wait for the TTL."""
    pid = doc.get("pid")
    if doc.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (owned by another user)
    return False


class Lease:
    """Who writes an output, renewed by a heartbeat thread; see the module docstring.

    :param store: the store of the output.
    :param path: the lease object (``<output_path>.lease.json``).
    :param owner: the task instance taking it.
    :param output: the output path (for messages).
    """

    def __init__(self, store: Store, path: str, owner: Owner, output: Any) -> None:
        self.store = store
        self.path = path
        self.owner = owner
        self.output = output
        self.token = uuid.uuid4().hex
        self.lost = False
        self.taker: dict[str, Any] | None = None  # the lease as found once lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _doc(self) -> dict[str, Any]:
        return {**asdict(self.owner), "token": self.token, "heartbeat": time.time()}

    def _refuse_if_foreign(self, doc: dict[str, Any] | None) -> None:
        if not doc or doc.get("token") == self.token or self.owner.same_task_instance(doc):
            return
        beat = doc.get("heartbeat")
        if not isinstance(beat, int | float) or isinstance(beat, bool) or not math.isfinite(beat):
            # Not a time, so not a lease this provider wrote (tampered, or another tool's file): it
            # proves no live owner. Refusing would block the path for good; the settle wait in
            # acquire() still tells two live tasks apart.
            log.warning("The lease %s holds no heartbeat time (%r): taking it over.", self.path, beat)
            return
        age = time.time() - float(beat)
        if age > LEASE_TTL_S or _process_gone(doc):
            return  # its task died without releasing it
        when = f"{max(age, 0):.0f} s ago" if age >= -LEASE_TTL_S else (
            f"{-age:.0f} s in the future: that host's clock is ahead of this one's; keep the workers' "
            "clocks in step (NTP)"
        )  # fmt: skip
        raise OutputConflictError(
            f"Another task is writing this output_path right now ({Owner.describe(doc)}; "
            f"heartbeat {when}). Refusing to start so its output stays intact. "
            f"{template_advice(self.output)}"
        )

    def acquire(self) -> None:
        """Take the lease, or raise :class:`OutputConflictError` naming its live owner."""
        self._refuse_if_foreign(self.store.read_json(self.path))
        self.store.write(self.path, json.dumps(self._doc()).encode())
        time.sleep(LEASE_SETTLE_LOCAL_S if self.store.cheap_writes else LEASE_SETTLE_S)
        doc = self.store.read_json(self.path)
        if not doc or doc.get("token") != self.token:
            # Someone wrote after us: the last writer keeps it (if it is a live other task).
            self._refuse_if_foreign(doc)
            self.store.write(self.path, json.dumps(self._doc()).encode())
        self._thread = threading.Thread(target=self._beat, name="pioneer-output-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_HEARTBEAT_S):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.check()
                    self.store.write(self.path, json.dumps(self._doc()).encode())
                except OutputConflictError:
                    return
                except Exception:  # a failed renewal is retried at the next beat
                    continue

    def check(self) -> None:
        """Raise :class:`OutputConflictError` if another task took the lease over."""
        if not self.lost:
            doc = self.store.read_json(self.path)
            if doc is not None and doc.get("token") == self.token:
                return
            self.lost = True
            self.taker = doc
        raise OutputConflictError(
            f"Another task took over this output_path ({Owner.describe(self.taker or {})}) "
            f"while this one was writing it; this task stopped writing. {template_advice(self.output)}"
        )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * 60)
        with self._lock:
            if not self.lost:
                doc = self.store.read_json(self.path)
                if doc is not None and doc.get("token") == self.token:
                    self.store.remove(self.path)
