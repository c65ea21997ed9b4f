"""Unit tests of the batch runner: ordering, 422 isolation, fatal stops (pure logic, fake infer)."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from airflow_provider_pioneer.batching.inputs import Item
from airflow_provider_pioneer.batching.runner import (
    BatchRunner,
    FatalStop,
    RunStopped,
    StoppablePacer,
    TransientStop,
    batches,
)
from airflow_provider_pioneer.exceptions import (
    PioneerConnectionError,
    PioneerCreditCeilingError,
    PioneerError,
    PioneerModelNotServableError,
    PioneerModelWarmingError,
    PioneerNotFoundError,
    PioneerPayloadTooLargeError,
    PioneerPaymentRequiredError,
    PioneerRateLimitError,
    PioneerRedirectError,
    PioneerResponseError,
    PioneerServerError,
    PioneerSpendCapError,
    PioneerValidationError,
)


def _items(texts: list[str]) -> list[Item]:
    return [Item(i, f"id-{i}", t) for i, t in enumerate(texts)]


class FakeApi:
    """Answers ``{"echo": text}``; texts starting with "BAD" get a 422 (naming them if ``name_indices``)."""

    def __init__(self, name_indices: bool = True, jitter: float = 0.0) -> None:
        self.name_indices = name_indices
        self.jitter = jitter
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> tuple[list[Any], int]:
        with self.lock:
            self.calls.append(list(texts))
        if self.jitter:
            time.sleep(random.uniform(0, self.jitter))
        bad = [i for i, t in enumerate(texts) if t.startswith("BAD")]
        if bad and self.name_indices:
            detail = [{"loc": ["body", "text", i], "msg": "bad text", "type": "value_error"} for i in bad]
            raise PioneerValidationError(
                "422", status=422, detail=detail, text_errors={i: "bad text" for i in bad}
            )
        if bad:  # a server that says only that something is wrong (plain-string detail)
            raise PioneerValidationError("HTTP 422: a bad text somewhere", status=422, detail="a bad text")
        return [{"echo": t} for t in texts], len(texts)


def _run(api: Any, items: list[Item], batch_size: int = 8, concurrency: int = 3) -> list[dict[str, Any]]:
    runner = BatchRunner(api, max_concurrency=concurrency, window=2 * concurrency, stop=threading.Event())
    out: list[dict[str, Any]] = []
    for result in runner.run(batches(items, batch_size)):
        out.extend(result.records)
    return out


def test_results_come_back_in_input_order_despite_random_completion() -> None:
    texts = [f"text {i}" for i in range(200)]
    out = _run(FakeApi(jitter=0.01), _items(texts), batch_size=7, concurrency=4)
    assert [r["id"] for r in out] == [f"id-{i}" for i in range(200)]
    assert [r["result"]["echo"] for r in out] == texts


@pytest.mark.parametrize("name_indices", [True, False])
def test_a_poisoned_text_fails_alone(name_indices: bool) -> None:
    texts = [f"t{i}" for i in range(64)]
    texts[37] = "BAD one"
    api = FakeApi(name_indices=name_indices)
    out = _run(api, _items(texts), batch_size=64, concurrency=1)
    errors = [r for r in out if "error" in r]
    assert [e["id"] for e in errors] == ["id-37"]
    assert errors[0]["error"]["status"] == 422
    assert "bad text" in errors[0]["error"]["message"]
    assert sum(1 for r in out if "result" in r) == 63
    if name_indices:  # one failed call and one re-send of the 63 others
        assert len(api.calls) == 2
    else:  # bisection: at most two calls per halving, plus one probe of the options
        assert len(api.calls) <= 2 * 6 + 2
        assert ["Pioneer"] in api.calls


def test_bisection_isolates_several_bad_texts_without_indices() -> None:
    texts = [f"t{i}" for i in range(20)]
    for i in (0, 9, 10, 19):
        texts[i] = f"BAD {i}"
    out = _run(FakeApi(name_indices=False), _items(texts), batch_size=20, concurrency=2)
    assert [r["id"] for r in out if "error" in r] == ["id-0", "id-9", "id-10", "id-19"]
    assert [r["result"]["echo"] for r in out if "result" in r] == [
        t for t in texts if not t.startswith("BAD")
    ]


def test_invalid_records_become_errors_without_a_request() -> None:
    items = [Item(0, "a", "fine"), Item(1, "b", None, "record has no string field 'text'")]
    api = FakeApi()
    out = _run(api, items)
    assert out[1] == {
        "id": "b",
        "error": {"status": None, "message": "not sent: record has no string field 'text'"},
    }
    assert api.calls == [["fine"]]


def test_request_level_422_stops_the_run() -> None:
    def infer(texts: list[str]) -> tuple[list[Any], int]:
        detail = [{"loc": ["body", "threshold"], "msg": "must be <= 1", "type": "value_error"}]
        raise PioneerValidationError("bad threshold", status=422, detail=detail)

    with pytest.raises(FatalStop, match="bad threshold"):
        _run(infer, _items(["a", "b", "c"]), batch_size=1)


def test_transient_failure_after_retries_stops_without_recording_the_items_as_failed() -> None:
    sent: list[str] = []

    def infer(texts: list[str]) -> tuple[list[Any], int]:
        sent.extend(texts)
        if "boom" in texts:
            raise PioneerServerError("Pioneer POST /inference failed with HTTP 500", status=500)
        return [{"ok": True} for _ in texts], 1

    stop = threading.Event()
    runner = BatchRunner(infer, max_concurrency=1, window=2, stop=stop)
    got = []
    with pytest.raises(TransientStop) as info:
        for result in runner.run(batches(_items(["a", "b", "c", "boom", "e", "f", "g", "h"]), 2)):
            got.extend(result.records)
    assert info.value.error.status == 500
    assert got == [
        {"id": f"id-{i}", "result": {"ok": True}} for i in range(2)
    ]  # only what completed in order
    assert "g" not in sent and stop.is_set()  # nothing sent after the stop


def test_payment_required_stops_every_worker_and_keeps_what_completed_in_order() -> None:
    sent: list[int] = []
    lock = threading.Lock()

    def infer(texts: list[str]) -> tuple[list[Any], int]:
        n = int(texts[0])
        with lock:
            sent.append(n)
        if n >= 10:
            raise PioneerPaymentRequiredError("402", status=402)
        return [{"n": n}], 1

    stop = threading.Event()
    runner = BatchRunner(infer, max_concurrency=1, window=4, stop=stop)
    got = []
    with pytest.raises(FatalStop) as info:
        for result in runner.run(batches(_items([str(i) for i in range(100)]), 1)):
            got.extend(result.records)
    assert isinstance(info.value.error, PioneerPaymentRequiredError)
    assert [r["result"]["n"] for r in got] == list(range(10))
    assert sent == list(range(11))  # nothing after the first 402
    assert stop.is_set()


def test_stoppable_pacer_refuses_to_release_after_stop() -> None:
    stop = threading.Event()
    pacer = StoppablePacer(60_000, stop)
    assert pacer.acquire() is True
    stop.set()
    with pytest.raises(RunStopped):
        pacer.acquire()


def test_batches_are_consecutive_and_bounded() -> None:
    chunks = list(batches(_items([str(i) for i in range(10)]), 4))
    assert [[it.index for it in c] for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_request_level_rejection_without_locs_stops_after_one_probe() -> None:
    """A plain-string 400 (e.g. "schema is required") must not bisect every batch to single texts."""
    calls: list[list[str]] = []
    lock = threading.Lock()

    def infer(texts: list[str]) -> tuple[list[Any], int]:
        with lock:
            calls.append(texts)
        raise PioneerValidationError("HTTP 400: schema is required", status=400, detail="schema is required")

    with pytest.raises(FatalStop, match="schema is required") as info:
        _run(infer, _items([f"t{i}" for i in range(64)]), batch_size=16, concurrency=4)
    assert not isinstance(info.value, TransientStop)
    assert calls.count(["Pioneer"]) == 1  # one probe, whatever the number of workers that met the 422
    assert len(calls) <= 4 + 1  # the first wave of four batches, and the probe


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (PioneerServerError("HTTP 503", status=503), True),
        (PioneerConnectionError("could not reach"), True),
        (PioneerRateLimitError("HTTP 429", status=429), True),
        (PioneerSpendCapError("HTTP 429 cap", status=429), False),
        (PioneerNotFoundError("HTTP 404", status=404), False),
        # A 2xx not shaped as promised is a hiccup: nothing is written, an Airflow retry re-sends.
        (PioneerResponseError("not JSON", status=200), True),
        (PioneerRedirectError("HTTP 307", status=307), False),
        (PioneerError("HTTP 418", status=418), False),
        (PioneerServerError("HTTP 408", status=408), True),
        (PioneerModelWarmingError("HTTP 425", status=425), True),
        (PioneerCreditCeilingError("HTTP 403", status=403), False),
        (PioneerModelNotServableError("HTTP 409", status=409), False),
    ],
)
def test_only_outages_are_transient(error: PioneerError, transient: bool) -> None:
    def infer(texts: list[str]) -> tuple[list[Any], int]:
        raise error

    with pytest.raises(FatalStop) as info:
        _run(infer, _items(["a", "b"]), batch_size=1, concurrency=1)
    assert isinstance(info.value, TransientStop) is transient
    assert info.value.error is error


def test_a_fatal_error_outranks_an_outage_reported_a_moment_earlier() -> None:
    stop = threading.Event()
    runner = BatchRunner(lambda texts: ([], 0), max_concurrency=1, window=1, stop=stop)
    outage = PioneerServerError("HTTP 503", status=503)
    broke = PioneerPaymentRequiredError("HTTP 402", status=402)
    runner._stop_for(outage)
    runner._stop_for(broke)
    runner._stop_for(PioneerServerError("HTTP 502", status=502))
    with pytest.raises(FatalStop) as info:
        list(runner.run([]))
    assert info.value.error is broke and not isinstance(info.value, TransientStop)


def test_a_stop_wakes_a_waiting_worker_at_once() -> None:
    import time

    stop = threading.Event()
    pacer = StoppablePacer(None, stop)
    pacer.hold(30)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RunStopped):
        pacer.acquire()
    assert time.monotonic() - started < 20  # not the 30 s the gate asked for


class ProxyWithBodyLimit:
    """A proxy that answers 413 to a request whose texts add up to more than ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> tuple[list[Any], int]:
        with self.lock:
            self.calls.append(list(texts))
        if sum(len(t) for t in texts) > self.limit:
            raise PioneerPayloadTooLargeError("HTTP 413: Request Entity Too Large", status=413, detail=None)
        return [{"echo": t} for t in texts], len(texts)


def test_a_413_is_split_until_the_text_too_large_stands_alone() -> None:
    texts = [f"text {i:02d}" for i in range(32)]  # 7 characters each
    texts[21] = "x" * 500
    api = ProxyWithBodyLimit(limit=200)
    out = _run(api, _items(texts), batch_size=32, concurrency=2)
    assert [r["id"] for r in out if "error" in r] == ["id-21"]
    error = out[21]["error"]
    assert error["status"] == 413 and "refused this text alone as too large" in error["message"]
    assert [r["result"]["echo"] for r in out if "result" in r] == [t for i, t in enumerate(texts) if i != 21]
    assert api.calls.count(["Pioneer"]) == 1  # a 413 names no text: one probe tells options from texts
    assert len(api.calls) <= 2 + 2 * 5 + 1


def test_a_batch_too_large_only_as_a_whole_is_split_and_every_text_succeeds() -> None:
    texts = [f"{i:03d}" + "y" * 46 for i in range(64)]  # 50 characters each, 3,200 per batch
    out = _run(ProxyWithBodyLimit(limit=1000), _items(texts), batch_size=64, concurrency=3)
    assert [r["result"]["echo"] for r in out] == texts


def test_a_413_on_the_probe_too_stops_the_run_as_a_verdict() -> None:
    with pytest.raises(FatalStop) as info:
        _run(ProxyWithBodyLimit(limit=0), _items(["a", "b", "c"]), batch_size=3, concurrency=1)
    assert not isinstance(info.value, TransientStop)
    assert isinstance(info.value.error, PioneerPayloadTooLargeError)


def test_413s_count_against_max_failed_ratio_like_422s() -> None:
    """The runner's error records are what the operator's max_failed_ratio counts."""
    texts = ["z" * 300 if i % 8 == 0 else f"t{i}" for i in range(40)]
    out = _run(ProxyWithBodyLimit(limit=200), _items(texts), batch_size=10, concurrency=2)
    assert [r["id"] for r in out if "error" in r] == [f"id-{i}" for i in range(0, 40, 8)]
    assert {r["error"]["status"] for r in out if "error" in r} == {413}


def test_an_answer_json_cannot_hold_becomes_an_error_record_for_its_text_only() -> None:
    def infer(texts: list[str]) -> tuple[list[Any], int]:
        return [
            {"v": float("nan")} if t == "nan" else {"v": "\ud83d"} if t == "sur" else {"v": t} for t in texts
        ], 3

    out = _run(infer, _items(["a", "nan", "b", "sur"]), batch_size=4)
    assert out[0] == {"id": "id-0", "result": {"v": "a"}} and out[2] == {"id": "id-2", "result": {"v": "b"}}
    assert out[1]["error"]["status"] == 200 and "NaN or Infinity" in out[1]["error"]["message"]
    assert out[3]["error"]["status"] == 200 and "lone surrogate" in out[3]["error"]["message"]


def test_an_error_message_quoting_a_lone_surrogate_stays_writable() -> None:
    def infer(texts: list[str]) -> tuple[list[Any], int]:
        raise PioneerValidationError("422", status=422, text_errors={0: "bad text '\ud83d'"}, detail=[])

    (record,) = _run(infer, _items(["x"]), batch_size=1)
    assert record["error"]["message"] == "Pioneer rejected this text (HTTP 422): bad text '\\ud83d'"
    record["error"]["message"].encode("utf-8")


def test_a_stop_from_outside_ends_the_run_without_waiting_for_requests_on_the_wire() -> None:
    """on_kill sets the stop event: run() raises RunStopped after what was done in order, at once."""
    release = threading.Event()
    sent: list[str] = []

    def infer(texts: list[str]) -> tuple[list[Any], int]:
        sent.extend(texts)
        if texts[0] == "slow":
            release.wait(30)  # a request hanging on the wire
        return [{"t": t} for t in texts], 1

    stop = threading.Event()
    runner = BatchRunner(infer, max_concurrency=2, window=4, stop=stop, tick=0.05)
    got: list[dict[str, Any]] = []
    with pytest.raises(RunStopped):
        for result in runner.run(batches(_items(["a", "b", "slow", "c", "d", "e", "f"]), 1)):
            got.extend(result.records)
            if len(got) == 2:
                threading.Timer(0.2, stop.set).start()
    release.set()
    # Only what completed in order before the stop; the hanging request was not waited for.
    assert [r["id"] for r in got] == ["id-0", "id-1"]


def test_a_stop_before_the_first_batch_is_not_a_complete_run() -> None:
    """on_kill may come before anything was sent: the run must not look finished."""
    api = FakeApi()
    stop = threading.Event()
    stop.set()
    runner = BatchRunner(api, max_concurrency=2, window=4, stop=stop)
    with pytest.raises(RunStopped):
        list(runner.run(batches(_items(["a", "b", "c"]), 1)))
    assert api.calls == []
