"""Two DAGs that rotate the same Variable, run at once in two processes by the race test.

tests/dags/test_rotation_dags.py runs each with tests/rotation_race.py, which holds every
``rotate_i`` task at its start until the test releases it, at a start time a chosen gap after the
other DAG's ``rotate_i``: two rotations of one Variable at once, which DAG settings such as
``max_active_tis_per_dag`` cannot prevent (two DAGs, or ``airflow tasks test`` during the nightly
run). ``next_i`` in ``pioneer_test_rotation_race_a`` is "the next night" after round ``i``: nothing
runs beside it, so it sweeps orphans at once. All tasks run whatever the one before ended with.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator

#: Rounds of the race (the test gives each round its own start gap).
ROUNDS = 7

for dag_id, with_next in (("pioneer_test_rotation_race_a", True), ("pioneer_test_rotation_race_b", False)):
    with DAG(dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False, tags=["test"]):
        previous = None
        for i in range(ROUNDS):
            tasks = [
                PioneerKeyRotationOperator(
                    task_id=f"rotate_{i}",
                    # A run of the race takes about a second: well within half of this.
                    orphan_grace_period=30.0,
                    # The race rotates a few dozen times within the hour: the default (10) would refuse.
                    max_keys_created_per_hour=50,
                    trigger_rule="all_done",
                )
            ]
            if with_next:
                tasks.append(
                    PioneerKeyRotationOperator(
                        task_id=f"next_{i}",
                        orphan_grace_period=0,
                        max_keys_created_per_hour=50,
                        trigger_rule="all_done",
                    )
                )
            for task in tasks:
                if previous is not None:
                    previous >> task
                previous = task
        # A last task that does nothing: on Airflow 3.1.2, dag.test() returned while the DAG's final
        # task was still running (its result was never written); here the last rotation is never last.
        previous >> EmptyOperator(task_id="end", trigger_rule="all_done")
