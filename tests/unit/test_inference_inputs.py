"""Unit tests of the input sources' checks: values JSON cannot hold, duplicate ids (no network)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer.batching import inputs
from airflow_provider_pioneer.batching.inputs import (
    FileSource,
    InputError,
    ListSource,
    json_problem,
    request_fingerprint,
)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain", None),
        ("emoji \U0001f600 and accents é", None),
        (12, None),
        (None, None),
        (dt.date(2026, 1, 2), None),  # written with default=str
        ("\ud83d", "holds '\\ud83d', a lone surrogate, which is not valid Unicode"),
        ({"k": ["ok", "\udfff"]}, "holds '\\udfff', a lone surrogate, which is not valid Unicode"),
        (float("nan"), "holds NaN or Infinity, which standard JSON cannot hold"),
        ([1, {"x": float("-inf")}], "holds NaN or Infinity, which standard JSON cannot hold"),
    ],
)
def test_json_problem_names_what_standard_json_in_utf8_cannot_hold(value: Any, problem: str | None) -> None:
    assert json_problem(value) == problem


def test_a_text_that_is_not_valid_unicode_becomes_an_item_problem_not_a_crash() -> None:
    src = ListSource(["fine", "bad \ud83d", {"id": "r", "text": "\udc00x"}])
    items = list(src.items())
    assert [it.problem is None for it in items] == [True, False, False]
    assert "lone surrogate '\\ud83d' at character 4" in str(items[1].problem)
    assert "lone surrogate '\\udc00' at character 0" in str(items[2].problem)
    # The digest still tells different inputs apart.
    assert ListSource(["bad \ud83d"]).digest != ListSource(["bad \udc00"]).digest


def test_request_fingerprint_hashes_values_utf8_cannot_hold() -> None:
    assert request_fingerprint("d", schema={"entities": ["a\ud83d"]}) != request_fingerprint(
        "d", schema={"entities": ["a"]}
    )


def test_duplicate_ids_are_counted_by_their_written_form() -> None:
    texts = [
        {"id": "a", "text": "t"},
        {"id": "b", "text": "t"},
        {"id": "a", "text": "t"},
        {"id": 1, "text": "t"},
        {"id": "1", "text": "t"},  # "1" and 1 are different ids in the output
        {"id": 1, "text": "t"},
        {"id": "a", "text": "t"},
        {"id": "c", "text": "t"},
        {"id": "c", "text": "t"},
        {"id": "d", "text": "t"},
        {"id": "d", "text": "t"},
    ]
    src = ListSource(texts)
    assert src.duplicate_ids == 5
    assert src.first_duplicates == ("a", 1, "c")  # a few, each once, for the log
    assert src.duplicates_checked_all


def test_plain_strings_use_their_index_and_never_duplicate() -> None:
    assert ListSource(["same", "same", "same"]).duplicate_ids == 0


def test_the_duplicate_check_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "DUPLICATE_CHECK_LIMIT", 3)
    src = ListSource([{"id": i % 5, "text": "t"} for i in range(10)])
    assert not src.duplicates_checked_all
    assert src.duplicate_ids == 3  # ids 0, 1, 2 seen again; 3 and 4 were past the limit


def test_file_source_names_the_line_of_a_bad_id_counting_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('"a text"\n\n{"id": "x", "text": "t"}\n{"id": Infinity, "text": "t"}\n')
    with pytest.raises(InputError, match=r"in.jsonl, line 4: the id \('id'\) holds NaN or Infinity"):
        FileSource(path)


def test_file_source_counts_duplicates_in_its_scan(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"key": "k{i % 3}", "text": "t"}}\n' for i in range(7)))
    src = FileSource(path, id_field="key")
    assert (src.total, src.duplicate_ids, src.first_duplicates) == (7, 4, ("k0", "k1", "k2"))
