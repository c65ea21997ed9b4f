"""The Pioneer view's data layer on the suite's real (SQLite) metadata DB: aggregation, permission
filtering, the rotation status and its warnings, and that no key ever reaches the page or the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer.ui.data import collect
from airflow_provider_pioneer.ui.page import render_page
from airflow_provider_pioneer.ui.runs import clear_caches
from tests.dags.conftest import airflow_db  # noqa: F401  (the session's migrated DB)
from tests.ui_seed import (
    LifecycleTask,
    Shard,
    clear,
    seed_dags,
    seed_lifecycle,
    seed_rotation,
    seed_runs,
    set_variable,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAGS = ["view_dag_a", "view_dag_b", "view_rotation"]
SECRET = "pio_sk_view_test_0123456789abcdef"
VARIABLE = "pioneer_view_api_key"


@pytest.fixture
def session(airflow_db: object) -> Iterator[object]:  # noqa: F811
    from airflow.utils.session import create_session

    with create_session() as s:
        clear(s, DAGS)
        # Each test seeds anew: nothing one test's view kept (ui/runs.py's caches) serves the next.
        clear_caches()
        yield s
        clear(s, DAGS)
        from airflow.models.variable import Variable

        s.query(Variable).filter(Variable.key == VARIABLE).delete()


def _seed_two_dags(session: object) -> None:
    day1, day2 = NOW - timedelta(days=1), NOW - timedelta(days=3)
    seed_runs(
        session,
        [
            Shard(
                "view_dag_a",
                "run_new",
                map_index=i,
                ended=day1,
                total=10,
                succeeded=9,
                failed=1,
                tokens=300,
                label=f"shard {i} · 10 texts",
            )
            for i in range(3)
        ]
        + [Shard("view_dag_a", "run_old", ended=day2, total=50, succeeded=50, failed=0, tokens=2000)]
        + [
            Shard(
                "view_dag_b", "run_b", ended=day1, total=7, succeeded=7, failed=0, tokens=70, output_path=None
            )
        ],
    )


#: What the lifecycle tasks returned: none of it may reach a user who may not read XComs.
LIFECYCLE_VALUES = ("job-ok-1", "job-running-2", "ner-v2", "0.8731", "0.6512", "support-tickets", "ds-9")


def _seed_lifecycle(session: object, when: datetime) -> None:
    """A training job done and one still running, a gate passed and one failed, a dataset (view_dag_a)."""
    seed_lifecycle(
        session,
        "view_dag_a",
        "run_train",
        when,
        [
            LifecycleTask("upload", "PioneerDatasetUploadOperator", "success", value={
                "dataset_name": "support-tickets", "version": "3", "dataset_id": "ds-9", "size": 1200,
                "labels": ["person", "org"], "status": "ready"}),
            LifecycleTask("train", "PioneerTrainingJobOperator", "success", value={
                "job_id": "job-ok-1", "status": "completed", "model_name": "ner-v2",
                "metrics": {"f1": 0.91, "loss": 0.12}}),
            LifecycleTask("evaluate", "PioneerEvaluationOperator", "success", value={
                "evaluation_id": "ev-1", "model": "job-ok-1", "dataset_name": "support-tickets",
                "f1": 0.8731, "precision": 0.9, "recall": 0.85, "passed": True, "min_f1": 0.8}),
            # A failed gate returns nothing: its scores are the pioneer_evaluation XCom.
            LifecycleTask("evaluate_strict", "PioneerEvaluationOperator", "failed", key="pioneer_evaluation",
                          value={"evaluation_id": "ev-2", "model": "job-ok-1", "dataset_name": "support-tickets",
                                 "f1": 0.6512, "precision": 0.7, "recall": 0.61, "passed": False, "min_f1": 0.75}),
        ],
    )  # fmt: skip
    seed_lifecycle(
        session,
        "view_dag_a",
        "run_train_2",
        when + timedelta(hours=1),
        # Still waiting for its job (deferred): no return value; the job id is in its task record.
        [LifecycleTask("train", "PioneerTrainingJobOperator", "deferred",
                       record={"pioneer_training.job_id": "job-running-2"})],
    )  # fmt: skip


def _assert_lifecycle_shown(data: dict[str, Any], html: str) -> None:
    jobs = {(j["run_id"], j["task_id"]): j for j in data["training_jobs"]}
    done, running = jobs[("run_train", "train")], jobs[("run_train_2", "train")]
    assert (done["job_id"], done["job_status"], done["model_name"]) == ("job-ok-1", "completed", "ner-v2")
    assert done["metrics"] == {"f1": 0.91, "loss": 0.12} and done["state"] == "success"
    assert running["state"] == "deferred" and running["job_status"] is None
    if _has_task_state_store():
        assert running["job_id"] == "job-running-2"
    # Newest run first.
    assert [j["run_id"] for j in data["training_jobs"]] == ["run_train_2", "run_train"]
    scores = {e["task_id"]: e for e in data["evaluations"]}
    assert (scores["evaluate"]["f1"], scores["evaluate"]["verdict"], scores["evaluate"]["min_f1"]) == (
        0.8731,
        "passed",
        0.8,
    )
    assert (scores["evaluate_strict"]["f1"], scores["evaluate_strict"]["verdict"]) == (0.6512, "below min_f1")
    assert scores["evaluate_strict"]["state"] == "failed"
    (dataset,) = data["datasets"]
    assert (dataset["dataset_name"], dataset["version"], dataset["size"], dataset["status"]) == (
        "support-tickets",
        "3",
        1200,
        "ready",
    )
    assert dataset["labels"] == ["person", "org"]
    for shown in ("job-ok-1", "completed", "running (task deferred)", "0.8731", "passed (F1 ≥ 0.8)",
                  "0.6512", "below min_f1 (F1 &lt; 0.75)", "support-tickets", "1,200", "person, org"):  # fmt: skip
        assert shown in html, shown


def _has_task_state_store() -> bool:
    try:
        import airflow.models.task_state_store  # noqa: F401
    except ImportError:
        return False
    return True


def test_lifecycle_shows_job_state_f1_verdict_and_datasets(session: object) -> None:
    _seed_lifecycle(session, NOW - timedelta(hours=2))
    view = collect(session, dag_ids=DAGS, now=NOW, ui_root="/af")
    data = view.as_dict()
    _assert_lifecycle_shown(data, render_page(view, json_url="/j"))
    # Lifecycle tasks are not inference runs, and each table reads one page at most.
    assert data["runs"] == [] and data["total_runs"] == 0
    assert [
        j["run_id"] for j in collect(session, dag_ids=DAGS, now=NOW, page_size=1).as_dict()["training_jobs"]
    ] == ["run_train_2"]
    assert data["evaluations"][0]["log_url"].startswith("/af/dags/view_dag_a/runs/run_train/tasks/evaluate")
    # Without XCom access: the rows (task states), none of what the tasks returned.
    hidden = collect(session, dag_ids=DAGS, now=NOW, can_read_dag_entity=lambda entity, dag: entity != "XCOM")
    html = render_page(hidden, json_url="/j")
    for body in (html, json.dumps(hidden.as_dict())):
        assert not [v for v in LIFECYCLE_VALUES if v in body]
    assert all(row.details_hidden for row in [*hidden.training_jobs, *hidden.evaluations, *hidden.datasets])
    assert len(hidden.evaluations) == 2 and "hidden: no permission" in html


def test_runs_and_daily_totals_aggregate_the_summaries(session: object) -> None:
    _seed_two_dags(session)
    data = collect(session, dag_ids=DAGS, now=NOW, ui_root="/af")
    assert data.total_runs == 5
    # Newest DAG run first, shards in map-index order, their labels from map_index_template.
    first = data.runs[0]
    assert (first.dag_id, first.run_id, first.map_index, first.label) in {
        ("view_dag_a", "run_new", 0, "shard 0 · 10 texts"),
        ("view_dag_b", "run_b", -1, None),
    }
    shard = next(r for r in data.runs if r.run_id == "run_new" and r.map_index == 2)
    assert (shard.texts, shard.succeeded, shard.failed, shard.tokens, shard.rate_limited) == (
        10,
        9,
        1,
        300,
        1,
    )
    assert shard.duration_s == 10.0 and shard.texts_per_s == 1.0
    assert shard.output_path == "file:///data/out.jsonl"
    assert shard.log_url == "/af/dags/view_dag_a/runs/run_new/tasks/infer/mapped/2"
    by_day = {d.day: (d.texts, d.tokens) for d in data.daily}
    assert len(data.daily) == 30
    assert by_day[(NOW - timedelta(days=1)).date().isoformat()] == (3 * 10 + 7, 3 * 300 + 70)
    assert by_day[(NOW - timedelta(days=3)).date().isoformat()] == (50, 2000)
    assert sum(t for t, _ in by_day.values()) == 87


def test_only_the_dags_the_user_may_read(session: object) -> None:
    _seed_two_dags(session)
    data = collect(session, dag_ids=["view_dag_b"], now=NOW)
    assert {r.dag_id for r in data.runs} == {"view_dag_b"}
    assert data.total_runs == 1
    assert sum(d.texts for d in data.daily) == 7
    html = render_page(data, json_url="/pioneer/api/view")
    assert "view_dag_a" not in html and "run_new" not in html
    nothing = collect(session, dag_ids=[], now=NOW)
    assert nothing.runs == [] and nothing.total_runs == 0 and nothing.rotations == []


def test_pagination_limits_the_rows(session: object) -> None:
    seed_runs(
        session, [Shard("view_dag_a", f"run_{i:02d}", ended=NOW - timedelta(hours=i)) for i in range(12)]
    )
    page2 = collect(session, dag_ids=DAGS, now=NOW, page=2, page_size=5)
    assert page2.total_runs == 12
    assert [r.run_id for r in page2.runs] == [f"run_{i:02d}" for i in range(5, 10)]
    assert "Page 2 of 3" in render_page(page2, json_url="/j")


def test_rotation_status_names_the_variable_and_key_never_the_key(session: object) -> None:
    created = NOW - timedelta(days=2)
    set_variable(
        session,
        VARIABLE,
        {
            "api_key": SECRET,
            "name": "airflow-pioneer-20261124",
            "created_at": created.isoformat(),
            "pending_revoke": ["airflow-pioneer-old", "airflow-pioneer-older"],
        },
    )
    seed_rotation(
        session,
        dag_id="view_rotation",
        run_id="rot_1",
        state="success",
        ended=created,
        variable=VARIABLE,
        # It revoked one of the two names it stored as pending; the other stays pending.
        returned={
            "name": "airflow-pioneer-20261124",
            "created_at": created.isoformat(),
            "revoked": ["airflow-pioneer-older"],
        },
    )
    seed_dags(session, ["view_rotation"], next_run=NOW + timedelta(hours=20))
    data = collect(session, dag_ids=DAGS, now=NOW, key_max_age_days=30)
    (status,) = data.rotations
    assert status.next_run_after == (NOW + timedelta(hours=20)).isoformat() and status.paused is False
    assert status.variable == VARIABLE
    assert status.key_name == "airflow-pioneer-20261124"
    assert status.key_age_days == 2.0
    assert status.pending_revoke == ["airflow-pioneer-old"]
    assert (status.last_run_id, status.last_state, status.warnings) == ("rot_1", "success", [])
    html = render_page(data, json_url="/j")
    as_json = json.dumps(data.as_dict())
    for text in (html, as_json):
        assert VARIABLE in text and "airflow-pioneer-20261124" in text
        assert SECRET not in text and SECRET[:16] not in text


def test_rotation_warns_on_an_old_key_and_a_failed_run(session: object) -> None:
    created = NOW - timedelta(days=45)
    set_variable(
        session,
        VARIABLE,
        {"api_key": SECRET, "name": "airflow-pioneer-old1", "created_at": created.isoformat()},
    )
    seed_rotation(
        session,
        dag_id="view_rotation",
        run_id="rot_ok",
        state="success",
        ended=created,
        variable=VARIABLE,
        returned={"name": "airflow-pioneer-old1", "created_at": created.isoformat(), "revoked": []},
    )
    seed_rotation(
        session,
        dag_id="view_rotation",
        run_id="rot_failed",
        state="failed",
        ended=NOW - timedelta(days=1),
        variable=VARIABLE,
        returned=None,
    )
    (status,) = collect(session, dag_ids=DAGS, now=NOW, key_max_age_days=30).rotations
    assert status.last_run_id == "rot_failed" and status.last_state == "failed"
    assert status.key_age_days == 45.0
    assert any("45 days old (limit 30)" in w for w in status.warnings)
    assert any("rot_failed" in w and "failed" in w for w in status.warnings)
    # A larger limit: only the failure is flagged.
    (relaxed,) = collect(session, dag_ids=DAGS, now=NOW, key_max_age_days=60).rotations
    assert len(relaxed.warnings) == 1 and "failed" in relaxed.warnings[0]
    html = render_page(collect(session, dag_ids=DAGS, now=NOW), json_url="/j")
    assert html.count("class='warn'") == 2


def test_rotation_without_variable_access_shows_no_key_name(session: object) -> None:
    created = NOW - timedelta(days=1)
    set_variable(
        session,
        VARIABLE,
        {
            "api_key": SECRET,
            "name": "from-variable",
            "created_at": created.isoformat(),
            "pending_revoke": ["x"],
        },
    )
    seed_rotation(
        session,
        dag_id="view_rotation",
        run_id="rot_1",
        state="success",
        ended=created,
        variable=VARIABLE,
        returned={"name": "from-xcom", "created_at": created.isoformat(), "revoked": []},
    )
    (status,) = collect(session, dag_ids=DAGS, now=NOW, can_read_variable=lambda name: False).rotations
    assert (status.key_name, status.pending_revoke, status.variable_readable) == (None, [], False)
    # And a user who may not read the rotation DAG sees no rotation at all.
    assert collect(session, dag_ids=["view_dag_a"], now=NOW).rotations == []


# --- Through Airflow's api-server app: authentication, per-user DAGs and entities, the nav entry --

CHILD = Path(__file__).with_name("pioneer_view_child.py")
#: Admins of this test's DAGs, each denied one entity by the auth manager (FAB grants them apart).
DENIED = {"carol": ["XCOM"], "dave": ["TASK_INSTANCE"], "erin": ["VARIABLE"], "frank": ["RUN"]}


def _requests(tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.restricted_auth.RestrictedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            ["alice:admin", "bob:viewer"] + [f"{name}:admin" for name in DENIED]
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
        # alice is an admin, limited to this test's DAGs only because the suite's other tests leave
        # their runs and rotations in the same metastore (they would fill her first page).
        "PIONEER_TEST_DAG_ACCESS": json.dumps(
            {"bob": ["view_dag_b"], "alice": DAGS, **{name: DAGS for name in DENIED}}
        ),
        "PIONEER_TEST_DENY": json.dumps(DENIED),
        "PIONEER_VIEW_DENIED_USERS": ",".join(DENIED),
        "AIRFLOW__PIONEER__KEY_MAX_AGE_DAYS": "7",
    }
    result = subprocess.run(
        [sys.executable, str(CHILD), str(tmp_path / "plugins")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {(r["who"], r["path"]): r for r in lines}


@pytest.fixture(scope="module")
def served(
    airflow_db: object,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    """Seed the view's DAGs once and ask the real api-server app as every caller (one child process)."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as s:
        clear(s, DAGS)
        _seed_two_dags(s)
        _seed_lifecycle(s, datetime.now(UTC) - timedelta(hours=3))
        seed_dags(s, ["view_dag_a", "view_dag_b", "view_rotation"])
        created = datetime.now(UTC) - timedelta(days=10, hours=1)
        set_variable(
            s,
            VARIABLE,
            {
                "api_key": SECRET,
                "name": "airflow-pioneer-k1",
                "created_at": created.isoformat(),
                "pending_revoke": ["airflow-pioneer-k0"],
            },
        )
        seed_rotation(
            s,
            dag_id="view_rotation",
            run_id="rot_1",
            state="success",
            ended=created,
            variable=VARIABLE,
            returned={"name": "airflow-pioneer-k1", "created_at": created.isoformat(), "revoked": []},
        )
    try:
        yield _requests(tmp_path_factory.mktemp("view"))
    finally:
        with create_session() as s:
            clear(s, DAGS)
            s.query(Variable).filter(Variable.key == VARIABLE).delete()


def test_the_view_needs_a_user_and_shows_only_their_dags(
    served: dict[tuple[str, str], dict[str, Any]],
) -> None:
    got = served
    for who, status in (("anonymous", 401), ("forged", 403)):
        for path in ("/pioneer/", "/pioneer/api/view"):
            answer = got[(who, path)]
            assert answer["status_code"] == status, answer
            assert "view_dag" not in answer["body"] and "airflow-pioneer" not in answer["body"]
    # alice (admin, this test's DAGs), through the UI's session cookie: both DAGs, the rotation status.
    page = got[("alice-cookie", "/pioneer/")]
    assert page["status_code"] == 200
    assert (
        "view_dag_a" in page["body"] and "view_dag_b" in page["body"] and "airflow-pioneer-k1" in page["body"]
    )
    assert "hidden: no permission" not in page["body"]
    alice = json.loads(got[("alice-cookie", "/pioneer/api/view")]["body"])
    assert {r["dag_id"] for r in alice["runs"]} == {"view_dag_a", "view_dag_b"}
    assert [r["variable"] for r in alice["rotations"]] == [VARIABLE]
    assert alice["hidden_task_instances"] == [] and alice["hidden_xcoms"] == []
    # The model lifecycle: job states, F1 and the gate's verdict, the datasets.
    _assert_lifecycle_shown(alice, page["body"])
    # [pioneer] key_max_age_days = 7: the 10-day-old key is flagged, on the page too.
    assert alice["key_max_age_days"] == 7
    assert "10 days old (limit 7)" in page["body"] and "role='alert'" in page["body"]
    # bob may read view_dag_b only: nothing of view_dag_a nor of the rotation DAG, in the page or the JSON.
    bob_page = got[("bob-bearer", "/pioneer/")]
    assert bob_page["status_code"] == 200
    assert "view_dag_b" in bob_page["body"]
    bob = json.loads(got[("bob-bearer", "/pioneer/api/view")]["body"])
    assert {r["dag_id"] for r in bob["runs"]} == {"view_dag_b"} and bob["total_runs"] == 1
    assert bob["rotations"] == [] and sum(d["texts"] for d in bob["daily"]) == 7
    assert bob["training_jobs"] == [] and bob["evaluations"] == [] and bob["datasets"] == []
    for body in (bob_page["body"], json.dumps(bob)):
        assert "view_dag_a" not in body and "run_new" not in body and VARIABLE not in body
    # The key is in no answer at all.
    assert not any(SECRET in r["body"] for r in got.values())
    # The UI lists the view in its navigation (Airflow's plugin listing, which the UI reads).
    plugins = json.loads(got[("alice", "/api/v2/plugins")]["body"])["plugins"]
    (pioneer,) = [p for p in plugins if p["name"] == "pioneer"]
    assert pioneer["fastapi_apps"][0]["url_prefix"] == "/pioneer"
    assert pioneer["external_views"][0]["href"] == "/pioneer/"
    assert pioneer["external_views"][0]["destination"] == "nav"


def _answers(got: dict[tuple[str, str], dict[str, Any]], who: str) -> tuple[str, dict[str, Any]]:
    page, data = got[(who, "/pioneer/")], got[(who, "/pioneer/api/view")]
    assert page["status_code"] == 200 and data["status_code"] == 200, (page, data)
    return page["body"], json.loads(data["body"])


def test_without_xcom_access_no_counts_paths_or_returned_names(
    served: dict[tuple[str, str], dict[str, Any]],
) -> None:
    html, data = _answers(served, "carol")
    for body in (html, json.dumps(data)):
        assert "file:///data/out.jsonl" not in body and "2,000" not in body and "2000" not in body
    # The task instances show (carol may read them), their summaries do not, and the page says so.
    assert {r["run_id"] for r in data["runs"]} == {"run_new", "run_old", "run_b"}
    assert all(r["summary_hidden"] and r["texts"] is None and r["tokens"] is None for r in data["runs"])
    assert all(r["output_path"] is None for r in data["runs"])
    assert sum(d["texts"] + d["tokens"] for d in data["daily"]) == 0
    assert data["hidden_xcoms"] == DAGS and data["hidden_task_instances"] == []
    (rotation,) = data["rotations"]
    assert rotation["returned_readable"] is False
    assert rotation["key_name"] == "airflow-pioneer-k1"  # from the Variable, which carol may read
    assert "hidden: no permission" in html and "XComs (texts and tokens) of 3 DAG(s) hidden" in html
    # The lifecycle tasks show (their task states), nothing they returned: no job, score, verdict or dataset.
    for body in (html, json.dumps(data)):
        assert not [v for v in LIFECYCLE_VALUES if v in body]
    rows = [*data["training_jobs"], *data["evaluations"], *data["datasets"]]
    assert len(rows) == 5 and all(r["details_hidden"] for r in rows)
    assert all(r.get("f1") is None and r.get("verdict") is None for r in data["evaluations"])
    assert all(r.get("job_id") is None and r.get("job_status") is None for r in data["training_jobs"])
    assert "XComs (jobs, scores, datasets) of 3 DAG(s) hidden" in html


def test_without_task_instance_or_run_access_no_rows_and_no_rotation(
    served: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for who in ("dave", "frank"):
        html, data = _answers(served, who)
        assert data["runs"] == [] and data["total_runs"] == 0 and data["rotations"] == []
        assert data["training_jobs"] == [] and data["evaluations"] == [] and data["datasets"] == []
        assert data["hidden_task_instances"] == DAGS
        for body in (html, json.dumps(data)):
            assert "run_new" not in body and "rot_1" not in body and "/tasks/" not in body
        assert "Task instances of 3 DAG(s) hidden: no permission" in html
        # The XComs they may read still add up in the chart.
        assert sum(d["texts"] for d in data["daily"]) == 87


def test_without_variable_access_no_key_names_at_all(served: dict[tuple[str, str], dict[str, Any]]) -> None:
    html, data = _answers(served, "erin")
    (rotation,) = data["rotations"]
    assert rotation["variable_readable"] is False
    assert (rotation["key_name"], rotation["pending_revoke"], rotation["key_age_days"]) == (None, [], None)
    # Not from the Variable, and not from the rotation's return value either (erin may read XComs).
    for body in (html, json.dumps(data)):
        assert "airflow-pioneer-k1" not in body and "airflow-pioneer-k0" not in body
    assert "hidden: no permission to read this Variable" in html


# --- At scale: paged and summed in the database ----------------------------------------------


class _Rows(list[Any]):
    def first(self) -> Any:
        return self[0] if self else None

    def one(self) -> Any:
        (row,) = self
        return row


class _CountingSession:
    """The suite's session, counting the rows its queries hand to Python (no query is changed)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.rows = 0

    def execute(self, *args: Any, **kwargs: Any) -> _Rows:
        rows = _Rows(self._session.execute(*args, **kwargs))
        self.rows += len(rows)
        return rows

    def scalars(self, *args: Any, **kwargs: Any) -> list[Any]:
        rows = list(self._session.scalars(*args, **kwargs))
        self.rows += len(rows)
        return rows

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        self.rows += 1
        return self._session.scalar(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_the_view_reads_a_page_and_thirty_sums_not_every_summary(session: object) -> None:
    # 30 days x 20 shards: the page shows 50 of them, the chart 30 sums; nothing reads all 600.
    seed_runs(
        session,
        [
            Shard("view_dag_a", f"day_{d:02d}", map_index=i, ended=NOW - timedelta(days=d), tokens=40)
            for d in range(30)
            for i in range(20)
        ],
    )
    counting = _CountingSession(session)
    data = collect(counting, dag_ids=DAGS, now=NOW, page=3, page_size=50)  # type: ignore[arg-type]
    assert data.total_runs == 600 and len(data.runs) == 50
    # Page 3 = rows 100..149: runs day_05 (its shards 0-19) ... newest run first, shards in order.
    assert [(r.run_id, r.map_index) for r in data.runs[:2]] == [("day_05", 0), ("day_05", 1)]
    assert [(r.run_id, r.map_index) for r in data.runs[-1:]] == [("day_07", 9)]
    assert [d.texts for d in data.daily] == [20 * 100] * 30 and {d.tokens for d in data.daily} == {800}
    assert counting.rows <= 50 + 40, f"{counting.rows} rows read into Python"


def test_the_sums_read_every_stored_form_of_a_summary(session: object) -> None:
    """The summary as a JSON object (Airflow 3.3), as JSON text inside the column (older Task
    SDKs), and values that are no summary at all: summed in SQL exactly as Python reads them."""
    from airflow_provider_pioneer.ui.records import as_int, summary_value

    values: list[Any] = [
        {"succeeded": 9, "failed": 1, "token_usage": 300},
        json.dumps({"succeeded": 20, "failed": 2, "token_usage": 1000}),
        "not json",
        json.dumps("still not a summary"),
        [1, 2, 3],
        {"succeeded": "12", "failed": True, "token_usage": None},
        {"succeeded": 4, "failed": {"n": 1}, "token_usage": 7},
    ]
    shards, xcoms = [], {}
    for day in (0, 3):  # today (summed fresh) and a past day (summed and kept)
        for i, value in enumerate(values):
            shard = Shard("view_dag_a", f"forms_{day}", map_index=i, ended=NOW - timedelta(days=day))
            shards.append(shard)
            xcoms[(shard.dag_id, shard.run_id, shard.task_id, i)] = ("pioneer_summary", value)
    seed_runs(session, shards, xcoms=xcoms)
    expected_texts = expected_tokens = 0
    for value in values:
        summary = summary_value(value) or {}
        expected_texts += (as_int(summary.get("succeeded")) or 0) + (as_int(summary.get("failed")) or 0)
        expected_tokens += as_int(summary.get("token_usage")) or 0
    assert (expected_texts, expected_tokens) == (9 + 1 + 20 + 2 + 4, 300 + 1000 + 7)
    by_day = {d.day: (d.texts, d.tokens) for d in collect(session, dag_ids=DAGS, now=NOW).daily}
    for day in (0, 3):
        assert by_day[(NOW - timedelta(days=day)).date().isoformat()] == (expected_texts, expected_tokens)


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        # The masked-Variable trap: the edit dialog shows every field of an *api_key* Variable
        # masked, and Save writes the mask back.
        (
            {"api_key": "***", "name": "***", "created_at": "***", "pending_revoke": ["***"]},
            "masked placeholder",
        ),
        ("***", "masked placeholder"),
        ('{"api_key": "pio_sk_', "malformed JSON"),
        ({"name": "airflow-pioneer-k1"}, "holds no API key"),
    ],
)
def test_rotation_flags_a_variable_that_holds_no_usable_key(
    session: object, stored: dict[str, Any] | str, problem: str
) -> None:
    created = NOW - timedelta(days=2)
    set_variable(session, VARIABLE, stored)
    seed_rotation(
        session,
        dag_id="view_rotation",
        run_id="rot_1",
        state="success",
        ended=created,
        variable=VARIABLE,
        returned={"name": "airflow-pioneer-lost", "created_at": created.isoformat(), "revoked": []},
    )
    data = collect(session, dag_ids=DAGS, now=NOW)
    (status,) = data.rotations
    # The last run did succeed; the Variable it wrote is what no task can use now.
    assert status.last_state == "success"
    assert status.key_problem is not None and problem in status.key_problem
    assert (status.key_name, status.key_age_days, status.pending_revoke) == (None, None, [])
    assert any("No usable API key" in w for w in status.warnings)
    html = render_page(data, json_url="/j")
    assert "no usable key" in html and "role='alert'" in html
    assert ">***<" not in html and "***</td>" not in html  # the mask is never shown as a key name
    if problem == "masked placeholder":
        # The lost key's real name, from the last rotation's return value (the Variable's is masked).
        assert "airflow-pioneer-lost" in status.key_problem
    assert SECRET not in html and "pio_sk_" not in html


def test_times_are_iso_with_offset_for_the_browser_to_localise(session: object) -> None:
    _seed_two_dags(session)
    html = render_page(collect(session, dag_ids=DAGS, now=NOW), json_url="/j")
    assert f"<time datetime='{NOW.isoformat(timespec='seconds')}'>" in html
    assert "localStorage.getItem('timezone')" in html and "data-timezone" in html


def test_every_value_on_the_page_is_escaped(session: object) -> None:
    """Run ids, labels, output paths and Variable names are user input: none becomes markup."""
    evil = "<img src=x onerror=alert(1)>'\""
    seed_runs(
        session,
        [
            Shard(
                "view_dag_a",
                f"run_{evil}",
                map_index=0,
                ended=NOW - timedelta(hours=1),
                label=f"shard {evil}",
                output_path=f"file:///{evil}",
            )
        ],
    )
    set_variable(session, VARIABLE, {"api_key": SECRET, "name": f"k{evil}", "created_at": NOW.isoformat()})
    seed_rotation(
        session,
        dag_id="view_rotation",
        run_id=f"rot_{evil}",
        state="failed",
        ended=NOW,
        variable=VARIABLE,
        returned=None,
    )
    html = render_page(collect(session, dag_ids=DAGS, now=NOW), json_url=f"/j?{evil}")
    assert "<img" not in html and "onerror=alert(1)>'" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;&#39;&#34;") >= 6  # run, label, path, key, run links
