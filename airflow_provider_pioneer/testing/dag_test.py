"""Run a DAG file with ``dag.test()`` against the emulator, in a throwaway Airflow home.

What the ``pioneer_airflow_home`` and ``pioneer_dag_test`` fixtures use (see ``pytest_plugin``).
Each run is a child process: Airflow reads its home, metadata DB and DAGs folder once per process
(at ``import airflow``), so a test process whose Airflow is already configured (a user's own
settings, a conftest) cannot be pointed at another home; the child also keeps one run's DAG state
out of the next.

    python -m airflow_provider_pioneer.testing.dag_test <spec.json>

is that child: it parses the DAG file, runs ``dag.test()`` and writes the run's states and XComs as
JSON to the spec's ``result`` path.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.server import PioneerEmulator

__all__ = ["AirflowHome", "DagTestError", "DagTestRun", "dagbag_class", "load_dag"]


class DagTestError(RuntimeError):
    """The DAG could not be run at all (not found, an import error, the child died or timed out)."""


def dagbag_class() -> Any:
    """``DagBag``: ``airflow.dag_processing.dagbag`` since Airflow 3.2, ``airflow.models.dagbag`` before."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined,unused-ignore]
    return DagBag


def load_dag(dag_id: str | None, dag_folder: str | os.PathLike[str]) -> Any:
    """Parse ``dag_folder`` (a folder or one file) and return ``dag_id`` (the only DAG when ``None``).

    :raises DagTestError: on any import error, or when the DAG is not there.
    """
    bag = dagbag_class()(dag_folder=str(dag_folder))
    if bag.import_errors:
        errors = "\n".join(f"{path}: {error}" for path, error in bag.import_errors.items())
        raise DagTestError(f"{dag_folder} has import errors:\n{errors}")
    if dag_id is None:
        if len(bag.dag_ids) != 1:
            raise DagTestError(
                f"{dag_folder} defines {sorted(bag.dag_ids)}: name the DAG to run (dag_id=...)"
            )
        dag_id = bag.dag_ids[0]
    # Not bag.get_dag(): for a DAG the files do not define it asks the metastore.
    dag = bag.dags.get(dag_id)
    if dag is None:
        raise DagTestError(f"DAG {dag_id!r} not found in {dag_folder}: it defines {sorted(bag.dag_ids)}")
    return dag


#: Settings the home must own, whatever the test process's environment says: Airflow would
#: otherwise migrate and run against the user's real metastore or DAGs folder.
_OWNED = (
    "AIRFLOW_HOME",
    "AIRFLOW_CONFIG",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__FERNET_KEY",
)


@dataclass
class DagTestRun:
    """What one ``dag.test()`` run left in the metastore.

    :param dag_id: the DAG.
    :param run_id: its run.
    :param state: the run's state (``"success"``, ``"failed"``).
    :param task_states: state per task, keyed ``task_id`` (``task_id[2]`` for a mapped task's index 2).
    :param xcoms: the XComs per task (same keys), ``{key: value}``; values JSON-decoded.
    :param log_path: the run's whole output (task logs included).
    """

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    xcoms: dict[str, dict[str, Any]] = field(repr=False)
    log_path: Path

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The XCom ``key`` of ``task_id`` (of its ``map_index``-th mapped instance if given)."""
        name = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        try:
            return self.xcoms[name][key]
        except KeyError:
            raise KeyError(
                f"no XCom {key!r} of {name} in run {self.run_id}: {self.xcoms.get(name, {})!r}"
            ) from None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of the run's output: for an assertion's message."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class AirflowHome:
    """A migrated Airflow home on SQLite with its own DAGs folder (``dags/``).

    :param path: the directory (created); ``airflow db migrate`` runs in it on :meth:`migrate`.
    """

    def __init__(self, path: Path) -> None:
        from cryptography.fernet import Fernet  # an Airflow dependency

        self.path = path
        self.dags_folder = path / "dags"
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self._runs = 0
        self._owned = {
            "AIRFLOW_HOME": str(path),
            "AIRFLOW_CONFIG": str(path / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{path / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # One key for migrate and every run: Variables and connections written by one decrypt in the next.
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        }

    @property
    def env(self) -> dict[str, str]:
        """The environment of a run: this process's as it is now (a test's ``monkeypatch.setenv``
        included), with the home's own settings in place of any of the same names."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(_OWNED)}
        return {**base, **self._owned}

    def migrate(self, timeout: float = 300.0) -> None:
        """``airflow db migrate``. :raises DagTestError: with the command's output when it fails."""
        log = self.path / "db-migrate.log"
        with log.open("w") as out:
            code = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise DagTestError(f"airflow db migrate failed (exit {code}); {log}:\n{tail}")

    def place(self, dag_file: Path) -> Path:
        """``dag_file`` as a file of the DAGs folder: ``dag.test()`` runs only DAGs parsed from there.

        A file outside it is reached through a link to its whole directory, so what the DAG finds
        beside itself (a ``data/`` folder, helper modules) is there too.
        """
        dag_file = dag_file.resolve()
        if not dag_file.is_file():
            raise DagTestError(f"DAG file {dag_file} does not exist")
        if dag_file.is_relative_to(self.dags_folder.resolve()):
            return dag_file
        parent = dag_file.parent
        link = self.dags_folder / f"{parent.name}-{hashlib.sha1(str(parent).encode()).hexdigest()[:8]}"
        if not link.exists():
            link.symlink_to(parent, target_is_directory=True)
        return link / dag_file.name

    def test_dag(
        self,
        dag_file: str | os.PathLike[str],
        dag_id: str | None = None,
        *,
        emulator: PioneerEmulator | None = None,
        conn_id: str = "pioneer_default",
        extra: Mapping[str, Any] | None = None,
        conf: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 600.0,
    ) -> DagTestRun:
        """Run ``dag_id`` of ``dag_file`` with ``dag.test()`` in a child process of this home.

        :param dag_file: the DAG's file; linked into the DAGs folder if it is elsewhere.
        :param dag_id: the DAG to run; ``None`` when the file defines exactly one.
        :param emulator: the connection ``conn_id`` points at it (its URL and bootstrap key).
        :param conn_id: the Pioneer connection the DAG uses.
        :param extra: the connection's extras (``{"timeout": 5}``...).
        :param conf: the run's ``conf`` (``params``).
        :param env: more environment for the run (your DAG's own knobs).
        :param timeout: seconds before the run is killed and :class:`DagTestError` raised.
        """
        placed = self.place(Path(dag_file))
        self._runs += 1
        stem = f"run-{self._runs}-{placed.stem}"
        result, log = self.path / f"{stem}.json", self.path / f"{stem}.log"
        spec = {"dag_file": str(placed), "dag_id": dag_id, "conf": dict(conf or {}), "result": str(result)}
        (self.path / f"{stem}.spec.json").write_text(json.dumps(spec))
        child_env = {**self.env, **(env or {})}
        if emulator is not None:
            connection: dict[str, Any] = {
                "conn_type": "pioneer",
                "host": emulator.url,
                "password": emulator.api_key,
            }
            if extra:
                connection["extra"] = dict(extra)
            child_env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(connection)
        with log.open("w") as out:
            try:
                code = subprocess.run(
                    [sys.executable, "-m", __name__, str(self.path / f"{stem}.spec.json")],
                    env=child_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                raise DagTestError(
                    f"the run of {placed} did not end within {timeout:.0f} s; see {log}"
                ) from None
        if not result.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise DagTestError(f"the run of {placed} ended (exit {code}) without a result; {log}:\n{tail}")
        # The provider's promise, checked where the suite's own leak guard cannot see: the run's
        # output is a file, not captured test output. Nothing of the log in this message.
        if emulator is not None and emulator.api_key in log.read_text(errors="replace"):
            raise DagTestError(f"the API key appeared in the run's output ({log}): report this as a bug")
        got = json.loads(result.read_text())
        if "error" in got:
            raise DagTestError(got["error"])
        return DagTestRun(log_path=log, **got)


def _collect(dag_run: Any) -> dict[str, Any]:
    """The run's task states and XComs, read back from the metastore."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def name(task_id: str, map_index: int) -> str:
        return task_id if map_index < 0 else f"{task_id}[{map_index}]"

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        xcoms: dict[str, dict[str, Any]] = {}
        for row in rows:
            xcoms.setdefault(name(row.task_id, row.map_index), {})[row.key] = XComModel.deserialize_value(row)
        return {
            "dag_id": dag_run.dag_id,
            "run_id": dag_run.run_id,
            "state": str(dag_run.state),
            "task_states": {name(ti.task_id, ti.map_index): str(ti.state) for ti in tis},
            "xcoms": xcoms,
        }


def _child(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = Path(spec["result"])
    try:
        dag = load_dag(spec["dag_id"], spec["dag_file"])
    except DagTestError as exc:
        result.write_text(json.dumps({"error": str(exc)}))
        return 1
    dag_run = dag.test(run_conf=spec["conf"] or None)
    result.write_text(json.dumps(_collect(dag_run), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
