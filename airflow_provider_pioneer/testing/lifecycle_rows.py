"""How the emulator validates an uploaded NER dataset, as Pioneer does (LIFECYCLE.md §2.2)."""

from __future__ import annotations

import json

__all__ = ["validate_ner_rows"]


def validate_ner_rows(data: bytes) -> tuple[int, list[str], list[str]]:
    """Rows, errors (``line N: ...``) and labels of an NER JSONL upload, as Pioneer validates it."""
    errors: list[str] = []
    labels: list[str] = []
    rows = 0
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        rows += 1
        try:
            row = json.loads(line)
        except ValueError:
            errors.append(f"line {number}: not JSON")
            continue
        text, entities = (row.get("text"), row.get("entities")) if isinstance(row, dict) else (None, None)
        if not isinstance(text, str) or not isinstance(entities, list):
            errors.append(f"line {number}: needs 'text' (string) and 'entities' (list)")
            continue
        for pair in entities:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                errors.append(f"line {number}: each entity is [span, label]")
            elif pair[0] not in text:
                errors.append(f"line {number}: span {pair[0]!r} is not in the text")
            elif pair[1] not in labels:
                labels.append(pair[1])
    if rows == 0:
        errors.append("the file has no rows")
    return rows, errors, labels
