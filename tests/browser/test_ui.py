"""Headless Chromium on the real Airflow UI (tests/browser/conftest.py): the Pioneer view, who sees
what, where its links land, times in the UI's timezone, a Variable that holds no usable key, the
connection Test button, and readable names in the rotation log. Screenshots go to
.browser-artifacts/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.browser.conftest import ARTIFACTS, BATCH, ROTATION, RUN_TIMEOUT_S, Deployment, _run_dag, _wait_run

TIMEOUT_MS = 60_000
# The first test also waits for the deployment to come up and run both example DAGs.
pytestmark = pytest.mark.timeout(900)


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _view_frame(page: Any, ui: Deployment, via_nav: bool = False) -> Any:
    """The Pioneer page as the UI shows it: its nav entry opens /plugin/pioneer, the view in an iframe."""
    if via_nav:
        page.goto(f"{ui.url}/", wait_until="domcontentloaded")
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name="Pioneer").click()
        page.wait_for_url(re.compile(r"/plugin/pioneer$"), timeout=TIMEOUT_MS)
    else:
        page.goto(f"{ui.url}/plugin/pioneer", wait_until="domcontentloaded")
    page.wait_for_selector("iframe", timeout=TIMEOUT_MS)
    frame = page.frame_locator("iframe").first
    frame.locator("h1", has_text="Pioneer").wait_for(timeout=TIMEOUT_MS)
    return frame


def _summaries(ui: Deployment) -> dict[int, dict[str, Any]]:
    """The batch run's pioneer_summary XComs through Airflow's REST API, by map index."""
    run_id = ui.runs[BATCH]
    tis = ui.api("GET", f"/api/v2/dags/{BATCH}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()
    out = {}
    for ti in tis["task_instances"]:
        entry = ui.api(
            "GET",
            f"/api/v2/dags/{BATCH}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/xcomEntries/pioneer_summary",
            params={"map_index": ti["map_index"]},
        )
        if entry.status_code == 200:
            value = entry.json()["value"]
            out[ti["map_index"]] = json.loads(value) if isinstance(value, str) else value
    return out


def test_the_view_shows_the_run_with_its_counts(airflow_ui: Deployment, page_as: Any) -> None:
    summaries = _summaries(airflow_ui)
    assert summaries, "the batch run pushed no pioneer_summary"
    page = page_as("admin")
    frame = _view_frame(page, airflow_ui, via_nav=True)
    run_id = airflow_ui.runs[BATCH]
    for map_index, summary in summaries.items():
        row = frame.locator(f"#runs tr[data-run-id='{run_id}'][data-map-index='{map_index}']")
        row.wait_for(timeout=TIMEOUT_MS)
        assert row.locator("td.texts").inner_text() == f"{summary['total']:,}"
        assert row.locator("td.failed").inner_text() == f"{summary['failed']:,}"
        assert row.locator("td.tokens").inner_text() == f"{summary['token_usage']:,}"
        assert row.locator(".state").inner_text() == "success"
    # The chart counts today's texts; the rotation box names the Variable and the new key.
    total = sum(s["succeeded"] + s["failed"] for s in summaries.values())
    bars = [
        int(t) for t in frame.locator("#daily-chart g").evaluate_all("gs => gs.map(g => g.dataset.texts)")
    ]
    assert bars[-1] >= total
    rotation = frame.locator("#rotation tr[data-variable='pioneer_api_key']")
    assert "airflow-pioneer" in rotation.inner_text()
    _shot(page, "pioneer-view-light")
    dark = page_as("admin", color_scheme="dark")
    _view_frame(dark, airflow_ui)
    _shot(dark, "pioneer-view-dark")


def test_a_user_without_access_to_a_dag_does_not_see_its_runs(airflow_ui: Deployment, page_as: Any) -> None:
    page = page_as("viewer")
    frame = _view_frame(page, airflow_ui)
    body = frame.locator("body").inner_text()
    assert BATCH not in body and airflow_ui.runs[BATCH] not in body
    assert "pioneer_api_key" in frame.locator("#rotation").inner_text()  # the DAG they may read
    _shot(page, "pioneer-view-viewer")
    data = page.request.get(f"{airflow_ui.url}/pioneer/api/view")
    assert data.status == 200
    assert BATCH not in data.text() and {r["dag_id"] for r in data.json()["runs"]} <= {ROTATION}


def test_unauthenticated_requests_get_no_data(airflow_ui: Deployment, page_as: Any) -> None:
    page = page_as(None)
    for path in ("/pioneer/", "/pioneer/api/view"):
        answer = page.goto(f"{airflow_ui.url}{path}")
        assert answer is not None and answer.status in (401, 403)
        assert BATCH not in page.content() and "pioneer_api_key" not in page.content()
    forged = requests.get(f"{airflow_ui.url}/pioneer/api/view", cookies={"_token": "forged"}, timeout=30)
    assert forged.status_code in (401, 403) and BATCH not in forged.text


def _press_test(page: Any, ui: Deployment, conn_id: str) -> str:
    page.goto(f"{ui.url}/connections", wait_until="domcontentloaded")
    row = page.locator("tr", has_text=conn_id).first
    row.wait_for(timeout=TIMEOUT_MS)
    row.get_by_role("button", name="Test Connection").click()
    # The UI answers with a toast: its title, and the hook's message as its description.
    title = page.get_by_text(re.compile(r"^Test Connection (Successful|Failed)$"))
    title.first.wait_for(timeout=TIMEOUT_MS)
    return str(title.first.locator("xpath=..").inner_text())


def test_the_test_button_succeeds_and_fails_clearly_on_a_bad_key(
    airflow_ui: Deployment, page_as: Any
) -> None:
    bad = {
        "connection_id": "pioneer_bad_key",
        "conn_type": "pioneer",
        "host": airflow_ui.emulator.url,
        "password": "pio_sk_not_a_key_the_emulator_issued",
        # No port, as the REST API and the UI's form store it (pioneer_default has port 0).
        "extra": json.dumps({"timeout": 10}),
    }
    created = airflow_ui.api("POST", "/api/v2/connections", json=bad)
    assert created.status_code in (201, 409), created.text
    page = page_as("admin")
    ok = _press_test(page, airflow_ui, "pioneer_default")
    _shot(page, "test-button-success")
    assert "Test Connection Successful" in ok
    failed = _press_test(page, airflow_ui, "pioneer_bad_key")
    _shot(page, "test-button-bad-key")
    assert "Test Connection Failed" in failed
    assert re.search(r"key|401|unauthori", failed, re.I), failed
    assert "pio_sk_not_a_key" not in failed


def test_the_rotation_log_shows_the_variable_name(airflow_ui: Deployment, page_as: Any) -> None:
    page = page_as("admin")
    run_id = airflow_ui.runs[ROTATION]
    page.goto(
        f"{airflow_ui.url}/dags/{ROTATION}/runs/{run_id}/tasks/rotate_api_key", wait_until="domcontentloaded"
    )
    line = page.get_by_text(re.compile(r"Stored the new key in Variable"))
    line.first.wait_for(timeout=TIMEOUT_MS)
    text = page.locator("body").inner_text()
    _shot(page, "rotation-log")
    assert "Stored the new key in Variable 'pioneer_api_key'" in text
    assert "Variable '***'" not in text


def test_a_connection_made_in_the_add_connection_form_tests_successfully(
    airflow_ui: Deployment, page_as: Any
) -> None:
    """The form hides the port, so the row has none, and 3.3.2's list then posts "port": 0."""
    page = page_as("admin")
    page.goto(f"{airflow_ui.url}/connections", wait_until="domcontentloaded")
    page.get_by_role("button", name=re.compile("Add Connection")).click()
    page.locator("input[name='connection_id']").fill("pioneer_from_form")
    kind = page.get_by_role("combobox")
    kind.click()
    kind.fill("Pioneer")
    page.keyboard.press("Enter")
    page.get_by_label(re.compile("^Base URL")).fill(airflow_ui.emulator.url)
    page.get_by_label(re.compile("^API key")).fill(airflow_ui.emulator.api_key)
    # The rotation already revoked that bootstrap key: like pioneer_default, read the rotated key
    # from the Variable (the form's "Key Variable" extra).
    key_variable = page.locator("input[name='element_key_variable']")  # its label points elsewhere
    if not key_variable.is_visible():
        page.get_by_role("button", name=re.compile("^Extra Fields$")).click()
    key_variable.fill("pioneer_api_key")
    page.get_by_role("button", name=re.compile("Save")).click()
    page.get_by_role("dialog").wait_for(state="hidden", timeout=TIMEOUT_MS)
    stored = airflow_ui.api("GET", "/api/v2/connections/pioneer_from_form").json()
    assert stored["conn_type"] == "pioneer" and stored["port"] is None
    assert json.loads(stored["extra"])["key_variable"] == "pioneer_api_key"
    answer = _press_test(page, airflow_ui, "pioneer_from_form")
    _shot(page, "test-button-form-connection")
    assert "Test Connection Successful" in answer, answer


def _open_in_ui(page: Any, ui: Deployment, link: Any, path: str) -> None:
    """Click ``link`` in the view's iframe: the Airflow UI itself (the top page) lands on ``path``."""
    href = link.get_attribute("href")
    assert href is not None and href.endswith(path), (href, path)
    link.click()
    page.wait_for_url(f"{ui.url}{path}", timeout=TIMEOUT_MS)
    # The UI's own page, not the view inside its frame any more.
    assert page.url == f"{ui.url}{path}"
    assert not page.locator("iframe[title='Pioneer']").count()


def test_every_kind_of_link_in_the_view_lands_where_it_says(airflow_ui: Deployment, page_as: Any) -> None:
    """Airflow 3.3 sandboxes plugin iframes without allow-top-navigation (nor allow-popups): a
    target='_top' link did nothing. Each kind is clicked here and must land on its page."""
    run_id, rotation_run = airflow_ui.runs[BATCH], airflow_ui.runs[ROTATION]
    page = page_as("admin")
    frame = _view_frame(page, airflow_ui)
    row = frame.locator(f"#runs tr[data-run-id='{run_id}']").first
    map_index = int(row.get_attribute("data-map-index") or "-1")
    task_id = row.get_attribute("data-task-id")
    task_path = f"/dags/{BATCH}/runs/{quote(run_id, safe='')}/tasks/{task_id}"
    if map_index >= 0:
        task_path += f"/mapped/{map_index}"
    # A task's log (the runs table).
    _open_in_ui(page, airflow_ui, row.locator("a[data-ui-link='log']"), task_path)
    page.get_by_text(str(task_id)).first.wait_for(timeout=TIMEOUT_MS)
    _shot(page, "view-link-log")
    # A run (the runs table).
    frame = _view_frame(page, airflow_ui)
    row = frame.locator(f"#runs tr[data-run-id='{run_id}']").first
    _open_in_ui(
        page, airflow_ui, row.locator("a[data-ui-link='run']"), f"/dags/{BATCH}/runs/{quote(run_id, safe='')}"
    )
    # The last rotation's run and its log (the rotation box).
    frame = _view_frame(page, airflow_ui)
    rotation = frame.locator("#rotation tr[data-variable='pioneer_api_key']")
    _open_in_ui(
        page,
        airflow_ui,
        rotation.locator("a[data-ui-link='run']"),
        f"/dags/{ROTATION}/runs/{quote(rotation_run, safe='')}",
    )
    frame = _view_frame(page, airflow_ui)
    rotation = frame.locator("#rotation tr[data-variable='pioneer_api_key']")
    _open_in_ui(
        page,
        airflow_ui,
        rotation.locator("a[data-ui-link='log']"),
        f"/dags/{ROTATION}/runs/{quote(rotation_run, safe='')}/tasks/rotate_api_key",
    )
    # The JSON link opens the data inside the frame (the view's own URL space).
    frame = _view_frame(page, airflow_ui)
    frame.locator("#json-link").click()
    view = next(f for f in page.frames if f != page.main_frame)
    view.wait_for_url(re.compile(r"/pioneer/api/view\?"), timeout=TIMEOUT_MS)
    assert json.loads(view.locator("body").inner_text())["runs"]
    # The view opened on its own (no frame): a plain link.
    page.goto(f"{airflow_ui.url}/pioneer/", wait_until="domcontentloaded")
    page.locator("#runs a[data-ui-link='log']").first.click()
    page.wait_for_url(re.compile(rf"/dags/{BATCH}/runs/"), timeout=TIMEOUT_MS)


def test_times_show_in_the_uis_timezone(airflow_ui: Deployment, page_as: Any) -> None:
    page = page_as("admin")
    # The zone a user picks in the UI's timezone menu: the UI keeps it in localStorage["timezone"].
    page.goto(f"{airflow_ui.url}/", wait_until="domcontentloaded")
    page.evaluate("() => localStorage.setItem('timezone', JSON.stringify('Asia/Kolkata'))")
    frame = _view_frame(page, airflow_ui)
    stamp = frame.locator("time[datetime]").first
    iso, shown = stamp.get_attribute("datetime"), stamp.inner_text()
    assert iso is not None and iso.endswith("+00:00"), iso
    local = datetime.fromisoformat(iso).astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert shown.startswith(local.strftime("%Y-%m-%d %H:%M:%S")), (iso, shown)
    assert "GMT+5:30" in shown, shown
    assert frame.locator("span[data-timezone]").first.inner_text() == "Asia/Kolkata"
    _shot(page, "view-timezone")


def _airflow_cli(ui: Deployment, *args: str) -> str:
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run(
        [airflow, *args], env=ui.env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def test_a_variable_saved_masked_is_flagged_not_shown_as_a_key(airflow_ui: Deployment, page_as: Any) -> None:
    """The masked-Variable trap: the UI's edit dialog shows an *api_key* Variable's fields as ***,
    and Save stores them. The view then said key '***', age -, outcome success, no warning."""
    saved = _airflow_cli(airflow_ui, "variables", "get", "pioneer_api_key").strip()
    assert saved.startswith("{") and "***" not in saved, "could not read the Variable to restore it"
    masked = {"api_key": "***", "name": "***", "created_at": "***", "pending_revoke": ["***"]}
    changed = airflow_ui.api(
        "PATCH",
        "/api/v2/variables/pioneer_api_key",
        json={"key": "pioneer_api_key", "value": json.dumps(masked)},
    )
    assert changed.status_code == 200, changed.text
    try:
        page = page_as("admin")
        frame = _view_frame(page, airflow_ui)
        rotation = frame.locator("#rotation tr[data-variable='pioneer_api_key']")
        assert "no usable key" in rotation.inner_text()
        assert "***" not in rotation.locator("td").nth(1).inner_text()
        alert = frame.locator("[role='alert']", has_text="No usable API key")
        alert.first.wait_for(timeout=TIMEOUT_MS)
        assert "masked placeholder" in alert.first.inner_text()
        _shot(page, "view-masked-variable")
    finally:
        _airflow_cli(airflow_ui, "variables", "set", "pioneer_api_key", saved)


def _edit_dialog(page: Any, ui: Deployment, key: str) -> Any:
    """The UI's edit dialog of Variable ``key`` (Admin -> Variables, its row's "Edit Variable")."""
    page.goto(f"{ui.url}/variables", wait_until="domcontentloaded")
    page.get_by_placeholder("Search Keys").fill(key)
    # The search applies after a debounce and re-renders the table (an edit dialog opened before
    # that closes with its row): wait until the table lists this Variable alone.
    page.get_by_text(re.compile(r"^1 Variable$")).wait_for(timeout=TIMEOUT_MS)
    row = page.locator("tr", has=page.get_by_text(key, exact=True))
    assert row.count() == 1, f"Variable {key!r} is not listed in Admin -> Variables"
    dialog = page.get_by_role("dialog")
    for _ in range(3):
        row.first.get_by_role("button", name="Edit Variable").click()
        try:
            dialog.wait_for(timeout=10_000)
            break
        except Exception:  # playwright's TimeoutError: the click landed during a re-render
            continue
    dialog.locator("textarea").first.wait_for(timeout=TIMEOUT_MS)
    return dialog


def _stored(ui: Deployment, key: str) -> str:
    return _airflow_cli(ui, "variables", "get", key).strip()


def _wait_stored(ui: Deployment, key: str, done: Any, what: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        value = _stored(ui, key)
        if done(value):
            return value
        assert time.monotonic() < deadline, f"Variable {key!r} never {what}: {value[:80]!r}"
        time.sleep(1)


def _ti_state(ui: Deployment, dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    answer = ui.api("GET", f"{path}/{map_index}" if map_index >= 0 else path)
    return answer.json().get("state") if answer.status_code == 200 else None


def test_the_masked_variable_recovery_follows_the_message(airflow_ui: Deployment, page_as: Any) -> None:
    """Save the key Variable from the UI's edit dialog (it shows ***), read the lost key's name in the
    companion Variable's dialog, see the task log name it, follow its advice, rotate: recovered."""
    from airflow_provider_pioneer.stored_key import parse_stored
    from airflow_provider_pioneer.testing import EmulatorControl

    saved = _stored(airflow_ui, "pioneer_api_key")
    lost_name = json.loads(saved)["name"]
    recovered = False
    batch_run = None
    page = page_as("admin")
    try:
        # 1. The trap: the edit dialog shows every field of the key's document as ***; Save stores them.
        dialog = _edit_dialog(page, airflow_ui, "pioneer_api_key")
        shown = dialog.locator("textarea").first.input_value()
        assert "***" in shown and lost_name not in shown, shown
        _shot(page, "recovery-1-masked-dialog")
        dialog.get_by_role("button", name=re.compile("Save")).click()
        masked = _wait_stored(airflow_ui, "pioneer_api_key", lambda v: "***" in v, "was saved masked")
        assert parse_stored(masked).problem == "masked", masked
        # 2. The companion Variable's dialog shows the key's name and dates, never the key.
        dialog = _edit_dialog(page, airflow_ui, "pioneer_key_rotation")
        info = dialog.locator("textarea").first.input_value()
        _shot(page, "recovery-2-companion-dialog")
        assert lost_name in info and "***" not in info, info
        assert json.loads(saved)["api_key"] not in info
        assert json.loads(info)["created_at"], info
        page.keyboard.press("Escape")
        # 3. A DAG using the connection: its task log names the lost key (not '***').
        batch_run = _run_dag(airflow_ui, BATCH)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while _ti_state(airflow_ui, BATCH, batch_run, "extract_entities", 0) not in (
            "up_for_retry",
            "failed",
        ):
            assert time.monotonic() < deadline, "the inference task never failed on the masked Variable"
            time.sleep(2)
        page.goto(
            f"{airflow_ui.url}/dags/{BATCH}/runs/{batch_run}/tasks/extract_entities/mapped/0",
            wait_until="domcontentloaded",
        )
        page.get_by_text(re.compile("The lost key is named")).first.wait_for(timeout=TIMEOUT_MS)
        log = page.locator("body").inner_text()
        _shot(page, "recovery-3-task-log")
        assert f"The lost key is named '{lost_name}'" in log, log[-3000:]
        assert "named '***'" not in log
        # 4. Its advice: a working key (made in the Pioneer console, here the emulator's) as the
        # document it shows, typed into the same dialog; then the rotation.
        control = EmulatorControl(airflow_ui.emulator.url)
        try:
            console_key = control.create_key("made-in-the-console")
        finally:
            control.close()
        document = json.dumps({"api_key": console_key, "name": "made-in-the-console"})
        dialog = _edit_dialog(page, airflow_ui, "pioneer_api_key")
        dialog.locator("textarea").first.fill(document)
        dialog.get_by_role("button", name=re.compile("Save")).click()
        _wait_stored(airflow_ui, "pioneer_api_key", lambda v: console_key in v, "took the typed key")
        rotation_run = _run_dag(airflow_ui, ROTATION)
        assert _wait_run(airflow_ui, ROTATION, rotation_run) == "success", "the rotation did not recover"
        recovered = True
        after = json.loads(_stored(airflow_ui, "pioneer_api_key"))
        assert after["api_key"] not in ("***", console_key) and after["name"] not in (lost_name, "***")
        assert json.loads(_stored(airflow_ui, "pioneer_key_rotation"))["name"] == after["name"]
    finally:
        if batch_run is not None:  # no retries of the failed batch run behind the next tests' backs
            airflow_ui.api("PATCH", f"/api/v2/dags/{BATCH}/dagRuns/{batch_run}", json={"state": "failed"})
        if not recovered:
            _airflow_cli(airflow_ui, "variables", "set", "pioneer_api_key", saved)
