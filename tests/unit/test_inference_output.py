"""Unit tests of the inputs (streamed JSONL, fingerprints) and the checkpointed output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_pioneer.batching.inputs import FileSource, InputError, ListSource, request_fingerprint
from airflow_provider_pioneer.batching.output import FileSink


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


def test_file_source_names_the_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        FileSource(ObjectStoragePath(str(p)))


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


def test_output_appears_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = FileSink(ObjectStoragePath(str(out)), "fp", total=4)
    sink.write(_records(2), tokens=5)
    assert not out.exists()
    assert (tmp_path / "out.jsonl.partial").exists()
    sink.write(_records(2, start=2), tokens=5)
    sink.close(complete=True)
    assert _lines(out) == _records(4)
    assert not (tmp_path / "out.jsonl.partial").exists()
    checkpoint = json.loads((tmp_path / "out.jsonl.checkpoint.json").read_text())
    assert checkpoint["complete"] is True and checkpoint["records"] == 4 and checkpoint["token_usage"] == 10


def test_resume_cuts_bytes_written_after_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = FileSink(ObjectStoragePath(str(out)), "fp", total=6)
    sink.write(_records(2), tokens=1)
    # A kill between writing a batch and its checkpoint: bytes past the checkpointed offset.
    sink._handle.write(b'{"id": 2, "resu')
    sink._handle.flush()
    again = FileSink(ObjectStoragePath(str(out)), "fp", total=6)
    assert again.resumed == 2 and again.counts.succeeded == 2
    again.write(_records(4, start=2), tokens=1)
    again.close(complete=True)
    assert _lines(out) == _records(6)


def test_a_checkpoint_of_another_request_is_never_reused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = FileSink(ObjectStoragePath(str(out)), "fp-old", total=3)
    sink.write(_records(3), tokens=1)
    sink.close(complete=True)
    same = FileSink(ObjectStoragePath(str(out)), "fp-old", total=3)
    assert same.already_complete and same.resumed == 3
    fresh = FileSink(ObjectStoragePath(str(out)), "fp-new", total=3)
    assert fresh.resumed == 0 and not fresh.already_complete
    # The stale checkpoint is gone, so a crash of the new run cannot resume from it either.
    assert not FileSink(ObjectStoragePath(str(out)), "fp-old", total=3).already_complete


def test_complete_output_that_was_altered_is_redone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = FileSink(ObjectStoragePath(str(out)), "fp", total=3)
    sink.write(_records(3), tokens=1)
    sink.close(complete=True)
    out.write_text(out.read_text()[:-10])
    assert not FileSink(ObjectStoragePath(str(out)), "fp", total=3).already_complete
