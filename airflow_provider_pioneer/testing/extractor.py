"""Deterministic entity extractor that stands in for a GLiNER model in the emulator.

It is a gazetteer (known companies, products, places, first names) plus a few
rules (capitalised runs, dates, money). Everything is precompiled at import so
the emulator can push ~100k texts a minute through it.

Confidence is not random: it is a stable hash of (text, span, label) mapped into
0.55..0.99 for gazetteer hits and 0.30..0.70 for rule hits, so the same request
always gets the same answer and ``threshold`` visibly filters rule hits.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ["CANONICAL_LABELS", "Entity", "canonical_label", "extract", "find_entities"]

_ORGANIZATIONS = (
    "Apple", "Google", "Alphabet", "Microsoft", "Pioneer", "Fastino", "Tesla", "Amazon", "OpenAI",
    "Anthropic", "Meta", "Facebook", "Netflix", "Nvidia", "NVIDIA", "IBM", "Intel", "AMD", "Oracle",
    "Samsung", "Sony", "Toyota", "SpaceX", "Uber", "Airbnb", "Spotify", "Salesforce", "Adobe",
    "Stripe", "Shopify", "Twitter", "LinkedIn", "GitHub", "Hugging Face", "DeepMind", "Mistral",
    "Apache Software Foundation", "United Nations", "European Union", "NASA", "Goldman Sachs",
    "JPMorgan", "Morgan Stanley", "Walmart", "Coca-Cola", "Pepsi", "Siemens", "Volkswagen", "BMW",
)  # fmt: skip
_PRODUCTS = (
    "MacBook Pro", "MacBook Air", "MacBook", "iPhone", "iPad", "Apple Watch", "AirPods", "Vision Pro",
    "Pixel", "Android", "Chrome", "Gmail", "Windows", "Xbox", "Office", "Azure", "Surface", "Model 3",
    "Model S", "Model X", "Model Y", "Cybertruck", "Kindle", "Alexa", "Echo", "ChatGPT", "GPT-4",
    "Claude", "Gemini", "PlayStation", "Galaxy", "Airflow", "GLiNER", "Photoshop", "Slack",
)  # fmt: skip
_LOCATIONS = (
    "San Francisco", "New York", "Los Angeles", "Seattle", "Boston", "Chicago", "Austin", "Cupertino",
    "Mountain View", "Palo Alto", "Silicon Valley", "Paris", "London", "Berlin", "Munich", "Tokyo",
    "Beijing", "Shanghai", "Singapore", "Sydney", "Toronto", "Madrid", "Rome", "Amsterdam", "Dublin",
    "Zurich", "Stockholm", "California", "Texas", "Washington", "France", "Germany", "Japan", "China",
    "India", "Canada", "Brazil", "United States", "United Kingdom", "Europe", "Asia", "Africa",
)  # fmt: skip
_FIRST_NAMES = (
    "Tim", "Sundar", "Satya", "Elon", "Sam", "Jeff", "Mark", "Bill", "Steve", "Larry", "Sergey",
    "Jensen", "Lisa", "Susan", "Mary", "John", "James", "Robert", "Michael", "William", "David",
    "Richard", "Joseph", "Thomas", "Charles", "Jennifer", "Linda", "Patricia", "Elizabeth", "Barbara",
    "Sarah", "Emma", "Olivia", "Sophia", "Anna", "Maria", "Alice", "Bob", "Carol", "Dave", "Eve",
    "George", "Peter", "Paul", "Laura", "Julia", "Ada", "Grace", "Alan", "Marie",
)  # fmt: skip
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
# Capitalised words that start a run but are not names on their own.
_STOPWORDS = frozenset((
    "The", "A", "An", "In", "On", "At", "For", "From", "To", "Of", "And", "But", "Or", "If", "When",
    "While", "This", "That", "These", "Those", "It", "Its", "We", "Our", "They", "Their", "He", "She",
    "His", "Her", "You", "Your", "I", "My", "Mr", "Mrs", "Ms", "Dr", "After", "Before", "During", "Today",
    "Yesterday", "Tomorrow", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    *_MONTHS,
))  # fmt: skip
_ORG_SUFFIXES = frozenset({"Inc", "Corp", "Corporation", "Ltd", "LLC", "GmbH", "Labs", "AG", "SA", "Co"})
_LOCATION_PREPOSITIONS = frozenset({"in", "at", "near", "from", "to"})

#: Canonical labels the extractor can produce ("misc" is for capitalised runs no rule explains).
CANONICAL_LABELS = ("organization", "product", "location", "person", "date", "money", "misc")
_SYNONYMS = {
    "organization": "organization", "organisation": "organization", "org": "organization",
    "company": "organization", "companies": "organization", "corporation": "organization",
    "business": "organization", "brand": "organization", "product": "product", "products": "product",
    "location": "location", "place": "location", "city": "location", "country": "location",
    "loc": "location", "gpe": "location", "person": "person", "people": "person", "per": "person",
    "name": "person", "date": "date", "time": "date", "year": "date", "money": "money",
    "amount": "money", "price": "money", "currency": "money", "misc": "misc", "entity": "misc",
    "other": "misc",
}  # fmt: skip

_GAZETTEER: dict[str, str] = {}
for _label, _names in (("organization", _ORGANIZATIONS), ("product", _PRODUCTS), ("location", _LOCATIONS)):
    for _name in _names:
        _GAZETTEER[_name] = _label


def _alternation(words: Iterable[str]) -> str:
    # Longest first so "MacBook Pro" wins over "MacBook".
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_GAZETTEER_RE = re.compile(rf"(?<![\w-])(?:{_alternation(_GAZETTEER)})(?![\w-])")
_PERSON_RE = re.compile(rf"\b(?:{_alternation(_FIRST_NAMES)})(?:\s+[A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b")
_DATE_RE = re.compile(
    rf"\b(?:{_alternation(_MONTHS)})\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"
    r"|\b\d{4}-\d{2}-\d{2}\b"
)
_YEAR_RE = re.compile(r"\b(?:19|20)\d{2}\b")
_MONEY_RE = re.compile(
    r"[$€£]\s?\d+(?:[.,]\d+)*(?:\s?(?:thousand|million|billion|trillion|[kKmMbB]n?)\b)?"
    r"|\b\d+(?:[.,]\d+)*\s?(?:dollars|euros|USD|EUR|GBP)\b"
)
_CAP_RUN_RE = re.compile(r"\b[A-Z][\w&'-]*(?:\s+[A-Z][\w&'-]*)*")
_PREV_WORD_RE = re.compile(r"(\w+)\s*$")
_SENTENCE_END = frozenset(".!?\n")

_GAZETTEER_RANGE = (0.55, 0.99)
_RULE_RANGE = (0.30, 0.70)


class Entity(NamedTuple):
    """One entity found in a text (label is canonical, ``text[start:end] == text``)."""

    label: str
    text: str
    start: int
    end: int
    confidence: float


def canonical_label(label: str) -> str | None:
    """Map a requested label (case-insensitive, synonyms allowed) to a canonical one, or None."""
    key = label.strip().lower().replace(" ", "_").replace("-", "_")
    return _SYNONYMS.get(key) or _SYNONYMS.get(key.rstrip("s"))


def _confidence(text_hash: int, start: int, end: int, label: str, span: tuple[float, float]) -> float:
    h = zlib.crc32(f"{start}:{end}:{label}".encode(), text_hash)
    low, high = span
    return round(low + (h % 10_000) / 9_999 * (high - low), 4)


def _at_sentence_start(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in " \t\"'(":
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def find_entities(text: str) -> list[Entity]:
    """All entities of ``text`` (every canonical label), ordered by position; spans never overlap."""
    text_hash = zlib.crc32(text.encode())
    taken: list[tuple[int, int]] = []
    found: list[Entity] = []

    def add(label: str, start: int, end: int, span: tuple[float, float]) -> None:
        for s, e in taken:
            if start < e and s < end:
                return
        taken.append((start, end))
        conf = _confidence(text_hash, start, end, label, span)
        found.append(Entity(label, text[start:end], start, end, conf))

    # Priority order: the most specific patterns claim their spans first.
    for m in _DATE_RE.finditer(text):
        add("date", m.start(), m.end(), _GAZETTEER_RANGE)
    for m in _MONEY_RE.finditer(text):
        add("money", m.start(), m.end(), _GAZETTEER_RANGE)
    for m in _GAZETTEER_RE.finditer(text):
        add(_GAZETTEER[m.group()], m.start(), m.end(), _GAZETTEER_RANGE)
    for m in _PERSON_RE.finditer(text):
        add("person", m.start(), m.end(), _GAZETTEER_RANGE)
    for m in _YEAR_RE.finditer(text):
        add("date", m.start(), m.end(), _RULE_RANGE)
    for m in _CAP_RUN_RE.finditer(text):
        _add_capitalised_run(text, m.start(), m.group(), add)
    found.sort(key=lambda e: e.start)
    return found


def _add_capitalised_run(text: str, start: int, run: str, add: Any) -> None:
    words = run.split()
    offset = start
    # A capitalised word at sentence start or a stopword says nothing: drop leading ones.
    while words and (words[0] in _STOPWORDS or (offset == start and _at_sentence_start(text, start))):
        offset = text.index(words[0], offset) + len(words[0])
        words = words[1:]
        while offset < len(text) and text[offset].isspace():
            offset += 1
    if not words:
        return
    end = start + len(run)
    if words[-1] in _ORG_SUFFIXES and len(words) > 1:
        label = "organization"
    elif words[0] in _FIRST_NAMES:
        label = "person"
    else:
        prev = _PREV_WORD_RE.search(text, 0, offset)
        after_preposition = prev is not None and prev.group(1).lower() in _LOCATION_PREPOSITIONS
        label = "location" if after_preposition else "misc"
    add(label, offset, end, _RULE_RANGE)


def extract(
    text: str,
    labels: Sequence[str],
    threshold: float = 0.5,
    include_confidence: bool = True,
    include_spans: bool = True,
) -> dict[str, Any]:
    """The per-text result the emulator returns: ``{"entities": {label: [entity, ...]}}``.

    :param text: the input text.
    :param labels: requested labels as sent (the response keys use them verbatim, every one present).
    :param threshold: entities with a lower confidence are dropped.
    :param include_confidence: add ``confidence`` to each entity.
    :param include_spans: add ``start`` and ``end`` (character offsets) to each entity.
    """
    wanted = {label: canonical_label(label) for label in labels}
    out: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    if not any(wanted.values()):
        return {"entities": out}
    for ent in find_entities(text):
        if ent.confidence < threshold:
            continue
        for label, canon in wanted.items():
            if canon != ent.label:
                continue
            item: dict[str, Any] = {"text": ent.text}
            if include_confidence:
                item["confidence"] = ent.confidence
            if include_spans:
                item["start"] = ent.start
                item["end"] = ent.end
            out[label].append(item)
    return {"entities": out}
