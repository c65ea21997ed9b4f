"""The emulator's deterministic entity extractor (no network)."""

from __future__ import annotations

import itertools
import time

import pytest

from airflow_provider_pioneer.testing.extractor import canonical_label, extract, find_entities
from airflow_provider_pioneer.testing.state import count_tokens

SAMPLES = [
    "Apple announced the MacBook Pro.",
    "Tim Cook met Satya Nadella in Paris on March 3, 2025 to discuss a $3.5 billion deal with Acme Corp.",
    "The board of Globex Industries met in Springfield. Later, Hooli Inc said no.",
    "Übermäßig: Siemens baut in München, sagt Anna Schmidt.",
    "nothing capitalised here at all",
]


def test_the_example() -> None:
    result = extract("Apple announced the MacBook Pro.", ["organization", "product"])
    assert result == {
        "entities": {
            "organization": [{"text": "Apple", "confidence": pytest.approx(0.9115), "start": 0, "end": 5}],
            "product": [{"text": "MacBook Pro", "confidence": pytest.approx(0.9861), "start": 20, "end": 31}],
        }
    }


@pytest.mark.parametrize("text", SAMPLES)
def test_spans_are_exact_and_never_overlap(text: str) -> None:
    found = find_entities(text)
    for ent in found:
        assert text[ent.start : ent.end] == ent.text
        assert 0.3 <= ent.confidence <= 0.99
    for a, b in itertools.pairwise(found):
        assert a.end <= b.start


def test_rules_and_gazetteer() -> None:
    text = SAMPLES[1]
    labels = ["person", "location", "date", "money", "organization"]
    entities = extract(text, labels, threshold=0.0)["entities"]
    assert [e["text"] for e in entities["person"]] == ["Tim Cook", "Satya Nadella"]
    assert [e["text"] for e in entities["location"]] == ["Paris"]
    assert [e["text"] for e in entities["date"]] == ["March 3, 2025"]
    assert [e["text"] for e in entities["money"]] == ["$3.5 billion"]
    assert [e["text"] for e in entities["organization"]] == ["Acme Corp"]
    rules = extract(SAMPLES[2], ["organization", "location"], threshold=0.0)["entities"]
    assert [e["text"] for e in rules["organization"]] == ["Hooli Inc"]
    assert [e["text"] for e in rules["location"]] == ["Springfield"]


def test_labels_case_insensitive_with_synonyms() -> None:
    assert canonical_label("Company") == canonical_label("ORG") == "organization"
    assert canonical_label("city") == canonical_label("Place") == "location"
    assert canonical_label("spaceship") is None
    result = extract("Apple opened in London.", ["Company", "City", "spaceship"])["entities"]
    assert [e["text"] for e in result["Company"]] == ["Apple"]
    assert [e["text"] for e in result["City"]] == ["London"]
    assert result["spaceship"] == []


def test_deterministic_and_threshold_monotonic() -> None:
    for text in SAMPLES:
        labels = ["organization", "person", "location", "misc", "date", "money", "product"]
        assert extract(text, labels, 0.0) == extract(text, labels, 0.0)
        counts = [sum(map(len, extract(text, labels, t)["entities"].values())) for t in (0.0, 0.5, 0.8, 1.0)]
        assert counts == sorted(counts, reverse=True)


def test_token_count_is_whitespace_words() -> None:
    assert count_tokens(["Apple announced the MacBook Pro.", "  two\twords \n"]) == 7


def test_fast_enough_for_benchmarks() -> None:
    texts = [f"{SAMPLES[1]} number {i}" for i in range(2000)]
    started = time.perf_counter()
    for text in texts:
        extract(text, ["organization", "person", "location"])
    assert time.perf_counter() - started < 1.0  # well above 100k texts/minute
