"""PioneerInferenceOperator against the emulator over real HTTP (execute() with a minimal context)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator
from airflow_provider_pioneer.testing import PioneerEmulator
from airflow_provider_pioneer.testing.faults import BAD_RESULTS, ECHO_ENVELOPES
from tests.object_stores import checkpointed_records, incomplete_checkpoint, manifest_of

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
    assert (
        "Pioneer inference summary: 1000/1000 items written (1000 succeeded, 0 failed, 0 from checkpoint)."
        in logged
    )
    assert "  calls: 20 requests, 0 retries, 0 x 429;" in logged
    # A few short lines, readable without scrolling sideways (the old summary was one ~330-char line).
    messages = re.findall(r"\[info\s*\] (.*?)\s*\[airflow\.task", logged)
    block = messages[messages.index(next(m for m in messages if m.startswith("Pioneer inference summary"))) :]
    assert [m.split(":")[0] for m in block] == ["Pioneer inference summary", "  time", "  calls", "  output"]
    assert all(len(m) <= 120 for m in messages), messages
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
        r"Pioneer inference: \d+/1000 items \(.*%\), .* items/s, ETA \S+; \d+ requests, \d+ retries, "
        r"\d+ x 429; pace [\d,]+/min",
        logged,
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
    partial = checkpointed_records(str(out))
    assert [r["id"] for r in partial] == [t["id"] for t in texts[:50]]
    checkpoint = manifest_of(str(out))
    assert checkpoint is not None and checkpoint["records"] == 50 and checkpoint["complete"] is False
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
    assert [r["id"] for r in checkpointed_records(str(out))] == [t["id"] for t in texts[:40]]
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


# -- inputs and answers that standard JSON cannot hold (issue 8, item 4) --------------------------


def strict_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read JSONL the way a strict consumer would: UTF-8 only, no NaN/Infinity."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    text = path.read_bytes().decode("utf-8")  # strict: a lone surrogate cannot even be encoded
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


@pytest.mark.parametrize(
    ("line", "where", "what"),
    [
        ('{"id": "\\ud83d", "text": "Alice Smith"}', "line 4", "lone surrogate"),
        ('{"id": NaN, "text": "Alice Smith"}', "line 4", "NaN or Infinity"),
        ('{"id": -Infinity, "text": "Alice Smith"}', "line 4", "NaN or Infinity"),
        ('{"id": {"part": "\\udc00"}, "text": "Alice Smith"}', "line 4", "lone surrogate"),
    ],
)
def test_an_id_json_cannot_hold_is_refused_before_anything_is_billed(
    emu: PioneerEmulator, tmp_path: Path, line: str, where: str, what: str
) -> None:
    """Today a surrogate id is billed, then crashes the writer (and every Airflow try bills it again)."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "Bob Jones"}\n\n{"id": "b", "text": "Chen Wei"}\n' + line + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(AirflowFailException, match=f"{where}: the id \\('id'\\) holds .*{what}") as info:
        run(input_path=str(src), output_path=str(out), batch_size=2)
    assert "nothing was sent" in str(info.value)
    assert emu.counters()["requests"].get("POST /inference", 0) == 0
    assert not list(tmp_path.glob("out.jsonl*"))


@pytest.mark.parametrize(
    ("bad", "what"), [("\ud83d", "lone surrogate"), (float("nan"), "NaN"), (float("inf"), "Infinity")]
)
def test_an_id_json_cannot_hold_in_texts_is_refused_naming_its_position(
    emu: PioneerEmulator, bad: Any, what: str
) -> None:
    texts = [*texts_with_ids(3), {"id": bad, "text": "Alice Smith"}]
    with pytest.raises(AirflowFailException, match=f"texts\\[3\\]: the id \\('id'\\) holds .*{what}"):
        run(texts=texts)
    assert emu.counters()["requests"].get("POST /inference", 0) == 0


@pytest.mark.parametrize("source", ["texts", "input_path"])
def test_a_text_that_is_not_valid_unicode_gets_an_error_record_and_is_never_sent(
    emu: PioneerEmulator, tmp_path: Path, source: str
) -> None:
    rows = texts_with_ids(6)
    rows[2]["text"] = "Alice \ud83d Smith in Paris"
    out = tmp_path / "out.jsonl"
    if source == "texts":
        kwargs: dict[str, Any] = {"texts": rows}
    else:
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))  # ASCII escapes: "\ud83d"
        kwargs = {"input_path": str(src)}
    summary, _ = run(**kwargs, output_path=str(out), batch_size=3, max_failed_ratio=0.2)
    records = strict_jsonl(out)
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert records[2]["error"]["status"] is None
    assert (
        "not valid Unicode" in records[2]["error"]["message"] and "\\ud83d" in records[2]["error"]["message"]
    )
    assert [r["result"] for r in records if "result" in r] == [
        emu.extract(r["text"], LABELS) for i, r in enumerate(rows) if i != 2
    ]
    assert summary["failed"] == 1 and summary["succeeded"] == 5
    assert emu.counters()["texts_committed"] == 5  # the bad text never left


def test_an_answer_that_json_cannot_hold_is_an_error_record_not_a_crash_after_billing(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    """A server whose result holds NaN or a lone surrogate: the run goes on, the output stays standard JSON."""
    good = {"entities": {"person": []}}
    # Raw JSON text: NaN and a "\ud83d" escape are what Python's json (and requests) read without complaint.
    body = (
        '{"result": [{"entities": {"person": []}}, '
        '{"entities": {"person": [{"text": "Alice", "confidence": NaN}]}}, '
        '{"entities": {"person": [{"text": "Al\\ud83dce", "confidence": 0.9}]}}], "token_usage": 3}'
    )
    emu.inject(status=200, body=body, content_type="application/json", times=1, after=1)
    out = tmp_path / "out.jsonl"
    rows = texts_with_ids(9)
    summary, _ = run(texts=rows, output_path=str(out), batch_size=3, max_concurrency=1, max_failed_ratio=0.5)
    records = strict_jsonl(out)
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert records[3] == {"id": "doc-3", "result": good}
    assert records[4]["error"]["status"] == 200 and "NaN or Infinity" in records[4]["error"]["message"]
    assert records[5]["error"]["status"] == 200 and "lone surrogate" in records[5]["error"]["message"]
    assert summary["failed"] == 2 and summary["succeeded"] == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entities": ["person\ud83d"]}, "entities holds '\\\\ud83d', a lone surrogate"),
        ({"entities": None, "schema": {"entities": ["person"], "weight": float("nan")}}, "schema holds NaN"),
    ],
)
def test_options_json_cannot_hold_are_refused_before_any_request(
    emu: PioneerEmulator, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AirflowFailException, match=message):
        run(texts=texts_with_ids(3), **kwargs)
    assert emu.counters()["requests"].get("POST /inference", 0) == 0


# -- duplicate ids (issue 8, item 9) --------------------------------------------------------------


def test_duplicate_ids_are_allowed_counted_and_warned_about(
    emu: PioneerEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ids = ["a", "b", "a", "c", "b", "a", 1, "1"]  # 1 and "1" differ in the output: not duplicates
    rows = [{"id": i, "text": f"Alice Smith met Bob Jones, note {n}."} for n, i in enumerate(ids)]
    out = tmp_path / "out.jsonl"
    summary, ti = run(texts=rows, output_path=str(out), batch_size=3)
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ids  # one record per input, in input order
    assert [r["result"] for r in records] == [emu.extract(r["text"], LABELS) for r in rows]
    assert summary["duplicate_ids"] == 3 == ti.xcoms["pioneer_summary"]["duplicate_ids"]
    logged = "".join(capfd.readouterr())
    assert "3 inputs repeat an id seen earlier (first: 'a', 'b')" in logged
    assert "  duplicate ids: 3 inputs repeat an earlier id" in logged


# -- 413 from a proxy (issue 8, item 5) -----------------------------------------------------------


def test_a_413_from_a_proxy_is_split_like_a_422_and_every_text_gets_its_result(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    # The proxy refuses the first (whole) batch; its halves get through.
    emu.inject(status=413, times=1, content_type="text/html")
    rows = texts_with_ids(16)
    out = tmp_path / "out.jsonl"
    summary, _ = run(texts=rows, output_path=str(out), batch_size=16, max_concurrency=1)
    records = read_jsonl(out)
    assert [r["result"] for r in records] == [emu.extract(r["text"], LABELS) for r in rows]
    assert summary["failed"] == 0
    # the 413, one probe of the options, then the two halves
    assert emu.counters()["statuses"] == {"413": 1, "200": 3}


def test_a_413_even_for_one_tiny_text_fails_the_task_saying_what_to_do(emu: PioneerEmulator) -> None:
    emu.inject(status=413, content_type="text/html")
    with pytest.raises(AirflowFailException, match="shrink the schema, or raise the proxy's body-size limit"):
        run(texts=texts_with_ids(8), batch_size=8, max_concurrency=1)
    assert emu.counters()["statuses"] == {"413": 2}  # the batch, and the one probe


# -- a 200 whose results are null or malformed (issue 8, item 6) ----------------------------------


@pytest.mark.parametrize("bad", BAD_RESULTS)
def test_null_or_malformed_results_are_not_written_and_are_sent_again_on_resume(
    emu: PioneerEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """Every kind of spoiled entry the emulator's ``bad_results`` fault serves, in a real, billed 200.

    ``{}`` ("no_entities") answered a request that asked for entities is malformed too: a text
    with none found is ``{"entities": {label: []}}``.
    """
    emu.inject(fault="bad_results", indices=[1], bad=bad, after=2)
    set_fast_retries(emu, monkeypatch, max_retries=1)
    rows = texts_with_ids(30, prefix="null")
    out = tmp_path / "out.jsonl"
    ti = FakeTI()
    with pytest.raises(AirflowException) as info:
        run(ti, texts=rows, output_path=str(out), batch_size=5, max_concurrency=1)
    assert not isinstance(info.value, AirflowFailException)  # an Airflow retry may succeed
    where = "for a batch of 5 texts" if bad == "missing" else "result 1 of 5"
    assert where in str(info.value) and "10 of 30 records are saved" in str(info.value)
    assert ti.xcoms["pioneer_summary"]["succeeded"] == 10 and ti.xcoms["pioneer_summary"]["failed"] == 0
    assert [r["id"] for r in checkpointed_records(str(out))] == [r["id"] for r in rows[:10]]
    spoiled_billed = {r["text"]: emu.counters()["text_counts"][r["text"]] for r in rows[10:15]}

    emu.clear_faults()  # the server is healthy again: the retry sends the unanswered items
    summary, _ = run(texts=rows, output_path=str(out), batch_size=5, max_concurrency=1)
    assert summary["skipped_from_checkpoint"] == 10 and summary["succeeded"] == 30
    records = read_jsonl(out)
    assert [r["result"] for r in records] == [emu.extract(r["text"], LABELS) for r in rows]
    counts = emu.counters()["text_counts"]
    # Saved records are never billed again; the spoiled batch once more, the rest once.
    assert [counts[r["text"]] for r in rows[:10] + rows[15:]] == [1] * 25
    assert {t: counts[t] for t in spoiled_billed} == {t: n + 1 for t, n in spoiled_billed.items()}


@pytest.mark.parametrize("status", [422, 500])
@pytest.mark.parametrize("envelope", ECHO_ENVELOPES)
def test_a_server_echoing_the_key_leaves_no_piece_in_logs_errors_xcoms_or_files(
    emu: PioneerEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    envelope: str,
    status: int,
) -> None:
    """The whole operator, not only the client: a 422 echo becomes error records in the output
    (each with the server's message), a 500 echo the task's error; nothing anywhere holds a piece."""
    import logging

    from airflow_provider_pioneer.redaction import FRAGMENT

    # offset=-25: the body starts with the key's tail (no whole key for a whole-key masker to find).
    emu.inject(fault="echo_key", status=status, envelope=envelope, body_size=2048, offset=-25, after=2)
    set_fast_retries(emu, monkeypatch, max_retries=1)
    rows = texts_with_ids(20, prefix="echo")
    ti = FakeTI()
    with caplog.at_level(logging.DEBUG), pytest.raises(AirflowException) as info:
        run(ti, texts=rows, output_path=str(tmp_path / "out.jsonl"), batch_size=5, max_concurrency=1)
    chain: list[str] = []
    seen: BaseException | None = info.value
    while seen is not None:
        chain += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    files = [f.read_text(errors="replace") for f in tmp_path.rglob("*") if f.is_file()]
    captured = capfd.readouterr()
    shown = " ".join(
        [*chain, caplog.text, captured.out, captured.err, json.dumps(ti.xcoms, default=str), *files]
    )
    if status == 422:  # the error records were written, with the server's (redacted) message
        assert any('"error"' in f for f in files)
    random_part = emu.api_key.split("_sk_", 1)[-1]
    pieces = {random_part[i : i + FRAGMENT] for i in range(len(random_part) - FRAGMENT + 1)}
    assert not [p for p in pieces if p in shown]


# -- on_kill (issue 8, item 10) -------------------------------------------------------------------


def test_on_kill_stops_sending_at_once_and_checkpoints_what_is_done(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    import threading

    emu.set_latency(30)
    rows = texts_with_ids(3000, prefix="kill")
    out = tmp_path / "out.jsonl"
    op = PioneerInferenceOperator(
        task_id="infer", model_id=MODEL, entities=LABELS, texts=rows, output_path=str(out),
        batch_size=5, max_concurrency=3, requests_per_minute=60_000, progress_interval=0.2,
    )  # fmt: skip
    ti = FakeTI()
    raised: list[BaseException] = []

    def execute() -> None:
        try:
            op.execute({"ti": ti})  # type: ignore[arg-type]
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 60
    while emu.counters()["inference_requests_committed"] < 20:
        assert worker.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    emu.set_latency(20_000)  # what is on the wire now hangs: execute() must not wait for it
    op.on_kill()
    sent_at_kill = emu.counters()["requests"]["POST /inference"]
    worker.join(timeout=10)
    assert not worker.is_alive(), "execute() kept running after on_kill"
    time.sleep(0.5)
    sent = emu.counters()["requests"]["POST /inference"]
    # Only a request that had passed the pacer before on_kill may arrive after it.
    assert sent - sent_at_kill <= 3
    (exc,) = raised
    assert isinstance(exc, AirflowException) and not isinstance(exc, AirflowFailException)
    assert "Airflow stopped this task" in str(exc)
    partial = incomplete_checkpoint(str(out), rows)
    assert ti.xcoms["pioneer_summary"]["succeeded"] == len(partial)


def test_a_proxy_body_size_limit_isolates_the_texts_too_large_and_respects_max_failed_ratio(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    emu.set_max_body_bytes(4000)
    rows = texts_with_ids(40, prefix="big")
    for i in (7, 30):
        rows[i]["text"] = "Alice Smith lives in Paris. " * 200
    out = tmp_path / "out.jsonl"
    summary, _ = run(
        texts=rows, output_path=str(out), batch_size=20, max_concurrency=2, max_failed_ratio=0.05
    )
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert [r["id"] for r in records if "error" in r] == ["big-7", "big-30"]
    assert all(r["error"]["status"] == 413 for r in records if "error" in r)
    assert "refused this text alone as too large" in records[7]["error"]["message"]
    assert [r["result"] for r in records if "result" in r] == [
        emu.extract(r["text"], LABELS) for i, r in enumerate(rows) if i not in (7, 30)
    ]
    assert summary["failed"] == 2 and summary["succeeded"] == 38
    assert emu.counters()["texts_committed"] == 38 + 1  # the refused bodies cost nothing; one probe
    with pytest.raises(AirflowFailException, match=r"2 of 40 items failed .*id='big-7'.*HTTP 413"):
        run(texts=rows, batch_size=20, max_concurrency=2, max_failed_ratio=0.01)
