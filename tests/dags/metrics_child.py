"""Run DAGs with Airflow's metrics backend set up as a task process sets it up, from ``[metrics]``.

    python -m tests.dags.metrics_child '<json: [[dag_id, run_conf], ...]>'

Run with the suite's environment plus ``AIRFLOW__METRICS__*`` (and the connection). A separate
process because Airflow picks its metrics backend once per process. Exits non-zero if a run fails.
"""

from __future__ import annotations

import json
import sys


def main(raw: str) -> int:
    from tests.dags.support import load_dag

    try:
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability import stats
        from airflow.sdk.observability.metrics import stats_utils
    except ImportError:  # Airflow 3.1: airflow.stats.Stats picks its backend from [metrics] itself
        pass
    else:
        # What airflow.sdk.execution_time.task_runner.main() does before it runs a task.
        stats.initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
        )
    for dag_id, run_conf in json.loads(raw):
        run = load_dag(dag_id).test(run_conf=run_conf)
        print(json.dumps({"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state)}), flush=True)
        if str(run.state) != "success":
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
