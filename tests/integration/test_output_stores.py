"""Resume and ownership of ``output_path`` on every store: ``file://``, ``memory://`` and ``s3://``.

``s3://`` is moto's S3 server over HTTP on loopback, reached through the Amazon provider's
``ObjectStoragePath`` filesystem (s3fs): the same code path as a deployment writing to S3. The
operator talks HTTP to the Pioneer emulator; its counters (``text_counts``) say how often each
text was billed, so "re-sent texts" is measured, not assumed.

The kill tests SIGKILL a child process that runs the operator (``output_child.py``): ``file``
and ``s3`` only, since a memory store dies with its process. ``memory`` gets the same scenario
with the crash simulated in-process (the sink is abandoned exactly as a kill leaves it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_pioneer._compat import AirflowFailException
from airflow_provider_pioneer.batching import lease, output
from airflow_provider_pioneer.batching.output import FileSink, OutputConflictError
from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator
from airflow_provider_pioneer.testing import PioneerEmulator
from tests.object_stores import MotoS3, checkpointed_records, manifest_of, memory_root, moto_s3

LABELS = ["person", "organization", "location"]
CHILD = Path(__file__).with_name("output_child.py")
BATCH, CONCURRENCY = 5, 2


class TI:
    """The task instance execute() sees: an identity for the output's lease, and XComs."""

    def __init__(self, map_index: int = -1, try_number: int = 1, run_id: str = "manual__1") -> None:
        self.dag_id, self.task_id, self.run_id = "pioneer_stores", "extract", run_id
        self.map_index, self.try_number = map_index, try_number
        self.xcoms: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "xcoms"}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def texts(n: int, prefix: str) -> list[dict[str, str]]:
    names, orgs = ["Alice Smith", "Bob Jones", "Maria Garcia"], ["Acme Corp", "Globex", "Initech"]
    return [
        {"id": f"{prefix}-{i}", "text": f"{names[i % 3]} met {orgs[i % 3]} in Paris ({prefix} {i})."}
        for i in range(n)
    ]


def op_kwargs(rows: list[dict[str, str]], out: str, **kw: Any) -> dict[str, Any]:
    return {
        "task_id": "extract",
        "model_id": "fastino/gliner2-base-v1",
        "entities": LABELS,
        "texts": rows,
        "output_path": out,
        "batch_size": BATCH,
        "max_concurrency": CONCURRENCY,
        "requests_per_minute": 60_000,
        "progress_interval": 1.0,
        **kw,
    }


def run(rows: list[dict[str, str]], out: str, ti: TI | None = None, **kw: Any) -> dict[str, Any]:
    ti = ti or TI()
    PioneerInferenceOperator(**op_kwargs(rows, out, **kw)).execute({"ti": ti})  # type: ignore[arg-type]
    return dict(ti.xcoms["pioneer_summary"])


def read_output(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ObjectStoragePath(out).read_text().splitlines()]


def resend_bound(store: str) -> int:
    """Texts a kill may cost again: the runner's window plus the part not yet written."""
    part_batches = 1 if store in ("file", "memory") else 4  # FileSink's default per store
    return (2 * CONCURRENCY + part_batches) * BATCH


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(params=["file", "memory", pytest.param("s3", marks=pytest.mark.providers)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.param)


@pytest.fixture
def root(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty folder URL on the store under test."""
    if store == "file":
        return f"file://{tmp_path}"
    if store == "memory":
        return memory_root()
    return str(request.getfixturevalue("s3_server").new_bucket())


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[PioneerEmulator]:
    with PioneerEmulator(latency_ms=2, rate_limit_per_minute=None) as e:
        monkeypatch.setenv(
            "AIRFLOW_CONN_PIONEER_DEFAULT",
            json.dumps({"conn_type": "pioneer", "host": e.url, "password": e.api_key}),
        )
        yield e


def billed_twice(emu: PioneerEmulator, rows: list[dict[str, str]]) -> int:
    counts = emu.counters()["text_counts"]
    assert {r["text"] for r in rows} <= set(counts), "some text was never billed"
    return sum(counts[r["text"]] - 1 for r in rows)


# -- kill -9 mid-run, then the retry --------------------------------------------------------------


def _kill_child_mid_run(emu: PioneerEmulator, rows: list[dict[str, str]], out: str, min_done: int) -> int:
    """Run try 1 in a child, SIGKILL it once the manifest lists ``min_done`` records; return them."""
    args = {**op_kwargs(rows, out), "ti": TI().identity()}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(args)], env=dict(os.environ),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            doc = manifest_of(out)
            if doc and doc["records"] >= min_done:
                break
            if child.poll() is not None:
                raise AssertionError(f"try 1 ended before the kill: {child.stderr.read()[-2000:]!r}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "try 1 made no progress"
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        child.stderr.close()  # type: ignore[union-attr]
    doc = manifest_of(out)
    assert doc is not None and not doc["complete"]
    return int(doc["records"])


class _SimulatedKill(BaseException):
    pass


def _crash_in_process_mid_run(
    monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, str]], out: str, min_done: int
) -> int:
    """memory://: what a kill leaves, in one process: buffered records lost, lease and parts kept."""
    write, close = FileSink.write, FileSink.close

    def crashing_write(self: FileSink, records: list[dict[str, Any]], tokens: int) -> None:
        write(self, records, tokens)
        if self.counts.records >= min_done:
            raise _SimulatedKill

    def no_close(self: FileSink, complete: bool) -> None:
        self.lease._stop.set()  # the heartbeat dies with the process; nothing is flushed or released

    with monkeypatch.context() as m:
        m.setattr(FileSink, "write", crashing_write)
        m.setattr(FileSink, "close", no_close)
        with pytest.raises(_SimulatedKill):
            run(rows, out)
    assert FileSink.close is close
    doc = manifest_of(out)
    assert doc is not None and not doc["complete"]
    return int(doc["records"])


def test_a_killed_task_resumes_on_retry_every_id_once_and_resends_at_most_the_window(
    store: str, root: str, emu: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.set_latency(60)  # slow enough to be killed mid-run
    rows = texts(300, f"kill-{store}")
    out = f"{root}/entities/out.jsonl"
    if store == "memory":
        done = _crash_in_process_mid_run(monkeypatch, rows, out, min_done=60)
    else:
        done = _kill_child_mid_run(emu, rows, out, min_done=60)
    assert 60 <= done < 300
    assert not ObjectStoragePath(out).exists()  # never a file that looks complete
    assert [r["id"] for r in checkpointed_records(out)] == [r["id"] for r in rows[:done]]

    emu.set_latency(2)
    summary = run(rows, out, TI(try_number=2))  # Airflow's retry: same task instance, next try
    assert summary["skipped_from_checkpoint"] == done and summary["succeeded"] == 300
    records = read_output(out)
    assert [r["id"] for r in records] == [r["id"] for r in rows]  # every id once, in input order
    assert all("result" in r for r in records)
    again = billed_twice(emu, rows)
    print(f"{store}: {done} records checkpointed at the kill, {again} texts billed twice")
    assert again <= resend_bound(store)
    doc = manifest_of(out)
    assert doc is not None and doc["complete"] and doc["records"] == 300
    assert (
        not ObjectStoragePath(f"{out}.parts").exists() and not ObjectStoragePath(f"{out}.lease.json").exists()
    )


@pytest.mark.providers
def test_s3_leaves_only_the_output_and_its_manifest(
    s3_server: MotoS3, emu: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    rows = texts(40, "s3-layout")
    summary = run(rows, f"{bucket}/run/entities.jsonl")
    assert summary["succeeded"] == 40
    assert sorted(s3_server.keys(bucket)) == ["run/entities.jsonl", "run/entities.jsonl.manifest.json"]
    emu.reset_counters()
    again = run(rows, f"{bucket}/run/entities.jsonl", TI(run_id="manual__2"))
    assert again["skipped_from_checkpoint"] == 40 and emu.counters()["texts_committed"] == 0


# -- 402 mid-run, then the rerun after topping up -----------------------------------------------------


def test_402_mid_run_then_a_rerun_after_topping_up_bills_each_text_once(
    store: str, root: str, emu: PioneerEmulator
) -> None:
    rows = texts(200, f"pay-{store}")
    out = f"{root}/entities/out.jsonl"
    emu.set_credits(600)  # runs out part-way through
    # One request at a time: no batch after the one refused was billed, so nothing may be billed twice.
    with pytest.raises(AirflowFailException, match="Top up"):
        run(rows, out, max_concurrency=1)
    doc = manifest_of(out)
    assert doc is not None and not doc["complete"] and 0 < doc["records"] < 200
    assert [r["id"] for r in checkpointed_records(out)] == [r["id"] for r in rows[: doc["records"]]]
    assert not ObjectStoragePath(out).exists()
    assert not ObjectStoragePath(f"{out}.lease.json").exists()  # released: a rerun may start at once

    emu.set_credits(None)  # topped up; the user clears the task
    summary = run(rows, out, TI(try_number=2), max_concurrency=1)
    assert summary["skipped_from_checkpoint"] == doc["records"] and summary["succeeded"] == 200
    assert [r["id"] for r in read_output(out)] == [r["id"] for r in rows]
    assert billed_twice(emu, rows) == 0  # a 402 stops cleanly: everything done was saved


# -- shards ----------------------------------------------------------------------------------------


def test_concurrent_shards_to_their_own_paths_all_succeed(
    store: str, root: str, emu: PioneerEmulator
) -> None:
    emu.set_latency(10)
    shards = [texts(60, f"shard{i}-{store}") for i in range(3)]
    errors: list[BaseException] = []

    def shard(i: int) -> None:
        try:
            run(shards[i], f"{root}/entities/shard-{i:03d}.jsonl", TI(map_index=i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i, rows in enumerate(shards):
        assert [r["id"] for r in read_output(f"{root}/entities/shard-{i:03d}.jsonl")] == [
            r["id"] for r in rows
        ]
        assert billed_twice(emu, rows) == 0


def test_two_tasks_on_one_output_path_the_second_fails_and_the_first_is_intact(
    store: str, root: str, emu: PioneerEmulator
) -> None:
    """A shard template without {{ ti.map_index }}: both shards get the same output_path."""
    emu.set_latency(40)
    out = f"{root}/entities/shard.jsonl"
    first_rows, second_rows = texts(120, f"first-{store}"), texts(50, f"second-{store}")
    result: dict[str, Any] = {}
    first = threading.Thread(target=lambda: result.update(run(first_rows, out, TI(map_index=0))))
    first.start()
    try:
        deadline = time.monotonic() + 60
        while not (manifest_of(out) or {}).get("records"):
            assert first.is_alive() and time.monotonic() < deadline, "the first task never started writing"
            time.sleep(0.02)
        with pytest.raises(OutputConflictError) as info:
            run(second_rows, out, TI(map_index=1))
    finally:
        first.join(timeout=120)
    message = str(info.value)
    assert "Another task is writing this output_path right now" in message
    assert "map_index=0" in message and "{{ ti.map_index }}" in message
    assert isinstance(info.value, AirflowFailException)  # no Airflow retry: it would conflict again
    assert result["succeeded"] == 120
    assert [r["id"] for r in read_output(out)] == [r["id"] for r in first_rows]
    counts = emu.counters()["text_counts"]
    assert not any(r["text"] in counts for r in second_rows)  # the second sent nothing

    # Later, the other shard again: the finished output of another task is not overwritten either.
    emu.set_latency(2)
    with pytest.raises(OutputConflictError, match="holds the complete output of another task"):
        run(second_rows, out, TI(map_index=1, run_id="manual__2"))
    assert [r["id"] for r in read_output(out)] == [r["id"] for r in first_rows]


def test_the_lease_heartbeat_keeps_a_slow_task_the_owner(
    store: str, root: str, emu: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run longer than the lease TTL stays the owner: its heartbeat renews the lease.

    The TTL is 15 beats: a beat can stall for about a second in this busy test process, and at
    a 1-s TTL that stall alone once made the lease look abandoned in `make test`."""
    monkeypatch.setattr(lease, "LEASE_TTL_S", 3.0)
    monkeypatch.setattr(lease, "LEASE_HEARTBEAT_S", 0.2)
    emu.set_latency(100)
    out = f"{root}/entities/slow.jsonl"
    rows = texts(400, f"slow-{store}")  # 80 requests one at a time: about 8 s, well past the TTL
    first = threading.Thread(target=run, args=(rows, out, TI(map_index=0)), kwargs={"max_concurrency": 1})
    first.start()
    try:
        time.sleep(3.5)  # longer than the TTL
        assert first.is_alive()
        with pytest.raises(OutputConflictError, match="heartbeat"):
            run(texts(5, f"other-{store}"), out, TI(map_index=1))
    finally:
        first.join(timeout=120)
    assert [r["id"] for r in read_output(out)] == [r["id"] for r in rows]


def _race(out: ObjectStoragePath) -> tuple[list[FileSink], list[OutputConflictError]]:
    """Two task instances (map index 0 and 1) open ``out`` at the same moment."""
    from tests.integration.output_child import ChildTI

    start = threading.Barrier(2)
    won: list[FileSink] = []
    refused: list[OutputConflictError] = []

    def contend(map_index: int) -> None:
        ti = ChildTI(dag_id="d", task_id="t", run_id="r", map_index=map_index, try_number=1)
        start.wait()
        try:
            won.append(FileSink(out, f"fp-{map_index}", 1, output.Owner.from_context({"ti": ti})))
        except OutputConflictError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return won, refused


def test_two_tasks_starting_on_one_path_at_the_same_moment_exactly_one_wins(store: str, root: str) -> None:
    """No atomic create on S3: both write the lease, wait, read it back; the last writer wins."""
    for round_ in range(2):
        out = ObjectStoragePath(f"{root}/race-{round_}/out.jsonl")
        out.parent.mkdir(parents=True, exist_ok=True)
        won, refused = _race(out)
        assert len(won) == 1 and len(refused) == 1, (won, refused)
        won[0].write([{"id": 0, "result": {}}], 0)
        won[0].close(complete=True)
        assert read_output(str(out)) == [{"id": 0, "result": {}}]


# -- a checkpoint that does not add up (tampered, truncated, reordered) --------------------------------


@pytest.fixture
def one_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """One task at a time on the path: the wait that tells two racing tasks apart only costs time."""
    monkeypatch.setattr(lease, "LEASE_SETTLE_S", 0.05)
    monkeypatch.setattr(lease, "LEASE_SETTLE_LOCAL_S", 0.01)


def _interrupted(emu: PioneerEmulator, rows: list[dict[str, str]], out: str) -> dict[str, Any]:
    """Try 1 stops on a 402 part-way (one request at a time: nothing it did is lost); its manifest."""
    emu.set_credits(600)
    with pytest.raises(AirflowFailException, match="Top up"):
        run(rows, out, max_concurrency=1)
    emu.set_credits(None)
    doc = manifest_of(out)
    assert doc is not None and not doc["complete"] and doc["parts"] >= 2
    return doc


def _part_paths(out: str, doc: dict[str, Any]) -> list[ObjectStoragePath]:
    """The manifest's parts, in order, found by number and attempt in the folder's listing."""
    listed = [p.name for p in ObjectStoragePath(f"{out}.parts").iterdir()]
    starts = [(int(first), attempt) for first, attempt in doc["attempts"]]
    names = []
    for number in range(doc["parts"]):
        attempt = [a for first, a in starts if first <= number][-1]
        names += [n for n in listed if n.startswith(f"part-{number:05d}-{attempt}")]
    return [ObjectStoragePath(f"{out}.parts/{n}") for n in names]


def _write_manifest(out: str, doc: dict[str, Any]) -> None:
    ObjectStoragePath(f"{out}.manifest.json").write_bytes(json.dumps(doc).encode())


def _resume_and_check(emu: PioneerEmulator, rows: list[dict[str, str]], out: str) -> dict[str, Any]:
    """Try 2 finishes: every id exactly once and in input order, and the summary says what is there."""
    summary = run(rows, out, TI(try_number=2), max_concurrency=1)
    records = read_output(out)
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert all("result" in r for r in records)
    assert summary["total"] == summary["succeeded"] == len(rows) and summary["failed"] == 0
    doc = manifest_of(out)
    assert doc is not None and doc["complete"] and doc["records"] == len(rows)
    return summary


def test_a_manifest_claiming_15_more_records_than_its_parts_resumes_from_what_the_parts_hold(
    store: str, root: str, emu: PioneerEmulator, one_writer: None
) -> None:
    """Issue 18 #3: `records` raised by 15 made the retry skip 15 inputs and call the output complete."""
    rows = texts(200, f"claim-{store}")
    out = f"{root}/entities/out.jsonl"
    doc = _interrupted(emu, rows, out)
    done = doc["records"]
    _write_manifest(out, {**doc, "records": done + 15, "succeeded": doc["succeeded"] + 15})
    summary = _resume_and_check(emu, rows, out)
    assert summary["skipped_from_checkpoint"] == done  # the parts, not the manifest's claim
    assert billed_twice(emu, rows) == 0  # every part it had was still trusted


def test_two_lines_swapped_inside_a_part_resend_that_part_only_and_keep_the_order(
    store: str, root: str, emu: PioneerEmulator, one_writer: None
) -> None:
    """Issue 18 #3: a same-size change inside a part went unnoticed and the output came out of order."""
    rows = texts(200, f"swap-{store}")
    out = f"{root}/entities/out.jsonl"
    doc = _interrupted(emu, rows, out)
    parts = _part_paths(out, doc)
    lines = parts[1].read_bytes().splitlines(keepends=True)
    assert len(lines) >= 2
    parts[1].write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))  # same size, same ids, wrong order
    first = len(parts[0].read_bytes().splitlines())
    summary = _resume_and_check(emu, rows, out)
    assert summary["skipped_from_checkpoint"] == first  # part 0 is kept, part 1 onwards re-sent
    assert billed_twice(emu, rows) == doc["records"] - first


def test_a_truncated_last_line_in_the_last_part_resends_that_part_only(
    store: str, root: str, emu: PioneerEmulator, one_writer: None
) -> None:
    rows = texts(200, f"cut-{store}")
    out = f"{root}/entities/out.jsonl"
    doc = _interrupted(emu, rows, out)
    parts = _part_paths(out, doc)
    parts[-1].write_bytes(parts[-1].read_bytes()[:-7])
    kept = sum(len(p.read_bytes().splitlines()) for p in parts[:-1])
    summary = _resume_and_check(emu, rows, out)
    assert summary["skipped_from_checkpoint"] == kept
    assert billed_twice(emu, rows) == doc["records"] - kept


def test_a_complete_output_with_two_lines_swapped_is_not_taken_as_complete(
    store: str, root: str, emu: PioneerEmulator, one_writer: None
) -> None:
    rows = texts(30, f"done-{store}")
    out = f"{root}/entities/out.jsonl"
    run(rows, out)
    lines = ObjectStoragePath(out).read_bytes().splitlines(keepends=True)
    ObjectStoragePath(out).write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))
    emu.reset_counters()
    summary = run(rows, out, TI(run_id="manual__2"))
    assert summary["skipped_from_checkpoint"] == 0 and summary["succeeded"] == 30
    assert [r["id"] for r in read_output(out)] == [r["id"] for r in rows]


def test_a_part_changed_during_the_run_is_never_published(store: str, root: str, one_writer: None) -> None:
    """The publish reads every part again: a changed one aborts it (on S3 the upload too), nothing appears."""
    out = ObjectStoragePath(f"{root}/changed/out.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = FileSink(out, "fp", 4, output.Owner(dag_id="d", task_id="t", run_id="r"), part_batches=1)
    sink.write([{"id": 0, "result": {"n": 0}}, {"id": 1, "result": {"n": 1}}], 1)
    (part,) = ObjectStoragePath(f"{out}.parts").iterdir()
    part.write_bytes(part.read_bytes().replace(b'"n":0', b'"n":9'))  # same size
    sink.write([{"id": 2, "result": {"n": 2}}, {"id": 3, "result": {"n": 3}}], 1)
    with pytest.raises(output.CheckpointError, match="changed after this task wrote it"):
        sink.close(complete=True)
    assert not out.exists()
    doc = manifest_of(str(out))
    assert doc is not None and doc["complete"] is False


def test_two_parts_that_trade_places_are_caught_by_their_ids_and_sent_again(
    store: str, root: str, emu: PioneerEmulator, one_writer: None
) -> None:
    """Each part reads back whole and as named, but holds the records of another place in the input."""
    from airflow_provider_pioneer.batching import checkpoint

    rows = texts(200, f"trade-{store}")
    out = f"{root}/entities/out.jsonl"
    doc = _interrupted(emu, rows, out)
    assert doc["parts"] >= 3
    parts = _part_paths(out, doc)
    one, two = parts[1].read_bytes(), parts[2].read_bytes()
    assert one.count(b"\n") == two.count(b"\n")
    for path, data in ((parts[1], two), (parts[2], one)):
        number, attempt, _, tokens = path.name.split("-")[1:5]
        name = checkpoint.part_name(
            int(number), attempt, data.count(b"\n"), int(tokens[:-1]), checkpoint.digest_of(data)
        )
        path.unlink()
        ObjectStoragePath(f"{out}.parts/{name}").write_bytes(data)
    first = parts[0].read_bytes().count(b"\n")
    summary = _resume_and_check(emu, rows, out)
    assert summary["skipped_from_checkpoint"] == first
    assert billed_twice(emu, rows) == doc["records"] - first
