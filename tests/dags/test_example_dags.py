"""The shipped example DAGs: every file parses cleanly, and both DAGs run end to end against the emulator.

The end-to-end test is the demo's story through dag.test() on SQLite: the rotation replaces the
emulator's bootstrap key, then the sharded batch DAG runs on the rotated key (the connection's
own key is revoked by then). Entity counts are checked against the emulator's extractor called
directly, text by text, so the test fails if a shard, a record or a label goes missing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_pioneer.testing import PioneerEmulator
from tests.airflow_compat import as_scheduler_sees_it
from tests.dags.support import load_dag

pytestmark = pytest.mark.dags

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "example_dags"
SAMPLE = EXAMPLES / "data" / "news_sample.jsonl"
VARIABLE = "pioneer_api_key"
BATCH, ROTATION, REPORT = "pioneer_batch_inference", "pioneer_key_rotation", "pioneer_entity_report"


def _set_variable(value: str | None) -> None:
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(VariableModel).filter_by(key=VARIABLE).delete()
        if value is not None:
            session.add(VariableModel(key=VARIABLE, val=value))


def _stored_key() -> str:
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(VariableModel).filter_by(key=VARIABLE).one()
        return str(json.loads(row.val)["api_key"])


def _task_states(dag_run: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in tis}


def _rendered_map_indexes(dag_run: Any) -> dict[int, str | None]:
    """The mapped inference shards' names as the UI shows them (``rendered_map_index``)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="extract_entities"
        )
        return {ti.map_index: ti.rendered_map_index for ti in tis}


def _return_value(dag_id: str, run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value", map_index=-1)
            .one()
        )
        return XComModel.deserialize_value(row)


def _stored_run_text(dag_id: str, run_id: str) -> str:
    """Every XCom and rendered template field the metadata DB keeps of the run, as one text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run_id).all()
        return json.dumps(
            {"xcoms": [x.value for x in xcoms], "rendered": [r.rendered_fields for r in rendered]},
            default=str,
        )


def _asset_events(name: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == name)
            .all()
        )
        return [dict(e.extra or {}) for e in events]


# -- parsing ------------------------------------------------------------------------------------------


def test_every_example_file_parses_without_dagbag_errors(airflow_db: Path) -> None:
    from tests.airflow_compat import dagbag_class

    bag = dagbag_class()(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    files = sorted(p.resolve() for p in EXAMPLES.glob("*.py"))
    assert files, "example_dags/ holds no DAG file"
    files_with_dags = {Path(dag.fileloc).resolve() for dag in bag.dags.values()}
    assert [f.name for f in files if f not in files_with_dags] == [], "a file in example_dags/ defines no DAG"
    assert {BATCH, ROTATION, REPORT} <= set(bag.dag_ids)


def test_rotation_dag_carries_the_safety_settings(airflow_db: Path) -> None:
    dag = load_dag(ROTATION)
    assert as_scheduler_sees_it(dag).timetable.summary == "0 3 * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    rotate = dag.get_task("rotate_api_key")
    assert type(rotate).__name__ == "PioneerKeyRotationOperator"
    assert rotate.max_active_tis_per_dag == 1
    assert rotate.retries >= 1, "each rotation step is idempotent, so Airflow retries are safe and wanted"
    assert rotate.variable_key == VARIABLE
    assert rotate.revoke_old is True


def test_batch_dag_shards_with_mapping_and_publishes_an_asset(airflow_db: Path) -> None:
    dag = load_dag(BATCH)
    extract = dag.get_task("extract_entities")
    assert type(extract).__name__ == "MappedOperator"
    assert extract.operator_class.__name__ == "PioneerInferenceOperator"
    # Shards pace themselves against the account's limit (adaptive): no hand-divided ceiling.
    # The pool bounds how many run at once: the DAG never holds a shard back (8 shards on 8 free
    # slots ran in two waves under a fixed max_active_tis_per_dag of 4).
    assert (
        extract.partial_kwargs["max_active_tis_per_dag"] >= dag.params.get_param("shards").schema["maximum"]
    )
    assert extract.partial_kwargs.get("requests_per_minute") is None
    outlets = dag.get_task("aggregate_entities").outlets
    assert [o.name for o in outlets] == ["pioneer_news_entities"]
    # The downstream DAG is scheduled on that very asset (name and URI: a mere name ref gets
    # its runs started but without their triggering events in Airflow 3.3).
    assert load_dag(REPORT).schedule == outlets[0]


def test_batch_dag_sends_full_batches_of_the_operator_default(airflow_db: Path) -> None:
    import inspect

    from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

    extract = load_dag(BATCH).get_task("extract_entities")
    default = inspect.signature(PioneerInferenceOperator.__init__).parameters["batch_size"].default
    # 32 texts a request doubled the requests a run needs and halved its re-send bound's batches.
    assert extract.partial_kwargs.get("batch_size", default) == default == 64


@pytest.mark.parametrize("dag_id", [BATCH, ROTATION])
@pytest.mark.parametrize("after_tick", [timedelta(minutes=1), timedelta(hours=2), timedelta(hours=12)])
def test_unpausing_a_scheduled_example_starts_no_run_for_a_past_tick(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, dag_id: str, after_tick: timedelta
) -> None:
    """What the scheduler computes for a DAG that never ran, unpaused at any time of day: its first
    run must lie in the future.

    With a start_date in the past, catchup=False still yields the last past tick, so unpausing the
    DAG started a run at once (an extra batch run, an unplanned key rotation). Without a start_date
    a plain cron string still yields the past tick within a tenth of the interval after it (2.4 h
    for a daily DAG): CI met that at 00:03 UTC. The clock is set, so every case runs every time.
    """
    import airflow.timetables.trigger as trigger
    from airflow.timetables.base import TimeRestriction

    dag = as_scheduler_sees_it(load_dag(dag_id))
    assert dag.catchup is False
    timetable = dag.timetable
    tick = timetable._align_to_prev(datetime(2026, 11, 27, 12, 30, tzinfo=UTC))  # a tick of its own cron
    now = tick + after_tick
    monkeypatch.setattr(trigger, "utcnow", lambda: now)
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup),
    )
    assert first is not None
    assert first.run_after > now, f"unpausing at {now:%H:%M} UTC would start the run of {first.run_after}"


def test_batch_dag_without_its_input_fails_with_a_clear_message(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A DAG file copied without its data/ folder: split_input says what to do, no traceback soup."""
    # Only the input moves: the output root (and so the asset's URI) is fixed for the session.
    monkeypatch.setenv("PIONEER_EXAMPLE_INPUT", str(tmp_path / "data" / "news_sample.jsonl"))
    dag_run = load_dag(BATCH).test()
    assert str(dag_run.state) == "failed"
    states = _task_states(dag_run)
    assert states["split_input[-1]"] == "failed"
    out = capfd.readouterr()
    assert "does not exist: set PIONEER_EXAMPLE_INPUT" in out.out + out.err
    assert "copy example_dags/data/ beside the DAG file" in out.out + out.err


# -- end to end ---------------------------------------------------------------------------------------


@pytest.fixture
def demo_setup(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PioneerEmulator, Path]]:
    """The demo's wiring: emulator, pioneer_default with key_name + key_variable, no Variable yet."""
    with PioneerEmulator(latency_ms=2) as emu:
        connection = {
            "conn_type": "pioneer",
            "host": emu.url,
            "password": emu.api_key,
            "extra": {"key_name": emu.api_key_name, "key_variable": VARIABLE},
        }
        monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(connection))
        # The output root is fixed for the whole session (tests/conftest.py): start it empty.
        out = Path(os.environ["PIONEER_EXAMPLE_OUTPUT"])
        shutil.rmtree(out, ignore_errors=True)
        monkeypatch.setenv("PIONEER_EXAMPLE_INPUT", str(SAMPLE))
        _set_variable(None)
        try:
            yield emu, out
        finally:
            _set_variable(None)


def test_rotation_then_sharded_batch_on_the_rotated_key(
    demo_setup: tuple[PioneerEmulator, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    emu, out = demo_setup
    bootstrap_key = emu.api_key

    rotation_run = load_dag(ROTATION).test()
    assert set(_task_states(rotation_run).values()) == {"success"}, _task_states(rotation_run)
    rotated = _return_value(ROTATION, rotation_run.run_id, "rotate_api_key")
    assert rotated["name"].startswith("airflow-pioneer_api_key-")
    assert rotated["revoked"] == ["bootstrap"]
    assert emu.alive_key_names() == [rotated["name"]]
    assert not emu.key_is_alive(bootstrap_key)
    checked = _return_value(ROTATION, rotation_run.run_id, "check_connection")
    assert checked["key_name"] == rotated["name"]
    new_key = _stored_key()
    assert emu.key_is_alive(new_key)

    emu.reset_counters()
    batch_run = load_dag(BATCH).test(run_conf={"shards": 3})
    states = _task_states(batch_run)
    assert states == {
        "split_input[-1]": "success",
        "extract_entities[0]": "success",
        "extract_entities[1]": "success",
        "extract_entities[2]": "success",
        "aggregate_entities[-1]": "success",
    }
    # Each shard is named in the UI by its label (map_index_template), rendered from the plan.
    n_inputs = sum(1 for line in SAMPLE.read_text().splitlines() if line.strip())
    per_shard = -(-n_inputs // 3)
    sizes = [per_shard, per_shard, n_inputs - 2 * per_shard]
    assert _rendered_map_indexes(batch_run) == {
        i: f"shard {i} · {size:,} texts" for i, size in enumerate(sizes)
    }
    # Only the rotated key was used: the connection's password is revoked, so a 401 would show it.
    assert "401" not in emu.counters()["statuses"]

    inputs = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    summary = _return_value(BATCH, batch_run.run_id, "aggregate_entities")
    assert summary["items"] == summary["succeeded"] == len(inputs)
    assert summary["failed"] == 0
    assert summary["shards"] == 3

    # Independent oracle: the emulator's extractor called text by text with the DAG's labels.
    labels = list(summary["entities_per_label"])
    expected: Counter[str] = Counter()
    for record in inputs:
        for label, found in emu.extract(record["text"], labels, threshold=0.5)["entities"].items():
            expected[label] += len(found)
    assert summary["entities_per_label"] == {label: expected[label] for label in labels}
    assert all(expected[label] > 0 for label in labels), f"the sample should hit every label: {expected}"

    # The shard files together hold every input once, in input order.
    entities_dir = Path(summary["output_path"].removeprefix("file://"))
    assert entities_dir.is_relative_to(out)
    written = [
        json.loads(line)["id"]
        for shard in sorted(entities_dir.glob("shard-*.jsonl"))
        for line in shard.read_text().splitlines()
    ]
    assert written == [record["id"] for record in inputs]

    events = _asset_events("pioneer_news_entities")
    assert {"output_path": summary["output_path"], "items": len(inputs), "failed": 0} in events

    # The asset-triggered report reads the directory the event names (called directly: dag.test()
    # has no scheduler to turn the event into a run).
    asset = load_dag(BATCH).get_task("aggregate_entities").outlets[0]
    event = SimpleNamespace(extra={"output_path": summary["output_path"], "items": len(inputs)})
    # Keyed by the asset's name: Airflow 3.1's Asset is unhashable, and the report reads only the values.
    report = (
        load_dag(REPORT)
        .get_task("top_entities")
        .python_callable(triggering_asset_events={asset.name: [event]})
    )
    organizations: Counter[str] = Counter()
    for shard in sorted(entities_dir.glob("shard-*.jsonl")):
        for line in shard.read_text().splitlines():
            organizations.update(e["text"] for e in json.loads(line)["result"]["entities"]["organization"])
    assert report["organization"] == dict(organizations.most_common(5))
    assert len(report["person"]) == 5

    # No key in anything kept of either run, nor in what the runs printed.
    captured = capfd.readouterr()
    kept = _stored_run_text(ROTATION, rotation_run.run_id) + _stored_run_text(BATCH, batch_run.run_id)
    for secret in (bootstrap_key, new_key):
        assert secret not in kept
        assert secret not in captured.out + captured.err
