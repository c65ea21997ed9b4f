"""pytest plugin (entry point ``pioneer_emulator``): the ``pioneer_emulator`` fixtures, and
``pioneer_dag_test`` to run a DAG file with ``dag.test()`` against the emulator.

Kept import-light: it is loaded into every pytest run of an environment where the
provider is installed, so the server machinery is imported only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.dag_test import AirflowHome, DagTestRun
    from airflow_provider_pioneer.testing.server import PioneerEmulator


@pytest.fixture
def pioneer_emulator() -> Iterator[PioneerEmulator]:
    """A running Pioneer emulator speaking today's API (profile ``current``) with default settings
    on a free loopback port, stopped afterwards."""
    from airflow_provider_pioneer.testing.server import PioneerEmulator

    with PioneerEmulator() as emulator:
        yield emulator


@pytest.fixture
def pioneer_emulator_legacy() -> Iterator[PioneerEmulator]:
    """Like ``pioneer_emulator``, speaking the June 2026 API (profile ``legacy``: 1,200 rpm per key,
    ``detail`` strings, the 429 daily spend cap, ``X-API-Key`` only)."""
    from airflow_provider_pioneer.testing.server import PioneerEmulator

    with PioneerEmulator(api_profile="legacy") as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pioneer_airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """A migrated Airflow home on SQLite, with its own DAGs folder (``.dags_folder``), for the session.

    Your environment's ``AIRFLOW_HOME``, config file, ``sql_alchemy_conn``, DAGs folder and Fernet
    key are not used: the runs never touch a real metastore. Override this fixture to share a home
    your suite already has.
    """
    from airflow_provider_pioneer.testing.dag_test import AirflowHome

    home = AirflowHome(tmp_path_factory.mktemp("pioneer-airflow-home"))
    home.migrate()
    return home


@pytest.fixture
def pioneer_dag_test(
    pioneer_airflow_home: AirflowHome, pioneer_emulator: PioneerEmulator
) -> Callable[..., DagTestRun]:
    """``pioneer_dag_test(dag_file, dag_id=None, *, conf=None, env=None, ...)``: ``dag.test()`` of
    that DAG in :func:`pioneer_airflow_home`, with ``pioneer_default`` pointed at this test's
    ``pioneer_emulator``; returns a :class:`~airflow_provider_pioneer.testing.dag_test.DagTestRun`
    (``state``, ``task_states``, ``xcom(task_id, key)``, ``log_tail()``). Every keyword of
    :meth:`AirflowHome.test_dag <airflow_provider_pioneer.testing.dag_test.AirflowHome.test_dag>` works."""

    def run(dag_file: Any, dag_id: str | None = None, **kwargs: Any) -> DagTestRun:
        kwargs.setdefault("emulator", pioneer_emulator)
        return pioneer_airflow_home.test_dag(dag_file, dag_id, **kwargs)

    return run
