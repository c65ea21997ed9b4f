"""Unit tests of the inputs (streamed JSONL, fingerprints) and the checkpointed output file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_pioneer.batching import checkpoint, lease
from airflow_provider_pioneer.batching.inputs import (
    FileSource,
    InputError,
    Item,
    ListSource,
    request_fingerprint,
)
from airflow_provider_pioneer.batching.output import (
    CheckpointError,
    FileSink,
    OutputConflictError,
    Owner,
    part_names,
)
from tests.object_stores import memory_root


def _records(n: int, start: int = 0) -> list[dict]:
    return [{"id": i, "result": {"n": i}} for i in range(start, start + n)]


def _lines(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def test_file_source_streams_records_strings_and_skips_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text('{"doc": "a", "body": "first"}\n\n"just a string"\n{"doc": "c"}\n{"doc": "d", "body": 5}')
    src = FileSource(ObjectStoragePath(f"file://{p}"), id_field="doc", text_field="body")
    assert src.total == 4
    items = list(src.items())
    assert [(it.index, it.id, it.text) for it in items[:2]] == [(0, "a", "first"), (1, 1, "just a string")]
    assert items[2].problem == "record has no string field 'body'"
    assert items[3].problem == "record has no string field 'body'"


@pytest.mark.parametrize("bad", ['{"text": oops}', "[" * 100_000 + "]" * 100_000])
def test_file_source_names_the_bad_line(tmp_path: Path, bad: str) -> None:
    # The second: nested past the recursion limit, json.loads raises RecursionError, not ValueError.
    p = tmp_path / "in.jsonl"
    p.write_text('{"text": "ok"}\n' + bad + "\n")
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        FileSource(ObjectStoragePath(str(p)))


@pytest.mark.parametrize(
    "rewrite",
    [
        '{"text": "one"}\n{"text": "TWO"}\n{"text": "three"}\n',  # same size, other text
        '{"text": "one"}\n{"text": "two"}\n',  # shorter
        '{"text": "one"}\n{"text": "two"}\n{"text": "three"}\n{"text": "four"}\n',  # longer
        '{"text": "one"}\n{"text": "tw',  # cut mid-line
    ],
)
def test_an_input_file_that_changes_between_counting_and_reading_is_refused(
    tmp_path: Path, rewrite: str
) -> None:
    """The checkpoint is keyed by the digest of the first pass: a second pass of other bytes must not pass."""
    p = tmp_path / "in.jsonl"
    p.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"}\n')
    src = FileSource(ObjectStoragePath(f"file://{p}"))
    p.write_text(rewrite)
    with pytest.raises(InputError, match="changed while this task read it"):
        list(src.items())


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        FileSource(ObjectStoragePath(str(tmp_path / "nope.jsonl")))


def test_list_source_rejects_a_bare_string() -> None:
    with pytest.raises(InputError, match="pass \\[text\\]"):
        ListSource("one text")  # type: ignore[arg-type]


def test_list_source_rejects_a_single_record_instead_of_reading_its_keys() -> None:
    with pytest.raises(InputError, match=r"one record \(a dict\); pass a list of records"):
        ListSource({"id": 1, "text": "hello"})  # type: ignore[arg-type]


def test_list_source_explains_a_list_rendered_to_a_string() -> None:
    with pytest.raises(InputError, match="render_template_as_native_obj=True"):
        ListSource("['a', 'b']")  # type: ignore[arg-type]


def test_fingerprint_changes_with_inputs_and_options() -> None:
    a = ListSource(["x", "y"]).digest
    b = ListSource(["x", "z"]).digest
    assert a != b
    base = request_fingerprint(a, model_id="m", schema={"entities": ["p"]}, options={})
    assert base == request_fingerprint(a, model_id="m", schema={"entities": ["p"]}, options={})
    assert base != request_fingerprint(b, model_id="m", schema={"entities": ["p"]}, options={})
    assert base != request_fingerprint(a, model_id="m2", schema={"entities": ["p"]}, options={})
    assert base != request_fingerprint(
        a, model_id="m", schema={"entities": ["p"]}, options={"threshold": 0.9}
    )


# -- the resumable output, on a local disk and on a store that cannot append (memory://) -------------


@pytest.fixture(autouse=True)
def _quick_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease, "LEASE_SETTLE_LOCAL_S", 0.01)


@pytest.fixture(params=["file", "memory"])
def out(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStoragePath:
    """Where the output goes: ``file://<tmp>/o/out.jsonl`` or ``memory://<fresh>/o/out.jsonl``."""
    root = f"file://{tmp_path}" if request.param == "file" else memory_root()
    path = ObjectStoragePath(f"{root}/o/out.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def beside(out: ObjectStoragePath, suffix: str) -> ObjectStoragePath:
    return out.parent / f"{out.name}{suffix}"


def read_records(p: ObjectStoragePath) -> list[dict[str, Any]]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def parts_listed(out: ObjectStoragePath) -> list[str]:
    return [p.name for p in beside(out, ".parts").iterdir()]


def manifest(out: ObjectStoragePath) -> dict[str, Any]:
    return dict(json.loads(beside(out, ".manifest.json").read_text()))


def abandon(sink: FileSink) -> None:
    """What a kill -9 leaves: buffered records lost, lease and parts in place, no heartbeat."""
    sink.lease._stop.set()


def owner(**kw: Any) -> Owner:
    base: dict[str, Any] = {"dag_id": "d", "task_id": "t", "run_id": "r1", "map_index": -1, "try_number": 1}
    return Owner(**{**base, **kw})


def test_output_appears_only_when_complete_and_the_manifest_is_marked_last(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp", total=4, part_batches=1)
    sink.write(_records(2), tokens=5)
    sink.write(_records(1, start=2), tokens=5)
    assert not out.exists()
    doc = manifest(out)
    assert doc["complete"] is False and doc["records"] == 3 and doc["parts"] == 2
    assert beside(out, ".lease.json").exists()
    sink.write(_records(1, start=3), tokens=5)
    sink.close(complete=True)
    assert read_records(out) == _records(4)
    doc = manifest(out)
    assert doc["complete"] is True and doc["records"] == 4 and doc["token_usage"] == 15
    assert doc["bytes"] == out.stat().st_size
    assert not beside(out, ".parts").exists() and not beside(out, ".lease.json").exists()


def test_parts_are_cut_every_few_batches_or_seconds(out: ObjectStoragePath) -> None:
    now = [0.0]
    sink = FileSink(out, "fp", total=100, part_batches=3, part_seconds=5.0, clock=lambda: now[0])
    sink.write(_records(1), tokens=0)
    sink.write(_records(1, start=1), tokens=0)
    assert not beside(out, ".manifest.json").exists()  # two batches, one second: still buffered
    sink.write(_records(1, start=2), tokens=0)
    assert manifest(out)["records"] == 3  # the third batch cut a part
    now[0] = 10.0
    sink.write(_records(1, start=3), tokens=0)
    assert manifest(out)["records"] == 3
    now[0] = 16.0
    sink.write(_records(1, start=4), tokens=0)  # the part's first batch is 6 s old: cut
    assert manifest(out)["records"] == 5
    sink.close(complete=False)
    assert manifest(out)["records"] == 5 and not beside(out, ".lease.json").exists()


def test_resume_skips_what_the_manifest_lists_and_ignores_a_part_it_does_not(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp", total=6, owner=owner(), part_batches=1)
    sink.write(_records(2), tokens=1)
    # A kill between writing a part and the manifest that lists it: the part is an orphan.
    data = b'{"id":2,"result":{"n":2}}\n{"id":3,"result":{"n":3}}\n'
    orphan = beside(out, ".parts") / checkpoint.part_name(1, sink.attempt, 2, 1, checkpoint.digest_of(data))
    orphan.write_bytes(data)  # whole and well named, but not listed: not trusted either
    abandon(sink)
    again = FileSink(out, "fp", total=6, owner=owner(try_number=2), part_batches=1)
    assert again.resumed == 2 and again.counts.succeeded == 2 and again.counts.token_usage == 1
    again.write(_records(4, start=2), tokens=1)
    again.close(complete=True)
    assert read_records(out) == _records(6)


def test_a_kill_after_the_last_part_but_before_publishing_publishes_on_retry(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp", total=3, owner=owner(), part_batches=1)
    sink.write(_records(3), tokens=2)
    abandon(sink)
    again = FileSink(out, "fp", total=3, owner=owner(try_number=2))
    assert again.resumed == 3 and not again.already_complete
    again.close(complete=True)  # nothing left to send: the retry only publishes
    assert read_records(out) == _records(3) and manifest(out)["complete"] is True


def test_a_checkpoint_of_another_request_is_never_reused(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp-old", total=3)
    sink.write(_records(3), tokens=1)
    sink.close(complete=True)
    same = FileSink(out, "fp-old", total=3)
    assert same.already_complete and same.resumed == 3
    assert not beside(out, ".lease.json").exists()  # nothing to do: the lease is released at once
    fresh = FileSink(out, "fp-new", total=3)
    assert fresh.resumed == 0 and not fresh.already_complete
    fresh.close(complete=False)
    # The stale manifest is gone, so a crash of the new run cannot resume from it either.
    assert not FileSink(out, "fp-old", total=3).already_complete


def test_complete_output_that_was_altered_is_redone(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp", total=3)
    sink.write(_records(3), tokens=1)
    sink.close(complete=True)
    out.write_text(out.read_text()[:-10])
    again = FileSink(out, "fp", total=3)
    assert not again.already_complete and again.resumed == 0


def test_a_listed_part_that_went_missing_is_sent_again_and_the_parts_before_it_are_kept(
    out: ObjectStoragePath,
) -> None:
    sink = FileSink(out, "fp", total=6, part_batches=1)
    sink.write(_records(2), tokens=1)
    sink.write(_records(2, start=2), tokens=1)
    abandon(sink)
    (beside(out, ".parts") / part_names(manifest(out), parts_listed(out))[1]).unlink()
    again = FileSink(out, "fp", total=6)
    assert again.resumed == 2 and again.counts.token_usage == 1  # part 0 only: part 1 is gone
    again.write(_records(4, start=2), tokens=1)
    again.close(complete=True)
    assert read_records(out) == _records(6)


def test_a_store_error_while_saving_a_failing_run_does_not_hide_the_runs_error(
    out: ObjectStoragePath, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FileSink(out, "fp", total=9, part_batches=5)
    sink.write(_records(2), tokens=1)

    def store_down(*args: Any, **kwargs: Any) -> None:
        raise OSError("store unavailable")

    monkeypatch.setattr(sink.store, "write", store_down)
    sink.close(complete=False)  # the caller is raising its own error (402, outage): no new one here
    assert "Could not checkpoint the last records" in caplog.text and "store unavailable" in caplog.text
    assert not beside(out, ".manifest.json").exists()


def test_no_inputs_publish_an_empty_output(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp", total=0)
    sink.close(complete=True)
    assert out.read_bytes() == b"" and manifest(out)["complete"] is True
    assert FileSink(out, "fp", total=0).already_complete


# -- two tasks, one output_path ---------------------------------------------------------------------


def test_a_live_lease_of_another_task_is_refused_and_its_output_stays_intact(out: ObjectStoragePath) -> None:
    first = FileSink(out, "fp-a", total=4, owner=owner(map_index=0), part_batches=1)
    first.write(_records(2), tokens=1)
    with pytest.raises(OutputConflictError) as info:
        FileSink(out, "fp-b", total=9, owner=owner(map_index=1))
    message = str(info.value)
    assert "Another task is writing this output_path right now" in message
    assert "task_id='t'" in message and "map_index=0" in message and "{{ ti.map_index }}" in message
    assert "{{ run_id }}" in message and str(out) in message
    first.write(_records(2, start=2), tokens=1)
    first.close(complete=True)
    assert read_records(out) == _records(4)


def test_an_overlapping_run_of_the_same_task_is_refused(out: ObjectStoragePath) -> None:
    first = FileSink(out, "fp", total=4, owner=owner(run_id="scheduled__1"))
    with pytest.raises(OutputConflictError, match="run_id='scheduled__1'"):
        FileSink(out, "fp", total=4, owner=owner(run_id="manual__2"))
    first.close(complete=False)


def test_a_stale_lease_of_another_task_is_taken_over(out: ObjectStoragePath) -> None:
    lease = {
        **owner(map_index=3).__dict__,
        "host": "elsewhere",
        "token": "x",
        "heartbeat": time.time() - 3600,
    }
    beside(out, ".lease.json").write_text(json.dumps(lease))
    sink = FileSink(out, "fp", total=1, owner=owner(map_index=4))
    sink.write(_records(1), tokens=1)
    sink.close(complete=True)
    assert read_records(out) == _records(1)


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(out: ObjectStoragePath) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease = {**owner(run_id="other").__dict__, "host": socket.gethostname(), "pid": dead.pid,
             "token": "x", "heartbeat": time.time()}  # fmt: skip
    beside(out, ".lease.json").write_text(json.dumps(lease))
    sink = FileSink(out, "fp", total=1, owner=owner())
    sink.close(complete=False)
    alive = {**lease, "pid": os.getppid()}  # a live process on this host: refused
    beside(out, ".lease.json").write_text(json.dumps(alive))
    with pytest.raises(OutputConflictError):
        FileSink(out, "fp", total=1, owner=owner())


def test_a_later_try_of_the_same_task_instance_takes_over_and_resumes(out: ObjectStoragePath) -> None:
    first = FileSink(out, "fp", total=4, owner=owner(try_number=1), part_batches=1)
    first.write(_records(2), tokens=1)
    abandon(first)  # its worker was killed; the lease's heartbeat is still fresh
    retry = FileSink(out, "fp", total=4, owner=owner(try_number=2))
    assert retry.resumed == 2
    retry.write(_records(2, start=2), tokens=1)
    retry.close(complete=True)
    assert read_records(out) == _records(4)


def test_a_task_that_lost_its_lease_writes_nothing_more(out: ObjectStoragePath) -> None:
    zombie = FileSink(out, "fp", total=6, owner=owner(try_number=1), part_batches=1)
    zombie.write(_records(2), tokens=1)
    new = FileSink(out, "fp", total=6, owner=owner(try_number=2), part_batches=1)  # Airflow restarted it
    assert new.resumed == 2
    with pytest.raises(OutputConflictError, match="Another task took over this output_path"):
        zombie.write(_records(2, start=2), tokens=1)
    zombie.close(complete=False)
    assert manifest(out)["records"] == 2
    new.write(_records(4, start=2), tokens=1)
    new.close(complete=True)
    assert read_records(out) == _records(6)


def test_the_complete_output_of_another_task_is_never_overwritten(out: ObjectStoragePath) -> None:
    shard0 = FileSink(out, "fp-shard-0", total=2, owner=owner(map_index=0))
    shard0.write(_records(2), tokens=1)
    shard0.close(complete=True)
    before = out.read_bytes()
    with pytest.raises(OutputConflictError) as info:
        FileSink(out, "fp-shard-1", total=3, owner=owner(map_index=1))
    assert "holds the complete output of another task" in str(info.value)
    assert "map_index=0" in str(info.value) and "{{ ti.map_index }}" in str(info.value)
    assert out.read_bytes() == before and manifest(out)["fingerprint"] == "fp-shard-0"
    # The same task, in a later run with other inputs or options, replaces its own output.
    rerun = FileSink(out, "fp-new-options", total=1, owner=owner(map_index=0, run_id="r2"))
    rerun.write(_records(1, start=7), tokens=1)
    rerun.close(complete=True)
    assert read_records(out) == _records(1, start=7)


def test_owner_from_context_reads_the_task_instance() -> None:
    class TI:
        dag_id, task_id, run_id, map_index, try_number = "dag", "task", "run", 2, 3

    who = Owner.from_context({"ti": TI()})
    assert (who.dag_id, who.task_id, who.run_id, who.map_index, who.try_number) == (
        "dag",
        "task",
        "run",
        2,
        3,
    )
    assert Owner.from_context({"ti": object()}).task_id is None


# -- a checkpoint is checked before it is trusted ------------------------------------------------------


def _items(n: int) -> list[Item]:
    return [Item(i, i, f"text {i}") for i in range(n)]


def _checkpoint(out: ObjectStoragePath, parts: int, per_part: int = 2) -> list[ObjectStoragePath]:
    """An interrupted attempt's checkpoint of ``parts`` parts; their paths, in order."""
    sink = FileSink(out, "fp", total=10, owner=owner(), part_batches=1)
    for k in range(parts):
        sink.write(_records(per_part, start=k * per_part), tokens=1)
    abandon(sink)
    return [beside(out, ".parts") / n for n in part_names(manifest(out), parts_listed(out))]


def test_manifest_totals_of_the_wrong_type_or_size_are_rederived_from_the_parts(
    out: ObjectStoragePath,
) -> None:
    _checkpoint(out, parts=2)
    doc = manifest(out)
    beside(out, ".manifest.json").write_text(json.dumps({**doc, "records": "many", "succeeded": 19}))
    again = FileSink(out, "fp", total=10, owner=owner(try_number=2))
    assert again.resumed == 4 and (again.counts.succeeded, again.counts.failed) == (4, 0)
    assert again.counts.token_usage == 2


def test_a_part_whose_ids_are_not_the_inputs_at_its_place_is_sent_again(out: ObjectStoragePath) -> None:
    """Well formed and hashing to its name, but written for other inputs: the ids are checked too."""
    paths = _checkpoint(out, parts=3)
    data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in _records(2, start=7))
    forged = paths[1].parent / checkpoint.part_name(
        1, paths[1].name.split("-")[2], 2, 1, checkpoint.digest_of(data)
    )
    paths[1].unlink()
    forged.write_bytes(data)
    again = FileSink(out, "fp", total=10, owner=owner(try_number=2))
    assert again.resumed == 6  # each part reads back as written
    rest = list(again.skip_done(iter(_items(10))))
    assert again.resumed == 2 and [it.index for it in rest] == list(range(2, 10))
    again.write(_records(8, start=2), tokens=1)
    again.close(complete=True)
    assert read_records(out) == _records(10)


def test_a_part_changed_after_it_was_written_is_never_published(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp", total=4, owner=owner(), part_batches=1)
    sink.write(_records(2), tokens=1)
    (part,) = (beside(out, ".parts") / n for n in parts_listed(out))
    part.write_bytes(part.read_bytes().replace(b'"n":0', b'"n":9'))  # same size
    sink.write(_records(2, start=2), tokens=1)
    with pytest.raises(CheckpointError, match="changed after this task wrote it"):
        sink.close(complete=True)
    assert not out.exists() and manifest(out)["complete"] is False
    retry = FileSink(out, "fp", total=4, owner=owner(try_number=2))
    assert retry.resumed == 0  # part 0 is the one that changed
    retry.write(_records(4), tokens=1)
    retry.close(complete=True)
    assert read_records(out) == _records(4)


def test_a_short_output_is_never_published_as_complete(out: ObjectStoragePath) -> None:
    sink = FileSink(out, "fp", total=5, owner=owner())
    sink.write(_records(4), tokens=1)
    with pytest.raises(CheckpointError, match="4 records for 5 inputs"):
        sink.close(complete=True)
    assert not out.exists() and manifest(out)["complete"] is False


def test_a_checkpoint_of_the_previous_manifest_version_starts_afresh(out: ObjectStoragePath) -> None:
    _checkpoint(out, parts=2)
    beside(out, ".manifest.json").write_text(json.dumps({**manifest(out), "version": 2}))
    again = FileSink(out, "fp", total=10, owner=owner(try_number=2))
    assert again.resumed == 0 and not beside(out, ".manifest.json").exists()


@pytest.mark.parametrize("heartbeat", ["soon", [1], float("nan")])
def test_a_lease_with_a_heartbeat_that_is_not_a_time_is_taken_over(
    out: ObjectStoragePath, heartbeat: Any
) -> None:
    """Not written by this provider (a tampered or foreign file): it cannot prove a live owner."""
    lease_doc = {**owner(map_index=3).__dict__, "host": "elsewhere", "token": "x", "heartbeat": heartbeat}
    beside(out, ".lease.json").write_text(json.dumps(lease_doc))
    sink = FileSink(out, "fp", total=1, owner=owner(map_index=4))
    sink.write(_records(1), tokens=1)
    sink.close(complete=True)
    assert read_records(out) == _records(1)
