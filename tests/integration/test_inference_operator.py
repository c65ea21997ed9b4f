"""PioneerInferenceOperator against the emulator over real HTTP (execute() with a minimal context)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator
from airflow_provider_pioneer.testing import PioneerEmulator

LABELS = ["person", "organization", "location"]
MODEL = "fastino/gliner2-base-v1"


class FakeTI:
    """What execute() needs of the task instance: somewhere to push XComs."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def texts_with_ids(n: int, prefix: str = "doc") -> list[dict[str, Any]]:
    names = ["Alice Smith", "Bob Jones", "Maria Garcia", "Chen Wei"]
    orgs = ["Acme Corp", "Globex", "Initech"]
    return [
        {"id": f"{prefix}-{i}", "text": f"{names[i % 4]} joined {orgs[i % 3]} in Paris, item {prefix} {i}."}
        for i in range(n)
    ]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[PioneerEmulator]:
    with PioneerEmulator(latency_ms=2, rate_limit_per_minute=None) as e:
        monkeypatch.setenv(
            "AIRFLOW_CONN_PIONEER_DEFAULT",
            json.dumps({"conn_type": "pioneer", "host": e.url, "password": e.api_key}),
        )
        yield e


def run(ti: FakeTI | None = None, **kwargs: Any) -> tuple[Any, FakeTI]:
    ti = ti or FakeTI()
    params: dict[str, Any] = {
        "task_id": "infer",
        "model_id": MODEL,
        "entities": LABELS,
        "requests_per_minute": 60_000,
        "max_concurrency": 4,
    }
    params.update(kwargs)
    op = PioneerInferenceOperator(**params)
    return op.execute({"ti": ti}), ti  # type: ignore[arg-type]


def set_fast_retries(emu: PioneerEmulator, monkeypatch: pytest.MonkeyPatch, max_retries: int) -> None:
    """Same connection, a small retry budget and short waits, so an outage is declared quickly."""
    conn = {
        "conn_type": "pioneer",
        "host": emu.url,
        "password": emu.api_key,
        "extra": {"max_retries": max_retries, "deadline": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(conn))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_no_key(emu: PioneerEmulator, *texts: str) -> None:
    for text in texts:
        assert emu.api_key not in text


def test_1000_texts_with_ids_in_order_with_the_emulators_answers(
    emu: PioneerEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    texts = texts_with_ids(1000)
    records, ti = run(texts=texts, batch_size=50)
    assert len(records) == 1000
    assert [r["id"] for r in records] == [t["id"] for t in texts]
    for t, r in zip(texts[::97], records[::97], strict=True):  # a spread of items, checked one by one
        assert r["result"] == emu.extract(t["text"], LABELS)
    summary = ti.xcoms["pioneer_summary"]
    assert summary["total"] == summary["succeeded"] == 1000
    assert summary["failed"] == summary["skipped_from_checkpoint"] == 0
    c = emu.counters()
    assert summary["requests"] == c["requests"]["POST /inference"] == 20
    assert summary["token_usage"] == c["tokens_billed"]
    logged = "".join(capfd.readouterr())
    assert "Pioneer inference summary: 1000/1000 items written (1000 succeeded, 0 failed" in logged
    assert_no_key(emu, logged, json.dumps(ti.xcoms), json.dumps(records))


def test_output_path_streams_jsonl_and_returns_the_summary(emu: PioneerEmulator, tmp_path: Path) -> None:
    texts = [t["text"] for t in texts_with_ids(130)]
    out = tmp_path / "out" / "result.jsonl"
    summary, ti = run(texts=texts, output_path=f"file://{out}", batch_size=16)
    assert summary == ti.xcoms["pioneer_summary"]
    assert summary["output_path"] == f"file://{out}"
    records = read_jsonl(out)
    assert [r["id"] for r in records] == list(range(130))  # plain strings: the index is the id
    assert records[5]["result"] == emu.extract(texts[5], LABELS)


def test_faults_every_item_exactly_once_and_the_counts_add_up(
    emu: PioneerEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.inject(status=500, rate=0.10)
    emu.inject(fault="drop", rate=0.05)
    emu.inject(status=429, times=6, after=10, headers={"Retry-After": "1"})
    texts = texts_with_ids(1000, prefix="faulty")
    out = tmp_path / "out.jsonl"
    summary, _ = run(
        texts=texts, output_path=str(out), batch_size=10, max_concurrency=4, progress_interval=0.5
    )
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [t["id"] for t in texts]  # once each, in order
    assert all("result" in r for r in records), [r for r in records if "error" in r][:3]
    c = emu.counters()
    statuses = c["statuses"]
    fired = {k.split("-", 1)[1]: v for k, v in c["faults_fired"].items()}
    assert fired["500"] >= 3 and fired["drop"] >= 1 and fired["429"] == 6, fired
    assert summary["succeeded"] + summary["failed"] == summary["total"] == 1000
    assert summary["retries"] > 0 and summary["rate_limited"] == statuses["429"]
    # Every request the client sent either got an answer or was dropped by a fault.
    drops = sum(v for k, v in c["faults_fired"].items() if "drop" in k)
    assert summary["requests"] == c["requests"]["POST /inference"] == sum(statuses.values()) + drops
    assert c["inference_requests_committed"] == 100  # dropped/failed attempts were not billed
    logged = "".join(capfd.readouterr())
    # Progress at a steady cadence while the retries slow the run down.
    assert re.search(
        r"Pioneer inference: \d+/1000 items \(.*%\), .* items/s, ETA \S+, \d+ requests, \d+ retries", logged
    )
    assert set(c["text_counts"].values()) == {1}


def test_one_poisoned_text_in_a_batch_of_64(emu: PioneerEmulator) -> None:
    texts = texts_with_ids(64)
    texts[40]["text"] = "   "
    records, ti = run(texts=texts, batch_size=64, max_failed_ratio=0.05)
    errors = [r for r in records if "error" in r]
    assert [e["id"] for e in errors] == ["doc-40"]
    assert errors[0]["error"]["status"] == 422
    assert sum(1 for r in records if "result" in r) == 63
    assert ti.xcoms["pioneer_summary"]["failed"] == 1
    assert emu.counters()["texts_committed"] == 63


def test_failures_over_max_failed_ratio_fail_the_task_with_counts_and_examples(emu: PioneerEmulator) -> None:
    texts = texts_with_ids(20)
    texts[3]["text"] = ""
    texts[7]["text"] = "x" * 20_000
    with pytest.raises(AirflowFailException) as info:
        run(texts=texts, batch_size=10, max_failed_ratio=0.05)
    message = str(info.value)
    assert "2 of 20 items failed (10.00% > max_failed_ratio 5%)" in message
    assert "id='doc-3'" in message and "id='doc-7'" in message
    assert_no_key(emu, message)


def test_402_stops_at_once_and_keeps_what_was_done(emu: PioneerEmulator, tmp_path: Path) -> None:
    emu.inject(status=402, after=5)
    out = tmp_path / "out.jsonl"
    texts = texts_with_ids(400, prefix="pay")
    ti = FakeTI()
    with pytest.raises(AirflowFailException) as info:
        run(ti, texts=texts, output_path=str(out), batch_size=10, max_concurrency=1)
    message = str(info.value)
    assert "Top up the Pioneer account's credits" in message and message.count("Top up") == 1
    c = emu.counters()
    assert c["statuses"] == {"200": 5, "402": 1}  # nothing after the first 402
    assert not out.exists()  # not complete, so not in place
    partial = read_jsonl(tmp_path / "out.jsonl.partial")
    assert [r["id"] for r in partial] == [t["id"] for t in texts[:50]]
    checkpoint = json.loads((tmp_path / "out.jsonl.checkpoint.json").read_text())
    assert checkpoint["records"] == 50 and checkpoint["complete"] is False
    assert ti.xcoms["pioneer_summary"]["succeeded"] == 50
    assert_no_key(emu, message, json.dumps(ti.xcoms))

    # Credits are back: the retry sends only what is left.
    emu.clear_faults()
    emu.reset_counters()
    summary, _ = run(texts=texts, output_path=str(out), batch_size=10, max_concurrency=1)
    assert summary["skipped_from_checkpoint"] == 50 and summary["succeeded"] == 400
    assert emu.counters()["texts_committed"] == 350
    assert [r["id"] for r in read_jsonl(out)] == [t["id"] for t in texts]


def test_an_outage_that_outlasts_the_retries_is_left_to_airflows_retry(
    emu: PioneerEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5xx past the client's retries: no error records, a retryable failure, and the retry resumes."""
    emu.inject(status=503, after=4)  # the API goes down after 4 good requests and stays down
    out = tmp_path / "out.jsonl"
    texts = texts_with_ids(200, prefix="outage")
    set_fast_retries(emu, monkeypatch, max_retries=2)
    ti = FakeTI()
    with pytest.raises(AirflowException) as info:
        run(ti, texts=texts, output_path=str(out), batch_size=10, max_concurrency=1)
    assert not isinstance(info.value, AirflowFailException)  # Airflow may retry this one
    message = str(info.value)
    assert (
        "HTTP 503" in message and "40 of 200 records are saved" in message and "an Airflow retry" in message
    )
    assert ti.xcoms["pioneer_summary"]["failed"] == 0  # an outage is not a verdict on the items
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl.partial")] == [t["id"] for t in texts[:40]]
    assert emu.counters()["statuses"] == {"200": 4, "503": 3}  # one batch, its 2 retries, then stop

    emu.clear_faults()  # the outage ends; the Airflow retry finishes the job, paying for nothing twice
    summary, _ = run(texts=texts, output_path=str(out), batch_size=10, max_concurrency=1)
    assert summary["skipped_from_checkpoint"] == 40 and summary["succeeded"] == 200 and summary["failed"] == 0
    assert [r["id"] for r in read_jsonl(out)] == [t["id"] for t in texts]
    assert set(emu.counters()["text_counts"].values()) == {1}


def test_402_with_concurrency_sends_nothing_after_the_first_402(emu: PioneerEmulator, tmp_path: Path) -> None:
    emu.set_latency(20)
    emu.inject(status=402, after=12)
    with pytest.raises(AirflowFailException):
        run(
            texts=texts_with_ids(2000), output_path=str(tmp_path / "o.jsonl"), batch_size=5, max_concurrency=4
        )
    c = emu.counters()
    # Only requests already on the wire when the first 402 came back can get a 402 too.
    assert 1 <= c["statuses"]["402"] <= 4
    assert c["requests"]["POST /inference"] == 12 + c["statuses"]["402"]


def test_spend_cap_and_revoked_key_fail_fast_with_what_to_do(emu: PioneerEmulator) -> None:
    emu.inject(status=429, headers={"X-RateLimit-Reason": "daily_spend_cap_exceeded", "Retry-After": "3600"})
    with pytest.raises(AirflowFailException, match="spend cap is reached; it resets at 00:00 UTC"):
        run(texts=texts_with_ids(30), batch_size=10)
    assert emu.counters()["requests"]["POST /inference"] <= 4
    emu.clear_faults()
    emu.reset_counters()
    emu.inject(status=401)
    with pytest.raises(
        AirflowFailException,
        match=r"Check the connection's API key.*The connection is 'pioneer_default'; then clear this task",
    ) as info:
        run(texts=texts_with_ids(30), batch_size=10)
    assert_no_key(emu, str(info.value))


def test_complete_output_for_the_same_request_makes_no_call(emu: PioneerEmulator, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    texts = texts_with_ids(100)
    run(texts=texts, output_path=str(out), batch_size=25)
    first = out.read_bytes()
    emu.reset_counters()
    summary, _ = run(texts=texts, output_path=str(out), batch_size=25)
    assert emu.counters()["requests"].get("POST /inference", 0) == 0
    assert summary["skipped_from_checkpoint"] == summary["succeeded"] == 100 and summary["requests"] == 0
    assert out.read_bytes() == first

    # Different inputs (or options) never reuse it.
    changed = [*texts[:-1], {"id": "doc-99", "text": "Chen Wei moved to Globex."}]
    summary, _ = run(texts=changed, output_path=str(out), batch_size=25)
    assert summary["skipped_from_checkpoint"] == 0
    assert emu.counters()["requests"]["POST /inference"] == 4
    summary, _ = run(texts=changed, output_path=str(out), batch_size=25, threshold=0.9)
    assert summary["skipped_from_checkpoint"] == 0
    assert read_jsonl(out)[99]["result"] == emu.extract("Chen Wei moved to Globex.", LABELS, threshold=0.9)


def test_input_path_jsonl_with_custom_fields_and_options(emu: PioneerEmulator, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [{"key": f"k{i}", "body": t["text"]} for i, t in enumerate(texts_with_ids(45))]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    run(
        input_path=f"file://{src}",
        id_field="key",
        text_field="body",
        output_path=str(out),
        batch_size=8,
        include_spans=False,
        include_confidence=False,
        threshold="0.3",
    )
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [r["key"] for r in rows]
    expected = emu.extract(
        rows[2]["body"], LABELS, threshold=0.3, include_confidence=False, include_spans=False
    )
    assert records[2]["result"] == expected
    assert Counter(emu.counters()["text_counts"].values()) == Counter({1: 45})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"texts": ["a"], "input_path": "/x.jsonl"}, "exactly one of texts"),
        ({}, "exactly one of texts"),
        ({"texts": "just one"}, "For a single text pass"),
        ({"texts": ["a"], "entities": "person"}, "entities must be a non-empty list"),
        ({"texts": ["a"], "entities": None}, "Give entities"),
        ({"texts": ["a"], "threshold": "high"}, "threshold must be a number"),
        ({"texts": ["a"], "model_id": " "}, "model_id is required"),
    ],
)
def test_bad_arguments_fail_clearly_before_any_request(
    emu: PioneerEmulator, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AirflowFailException, match=message):
        run(**kwargs)
    assert emu.counters()["requests"].get("POST /inference", 0) == 0


def test_unknown_model_fails_fast(emu: PioneerEmulator) -> None:
    with pytest.raises(AirflowFailException, match="Check the model_id") as info:
        run(texts=texts_with_ids(50), model_id="no-such-model", batch_size=10, max_concurrency=1)
    assert emu.counters()["requests"]["POST /inference"] == 1
    message = str(info.value)
    assert message.count("Check the model_id") == 1 and "The model_id is 'no-such-model'" in message
