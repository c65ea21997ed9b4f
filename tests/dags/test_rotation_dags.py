"""PioneerKeyRotationOperator end to end: real DAG runs (dag.test, SQLite) against the emulator.

Crashes are real: ``tests/rotation_crash.py`` runs the DAG in a child process and SIGKILLs it at a
chosen step; then the DAG is rerun here and must converge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow import __version__ as _airflow_version

from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.exceptions import PioneerAuthError
from airflow_provider_pioneer.rotation.document import build_document
from airflow_provider_pioneer.rotation.naming import default_key_name_prefix, is_managed
from tests.dags.support import load_dag
from tests.rotation_race import race

AIRFLOW_VERSION = tuple(int(part) for part in _airflow_version.split(".")[:2])

pytestmark = pytest.mark.dags

REPO = Path(__file__).resolve().parents[2]
VAR = "pioneer_api_key"
ROTATE = "pioneer_test_rotation"
ROTATE_ONCE = "pioneer_test_rotation_once"
KEEP_OLD = "pioneer_test_rotation_keep_old"
STAGING = "pioneer_test_rotation_staging"
STAGING_VAR = "pioneer_api_key_staging"
INFO_VAR = "pioneer_key_rotation"  # the rotation's unmasked companion of VAR (key_info.py)


# -- helpers ------------------------------------------------------------------------------------


def connect(
    monkeypatch: pytest.MonkeyPatch,
    emu: Any,
    conn_id: str = "pioneer_default",
    password: str | None = None,
    **extra: Any,
) -> None:
    """Point ``conn_id`` at the emulator; extras default to key_variable + key_name."""
    extras = {"key_variable": VAR, "key_name": emu.api_key_name, **extra}
    conn = {
        "conn_type": "pioneer",
        "host": emu.url,
        "password": password or emu.api_key,
        "extra": {k: v for k, v in extras.items() if v is not None},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def metastore_value(key: str = VAR) -> str | None:
    """The Variable as stored in the metadata DB (not what a shadowing backend says)."""
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(VariableModel).filter_by(key=key).one_or_none()
        return None if row is None else row.val


def set_metastore(value: str | None, key: str = VAR) -> None:
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(VariableModel).filter_by(key=key).delete()
        if value is not None:
            session.add(VariableModel(key=key, val=value))


def stored_doc(key: str = VAR) -> dict[str, Any]:
    value = metastore_value(key)
    assert value is not None, f"Variable {key!r} is not stored"
    doc = json.loads(value) if value.startswith("{") else value
    assert isinstance(doc, dict), f"Variable {key!r} holds no rotation document: {value[:12]!r}..."
    return doc


def works(emu: Any, key: str) -> bool:
    """A real authenticated call with ``key``: True on 200, False on 401."""
    client = PioneerClient(emu.url, key, max_retries=0)
    try:
        client.list_api_keys()
    except PioneerAuthError:
        return False
    finally:
        client.close()
    return True


def managed_alive(emu: Any) -> list[str]:
    return [n for n in emu.alive_key_names() if is_managed(n, default_key_name_prefix(VAR))]


def run(dag_id: str) -> dict[str, Any]:
    """dag.test() the DAG; return its task's final state, try number and return value."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dr = load_dag(dag_id).test()
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dr.run_id).one()
        xcom = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=dr.run_id, key="return_value")
            .one_or_none()
        )
        return {
            "state": str(getattr(ti.state, "value", ti.state)),
            "try_number": ti.try_number,
            "run_id": dr.run_id,
            "value": None if xcom is None else xcom.value,
        }


def recorded_text(dag_id: str, run_id: str) -> str:
    """Everything the run left in the metadata DB that a user can see: XComs and rendered fields."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run_id).all()
        parts = [json.dumps(x.value, default=str) for x in xcoms]
        parts += [json.dumps(r.rendered_fields, default=str) for r in rendered]
    assert parts, "nothing recorded: the scan would prove nothing"
    return "\n".join(parts)


def child_env() -> dict[str, str]:
    """This process's environment: tests/conftest.py pins the Fernet key there, so a child reads and
    writes Variables the way this process does."""
    assert os.environ.get("AIRFLOW__CORE__FERNET_KEY")
    return dict(os.environ)


def crash(dag_id: str, target: str, when: str) -> subprocess.CompletedProcess[str]:
    """Run ``dag_id`` in a child process that SIGKILLs itself at ``target``."""
    return subprocess.run(
        [sys.executable, "-m", "tests.rotation_crash", dag_id, target, when],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def emu(airflow_db: Path, pioneer_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The emulator, pioneer_default pointing at it, and no Variable yet."""
    connect(monkeypatch, pioneer_emulator)
    set_metastore(None)
    set_metastore(None, STAGING_VAR)
    yield pioneer_emulator
    set_metastore(None)
    set_metastore(None, STAGING_VAR)


def bootstrap_document(emu: Any) -> str:
    return build_document(emu.api_key, emu.api_key_name, None, [])


# -- the happy path -----------------------------------------------------------------------------


def test_rotation_stores_a_working_key_revokes_the_old_and_leaks_nothing(
    emu: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    old_key = emu.api_key
    first = run(ROTATE)
    assert (first["state"], first["try_number"]) == ("success", 1)
    doc = stored_doc()
    new_key = doc["api_key"]
    assert new_key != old_key
    assert works(emu, new_key)
    assert not works(emu, old_key)  # the old key answers 401
    assert emu.alive_key_names() == [doc["name"]] == managed_alive(emu)
    assert first["value"] == {"name": doc["name"], "created_at": doc["created_at"], "revoked": ["bootstrap"]}
    # What the run was to revoke when it wrote its one document; done now (a stale list is skipped).
    assert doc["pending_revoke"] == ["bootstrap"]

    # The next night: the old key's name now comes from the Variable's document.
    second = run(ROTATE)
    assert second["state"] == "success"
    doc2 = stored_doc()
    assert doc2["name"] != doc["name"] and doc2["name"] > doc["name"]  # names sort by time
    assert works(emu, doc2["api_key"]) and not works(emu, new_key)
    assert emu.alive_key_names() == [doc2["name"]]
    assert second["value"]["revoked"] == [doc["name"]]

    # The keys appear nowhere: logs, XComs, rendered fields, return values.
    from tests.airflow_compat import redact

    seen = capfd.readouterr()
    text = "\n".join(
        [
            seen.out,
            seen.err,
            caplog.text,
            recorded_text(ROTATE, first["run_id"]),
            recorded_text(ROTATE, second["run_id"]),
        ]
    )
    assert "Pioneer key rotated" in text  # the capture did see the runs
    for key in (old_key, new_key, doc2["api_key"]):
        assert key not in text
        assert key not in str(redact(f"key={key}"))  # registered with Airflow's masker


def test_two_rotations_on_one_account_leave_each_other_alone(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two Variables, two connections, one Pioneer account, default prefixes. The staging prefix
    # (airflow-pioneer_api_key_staging) extends the prod one (airflow-pioneer_api_key): each orphan
    # sweep must still see the other's stored key as not its own.
    staging_key = emu.create_key("staging-bootstrap")
    connect(
        monkeypatch,
        emu,
        conn_id="pioneer_staging",
        password=staging_key,
        key_variable=STAGING_VAR,
        key_name="staging-bootstrap",
    )
    results = []
    for _night in range(2):
        for dag_id in (ROTATE, STAGING):
            result = run(dag_id)
            assert result["state"] == "success", dag_id
            results.append(result["value"])

    prod, staging = stored_doc(), stored_doc(STAGING_VAR)
    assert prod["name"].startswith("airflow-pioneer_api_key-2")
    assert staging["name"].startswith("airflow-pioneer_api_key_staging-2")
    assert works(emu, prod["api_key"]) and works(emu, staging["api_key"])
    assert sorted(emu.alive_key_names()) == sorted([prod["name"], staging["name"]])
    # Each run revoked exactly the key its own Variable held before.
    assert results[0]["revoked"] == ["bootstrap"]
    assert results[1]["revoked"] == ["staging-bootstrap"]
    assert results[2]["revoked"] == [results[0]["name"]]
    assert results[3]["revoked"] == [results[1]["name"]]


def test_revoke_old_false_keeps_the_replaced_key_alive(emu: Any) -> None:
    result = run(KEEP_OLD)
    assert result["state"] == "success"
    doc = stored_doc()
    assert works(emu, doc["api_key"]) and works(emu, emu.api_key)
    assert sorted(emu.alive_key_names()) == sorted(["bootstrap", doc["name"]])
    assert result["value"]["revoked"] == []
    assert doc["pending_revoke"] == []


# -- fail fast: nothing changes -----------------------------------------------------------------

SPEND_CAP = {
    "status": 429,
    "headers": {"X-RateLimit-Reason": "daily_spend_cap_exceeded", "Retry-After": "60"},
}


@pytest.mark.parametrize(
    "where, fault",
    [
        ("preflight", None),  # the account is out of credits: every call answers 402
        ("preflight", SPEND_CAP),
        ("create", {"status": 402}),
        ("create", SPEND_CAP),
    ],
    ids=["402-preflight", "spend-cap-preflight", "402-create", "spend-cap-create"],
)
def test_budget_refusals_fail_fast_and_change_nothing(
    emu: Any, where: str, fault: dict[str, Any] | None, capfd: pytest.CaptureFixture[str]
) -> None:
    before = bootstrap_document(emu)
    set_metastore(before)
    created = emu.counters()["keys_created"]
    if fault is None:
        emu.set_credits(0)
    else:
        emu.inject(path="/list-api-keys" if where == "preflight" else "/create-api-key", **fault)

    result = run(ROTATE)  # retries=1, yet a budget refusal must not be retried

    assert (result["state"], result["try_number"]) == ("failed", 1)
    assert emu.counters()["keys_created"] == created
    assert emu.alive_key_names() == ["bootstrap"]
    got = metastore_value()
    assert got == before
    out = capfd.readouterr().out
    assert "AirflowFailException" in out and "nothing was changed" in out
    assert emu.api_key not in out


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"key_name": None}, "old_key_name, the connection extra key_name, or a Variable"),
        ({"key_name": "no-such-key"}, "No live key named 'no-such-key'"),
        ({"key_variable": None}, "set its extra key_variable to 'pioneer_api_key'"),
    ],
    ids=["old-name-unknown", "old-name-wrong", "connection-does-not-read-the-variable"],
)
def test_setup_errors_fail_before_anything_is_created(
    emu: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    extra: dict[str, Any],
    message: str,
) -> None:
    connect(monkeypatch, emu, **extra)
    created = emu.counters()["keys_created"]
    result = run(ROTATE)
    assert (result["state"], result["try_number"]) == ("failed", 1)
    assert emu.counters()["keys_created"] == created
    assert metastore_value() is None
    assert works(emu, emu.api_key)
    assert message in capfd.readouterr().out


def test_connection_key_name_is_not_used_for_a_key_set_by_hand_in_the_variable(
    emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    # The password holds the bootstrap key (extra key_name="bootstrap"); someone put another key
    # in the Variable by hand. key_name does not describe that key: revoking "bootstrap" would
    # leave the key in use alive and unmanaged.
    by_hand = emu.create_key("by-hand")
    set_metastore(by_hand)
    created = emu.counters()["keys_created"]
    result = run(ROTATE)
    assert (result["state"], result["try_number"]) == ("failed", 1)
    assert emu.counters()["keys_created"] == created
    assert sorted(emu.alive_key_names()) == ["bootstrap", "by-hand"]
    assert metastore_value() == by_hand
    out = capfd.readouterr().out
    assert "old_key_name, the connection extra key_name, or a Variable" in out
    assert "names the key in the connection's password" in out
    assert by_hand not in out and emu.api_key not in out


def test_connection_key_name_is_used_when_the_variable_holds_the_password_key(emu: Any) -> None:
    set_metastore(emu.api_key)  # a plain key, the same as the connection's password
    result = run(ROTATE_ONCE)
    assert result["state"] == "success"
    assert result["value"]["revoked"] == ["bootstrap"]
    assert emu.alive_key_names() == [stored_doc()["name"]]


def test_new_key_that_fails_its_check_is_deleted_and_nothing_changes(
    emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    before = bootstrap_document(emu)
    set_metastore(before)
    # Preflight's listing passes; the three verification calls with the new key get 401.
    emu.inject(status=401, path="/list-api-keys", after=1, times=3)
    result = run(ROTATE_ONCE)
    assert result["state"] == "failed"
    counters = emu.counters()
    assert (counters["keys_created"], counters["keys_revoked"]) == (2, 1)  # bootstrap + the new one
    assert emu.alive_key_names() == ["bootstrap"]
    got = metastore_value()
    assert got == before
    assert "failed its check" in capfd.readouterr().out


def test_shadowed_variable_deletes_the_new_key_and_keeps_the_old(
    emu: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # The environment-variable secrets backend is read before the metastore: a write cannot win.
    # The shadow holds another key than the metastore, so the test sees which value is restored.
    shadow_key = emu.create_key("shadow")
    shadow = build_document(shadow_key, "shadow", None, [])
    monkeypatch.setenv(f"AIRFLOW_VAR_{VAR.upper()}", shadow)
    set_metastore(bootstrap_document(emu))
    result = run(ROTATE)
    assert (result["state"], result["try_number"]) == ("failed", 1)
    counters = emu.counters()
    assert (counters["keys_created"], counters["keys_revoked"]) == (3, 1)  # bootstrap, shadow, new
    assert sorted(emu.alive_key_names()) == ["bootstrap", "shadow"]
    assert works(emu, emu.api_key) and works(emu, shadow_key)
    # The metastore holds the value every reader saw before (the shadow's: a task cannot read the
    # metastore behind it), exactly: never the new document, whose key is deleted.
    assert metastore_value() == shadow
    out = capfd.readouterr().out
    assert "shadows it" in out and f"AIRFLOW_VAR_{VAR.upper()}" in out and "was restored" in out
    assert shadow_key not in out and emu.api_key not in out


# -- recovery -----------------------------------------------------------------------------------


def test_lost_create_response_leaves_no_orphan_after_the_rerun(emu: Any) -> None:
    # The server creates the key and the answer never arrives; the task's retry is the rerun.
    emu.inject(fault="lose_response", path="/create-api-key", times=1)
    result = run(ROTATE)
    assert (result["state"], result["try_number"]) == ("success", 2)
    doc = stored_doc()
    assert emu.counters()["keys_created"] == 3  # bootstrap, the orphan, the stored key
    assert emu.alive_key_names() == [doc["name"]]  # the orphan is revoked
    assert works(emu, doc["api_key"])


def test_failed_revocation_stays_pending_and_the_next_run_finishes_it(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emu, max_retries=0)  # one 500 is final
    emu.inject(status=500, path="/delete-api-key", times=1)
    result = run(ROTATE_ONCE)
    assert result["state"] == "failed"  # loudly: a key that should be dead is alive
    doc = stored_doc()
    assert works(emu, doc["api_key"])
    assert doc["pending_revoke"] == ["bootstrap"]
    assert sorted(emu.alive_key_names()) == sorted(["bootstrap", doc["name"]])

    again = run(ROTATE_ONCE)
    assert again["state"] == "success"
    final = stored_doc()
    assert sorted(again["value"]["revoked"]) == sorted([doc["name"], "bootstrap"])
    assert emu.alive_key_names() == [final["name"]]
    assert sorted(final["pending_revoke"]) == sorted([doc["name"], "bootstrap"])  # all revoked now


@pytest.mark.parametrize(
    "target, when",
    [
        ("steps.create", "after"),
        ("VariableKeyStore.promote", "after"),
        ("revoke.revoke", "before"),
        ("PioneerClient.delete_api_key", "after"),
    ],
    ids=["after-create", "after-variable-write", "before-revoke", "mid-revoke"],
)
def test_rerun_after_a_kill_converges(emu: Any, target: str, when: str) -> None:
    # Night one went fine; night two is killed at the step under test.
    assert run(ROTATE)["state"] == "success"
    night_one = stored_doc()

    proc = crash(ROTATE, target, when)
    assert proc.returncode == -9, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = stored_doc()
    assert works(emu, doc["api_key"]), "the Variable holds a key that does not work"
    leftovers = set(emu.alive_key_names()) - {doc["name"]}
    if target.endswith("create"):
        assert doc == night_one and len(leftovers) == 1  # an orphan nobody holds
    elif target.endswith("promote") or target.endswith("revoke"):
        assert doc["name"] != night_one["name"] and doc["pending_revoke"] == [night_one["name"]]
        assert leftovers == {night_one["name"]}

    result = run(ROTATE)
    assert result["state"] == "success"
    final = stored_doc()
    assert works(emu, final["api_key"])
    assert emu.alive_key_names() == managed_alive(emu) == [final["name"]]
    assert not set(final["pending_revoke"]) & set(emu.alive_key_names())


# -- a batch inference in flight survives the rotation ------------------------------------------

INFERENCE = "pioneer_test_rotation_inference"


def wait_for(condition: Any, what: str, child: subprocess.Popen[str], limit: float = 120.0) -> None:
    """Poll ``condition`` (a synchronisation point, not a timing assertion)."""
    import time

    deadline = time.monotonic() + limit
    while not condition():
        assert child.poll() is None, f"the child exited ({child.returncode}) before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def summary_of_last_run(dag_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, key="pioneer_summary")
            .order_by(XComModel.timestamp.desc())
            .first()
        )
        assert row is not None, f"{dag_id} pushed no pioneer_summary"
        value = row.value
    return value if isinstance(value, dict) else json.loads(value)


def test_batch_inference_in_flight_survives_the_rotation(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Retries enough to sit out the hold below however long the rotation takes (each waits ~1 s).
    connect(monkeypatch, emu, max_retries=100)
    set_metastore(bootstrap_document(emu))
    old_key = emu.api_key
    # Deterministic order: the first HELD_AFTER requests pass with the old key; every later one
    # is answered 429 (Retry-After: 1 s) until the test clears the fault after the rotation, so
    # the inference is mid-run, with batches to go, when its key is revoked.
    held_after = 4
    hold = emu.inject(status=429, path="/inference", after=held_after, headers={"Retry-After": "1"})
    log = (tmp_path / "inference.log").open("w")
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.rotation_crash", INFERENCE],
        cwd=REPO,
        env=child_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: (
                emu.counters()["faults_fired"].get(hold, 0) >= 1
                and emu.counters()["inference_requests_committed"] >= held_after
            ),
            "the inference to be held",
            child,
        )
        rotation = run(ROTATE)
        assert rotation["state"] == "success"
        assert not emu.key_is_alive(old_key)  # (asked the emulator: no 401 of our own)
        held = emu.counters()
        emu.clear_faults()  # release: the inference meets the revoked key now
        assert child.wait(timeout=180) == 0, (tmp_path / "inference.log").read_text()[-4000:]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()

    output = (tmp_path / "inference.log").read_text()
    summary = summary_of_last_run(INFERENCE)
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (120, 120, 0), output[-6000:]
    counters = emu.counters()
    # Only the first batches went out with the old key; the rest came after the rotation.
    assert held["inference_requests_committed"] == held_after
    assert held["statuses"].get("401", 0) == 0
    # The old key was refused after the release and the new one picked up: no batch was lost.
    assert counters["statuses"].get("401", 0) >= 1
    assert counters["texts_committed"] == 120
    assert old_key not in output and stored_doc()["api_key"] not in output


# -- two rotations of one Variable at once ------------------------------------------------------


def _check_race_outcome(emu: Any, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each run's return value must be true; returns the Variable's document."""
    doc = stored_doc()
    alive = set(emu.alive_key_names())
    assert doc["name"] in alive and works(emu, doc["api_key"])
    stored_by = [r["value"]["name"] for r in results.values() if not r["value"].get("superseded")]
    for role, result in results.items():
        assert result["ok"], (role, result)
        value = result["value"]
        # What a run says it revoked or discarded is gone.
        assert not set(value["revoked"]) & alive, (role, value)
        if value.get("superseded"):
            # "Another rotation stored key X": X was stored by the other run (or is stored now).
            assert value["name"] in [*stored_by, doc["name"]], (role, value)
            if value["discarded"]:
                assert value["discarded"] not in alive, (role, value)
        else:
            assert is_managed(value["name"], default_key_name_prefix(VAR))
    # The key the Variable holds is one a run reports as its own, or as the winner's.
    assert doc["name"] in {r["value"]["name"] for r in results.values()}
    return doc


def test_two_rotations_at_once_never_leave_a_revoked_key_stored(emu: Any, tmp_path: Path) -> None:
    set_metastore(bootstrap_document(emu))

    def settled(gap: float) -> None:
        final = stored_doc()
        assert works(emu, final["api_key"])
        assert emu.alive_key_names() == managed_alive(emu) == [final["name"]], f"gap {gap}"

    output = race(
        tmp_path,
        child_env(),
        store="the Variable",
        read=metastore_value,
        is_alive=emu.key_is_alive,
        check_round=lambda gap, results: _check_race_outcome(emu, results),
        check_settled=settled,
    )
    # The losing run says so. Its own key is then discarded, or, when the winner already revoked
    # the old key it would delete with, left to the next run as an orphan (checked above: after
    # each follow-up only the stored key is alive): which one depends on timing.
    assert "Another rotation stored key" in output
    assert "this run's key was discarded" in output or "this run's key could not be deleted" in output


# -- the Variable holding no usable key ---------------------------------------------------------


def test_malformed_variable_fails_clearly_and_changes_nothing(
    emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    # A hand edit cut the document short. The connection's password still works, and the old code
    # silently rotated from it, as if the Variable were empty.
    broken = bootstrap_document(emu)[:-20]
    set_metastore(broken)
    created = emu.counters()["keys_created"]
    result = run(ROTATE)
    assert (result["state"], result["try_number"]) == ("failed", 1)  # no Airflow retry either
    assert emu.counters()["keys_created"] == created
    assert emu.alive_key_names() == ["bootstrap"]
    assert metastore_value() == broken
    out = capfd.readouterr().out
    assert "Variable 'pioneer_api_key' holds malformed JSON" in out and "Nothing was changed" in out
    assert emu.api_key not in out


def shown_in_ui(key: str) -> str:
    """The Variable's value as the UI's edit dialog shows it: Airflow's own Variable API response."""
    from airflow.api_fastapi.core_api.datamodels.variables import VariableResponse

    value = metastore_value(key)
    assert value is not None, f"Variable {key!r} is not stored"
    shown = VariableResponse(key=key, value=value, description=None, is_encrypted=True, team_name=None)
    assert shown.val is not None
    return shown.val


def test_masked_placeholder_fails_clearly_and_the_documented_recovery_converges(
    emu: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Night one stored a managed key; then someone opened the Variable in the UI's edit dialog and
    # pressed Save. Airflow 3.3 masks every value of a Variable named *api_key*: the key, and its
    # name, dates and pending list too, so the document's own name reads '***'; Airflow 3.1 masks
    # the key alone. The recovery must work on both.
    set_metastore(None, INFO_VAR)
    assert run(ROTATE)["state"] == "success"
    lost = stored_doc()
    masked = shown_in_ui(VAR)
    assert json.loads(masked)["api_key"] == "***" and lost["api_key"] not in masked
    if AIRFLOW_VERSION >= (3, 3):
        assert lost["name"] not in masked and json.loads(masked)["name"] == "***"
    # The companion Variable keeps what recovery needs where the UI shows it, and no key.
    info = shown_in_ui(INFO_VAR)
    assert json.loads(info)["name"] == lost["name"] and "***" not in info and lost["api_key"] not in info
    set_metastore(masked)  # the dialog's Save
    created = emu.counters()["keys_created"]

    result = run(ROTATE)

    assert (result["state"], result["try_number"]) == ("failed", 1)
    assert emu.counters()["keys_created"] == created
    assert emu.alive_key_names() == [lost["name"]]  # nothing revoked: the lost key still works
    assert works(emu, lost["api_key"])
    assert metastore_value() == masked
    out = capfd.readouterr().out
    assert "masked placeholder" in out and "named '***'" not in out
    assert f"The lost key is named {lost['name']!r} (recorded in Variable {INFO_VAR!r})" in out
    # The hook (every DAG using the connection) says the same.
    monkeypatch.setenv(f"AIRFLOW_VAR_{VAR.upper()}", masked)
    monkeypatch.setenv(f"AIRFLOW_VAR_{INFO_VAR.upper()}", info)
    from airflow_provider_pioneer.exceptions import PioneerConfigurationError
    from airflow_provider_pioneer.hooks.pioneer import PioneerHook

    with pytest.raises(PioneerConfigurationError, match=f"The lost key is named {lost['name']!r}"):
        PioneerHook().get_api_key()
    monkeypatch.delenv(f"AIRFLOW_VAR_{VAR.upper()}")
    monkeypatch.delenv(f"AIRFLOW_VAR_{INFO_VAR.upper()}")

    # The recovery the message gives (the connection's own key was revoked on night one): a key
    # made in the console, set with its name; rerun. The lost key is an unstored managed key: swept.
    assert "create one in the Pioneer console" in out and "the first rotation revokes it" in out
    by_hand = emu.create_key("recovery")
    set_metastore(json.dumps({"api_key": by_hand, "name": "recovery"}))
    again = run(ROTATE)
    assert again["state"] == "success"
    final = stored_doc()
    assert works(emu, final["api_key"])
    assert emu.alive_key_names() == [final["name"]]
    assert sorted(again["value"]["revoked"]) == sorted(["recovery", lost["name"]])
    assert json.loads(shown_in_ui(INFO_VAR))["name"] == final["name"]
    set_metastore(None, INFO_VAR)


# -- Pioneer's 50 creates per hour --------------------------------------------------------------


def test_create_budget_refuses_before_creating_anything(emu: Any, capfd: pytest.CaptureFixture[str]) -> None:
    # Ten managed keys created in the last hour: five alive (orphans), five revoked but remembered
    # in the Variable's document (GET /list-api-keys does not show revoked keys).
    from airflow_provider_pioneer.rotation.naming import managed_name

    prefix = default_key_name_prefix(VAR)
    for _ in range(5):
        emu.create_key(managed_name(prefix))
    remembered = [managed_name(prefix) for _ in range(5)]
    before = build_document(emu.api_key, emu.api_key_name, None, [], created_recently=remembered)
    set_metastore(before)
    alive = emu.alive_key_names()
    created = emu.counters()["keys_created"]

    result = run(ROTATE)  # retries=1: a refusal must not be retried

    assert (result["state"], result["try_number"]) == ("failed", 1)
    assert emu.counters()["keys_created"] == created
    assert emu.counters()["requests"].get("POST /create-api-key", 0) == 0
    assert emu.alive_key_names() == alive  # the orphans are not touched either
    assert metastore_value() == before
    out = capfd.readouterr().out
    assert "10 keys named airflow-pioneer_api_key-... were created in the last hour" in out
    assert "max_keys_created_per_hour is 10" in out and "Nothing was changed" in out


def test_a_429_on_create_fails_the_try_without_creating_or_retrying(
    emu: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    connect(monkeypatch, emu, max_retries=5)  # the connection's retries must not apply to create
    before = bootstrap_document(emu)
    set_metastore(before)
    created = emu.counters()["keys_created"]
    emu.inject(status=429, path="/create-api-key", headers={"Retry-After": "1800"})

    result = run(ROTATE)  # retries=1

    assert (result["state"], result["try_number"]) == ("failed", 1)
    counters = emu.counters()
    assert counters["requests"]["POST /create-api-key"] == 1
    assert counters["keys_created"] == created
    assert emu.alive_key_names() == ["bootstrap"] and metastore_value() == before
    out = capfd.readouterr().out
    assert "HTTP 429 (Pioneer asks to wait 1800 s)" in out and "50 keys per hour per account" in out


def test_create_is_sent_once_per_try_even_when_it_fails(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connect(monkeypatch, emu, max_retries=5)
    emu.inject(status=503, path="/create-api-key", times=1)
    result = run(ROTATE)  # the first try fails, Airflow's retry rotates
    assert (result["state"], result["try_number"]) == ("success", 2)
    assert emu.counters()["requests"]["POST /create-api-key"] == 2  # one per try, no client retry
    assert emu.alive_key_names() == [stored_doc()["name"]]


# -- names stay readable under Airflow's masker -------------------------------------------------


def test_names_stay_readable_and_only_keys_are_masked(emu: Any, capfd: pytest.CaptureFixture[str]) -> None:
    # Airflow masks the values of connection extras with sensitive-looking names; an extra named
    # api_key_variable made the Variable's name, and every key name containing it, read '***'.
    from airflow.sdk._shared.secrets_masker import reset_secrets_masker

    from tests.airflow_compat import redact

    reset_secrets_masker()  # what this process registered before must not decide the outcome
    first = run(ROTATE)
    second = run(ROTATE)  # rendered after the first run taught the masker this process's secrets
    assert first["state"] == second["state"] == "success"
    doc = stored_doc()
    names = [first["value"]["name"], doc["name"]]
    logs = str(redact(capfd.readouterr().out))
    assert f"Stored the new key in Variable {VAR!r}" in logs
    for name in names:
        assert f"Pioneer key rotated: {name} is stored in Variable {VAR!r}" in logs
    assert second["value"]["revoked"] == [names[0]]
    rendered = recorded_text(ROTATE, second["run_id"])
    assert f'"variable_key": "{VAR}"' in rendered
    # The keys themselves are masked wherever they would appear.
    for key in (emu.api_key, doc["api_key"]):
        assert key not in logs and redact(f"key {key} here") == "key *** here"


# -- every documented variant of key management (issue 18, item 4) --------------------------------


@pytest.mark.parametrize("style", ["cursor", "offset"])
def test_rotation_follows_a_paged_key_listing_in_preflight_and_verify(emu: Any, style: str) -> None:
    # One key a page: the old key (the second key of the account) is on page 2 at preflight, the new
    # key on page 3 at verification. Read as one page, preflight says the old key is not alive and
    # verification deletes the new key as "does not list itself".
    old_key = emu.create_key("hand-made")
    set_metastore(build_document(old_key, "hand-made", None, []))
    emu.set_key_listing(style, page_size=1)

    result = run(ROTATE_ONCE)

    assert result["state"] == "success"
    doc = stored_doc()
    assert result["value"]["revoked"] == ["hand-made"]
    assert works(emu, doc["api_key"]) and not works(emu, old_key)
    assert emu.alive_key_names() == ["bootstrap", doc["name"]]  # the unmanaged bootstrap key is untouched
    assert emu.counters()["requests"]["GET /list-api-keys"] >= 6  # every page, each time


def test_rotation_revokes_by_key_id_when_the_account_takes_no_name(emu: Any) -> None:
    # DELETE /delete-api-key answers 422 to {"name"} and takes {"key_id"}: revoked by name only, each
    # night's rotation left the replaced key alive (two live managed keys after every run).
    emu.set_key_revocation("key_id")
    first = run(ROTATE_ONCE)
    second = run(ROTATE_ONCE)

    assert first["state"] == second["state"] == "success"
    doc = stored_doc()
    assert second["value"]["revoked"] == [first["value"]["name"]]
    assert managed_alive(emu) == [doc["name"]] == emu.alive_key_names()  # one managed key live, no other
    assert doc["pending_revoke"] == [first["value"]["name"]] and works(emu, doc["api_key"])
