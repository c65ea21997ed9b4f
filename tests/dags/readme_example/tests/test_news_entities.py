from pathlib import Path

DAG_FILE = Path(__file__).parents[1] / "dags" / "news_entities.py"


def test_news_entities(pioneer_dag_test, pioneer_emulator):
    pioneer_emulator.inject(status=503, times=1)  # one outage, which the hook retries
    run = pioneer_dag_test(DAG_FILE, "news_entities")  # dag.test() in a migrated Airflow home
    assert run.state == "success", run.log_tail()
    summary = run.xcom("extract", key="pioneer_summary")
    assert summary["succeeded"] == summary["total"] == 2
    assert summary["retries"] == 1
    records = run.xcom("extract")  # no output_path: the records are the return value
    assert records[0]["result"]["entities"]["person"][0]["text"] == "Ada Lovelace"
