"""Checks of a dataset file before it is uploaded (LIFECYCLE.md §2.2): bad rows are named, nothing is sent.

NER rows are ``{"text": str, "entities": [[span, label], ...]}``; each span must occur in its text
(``[]`` is a negative example). Classification rows carry ``label`` or ``labels``; decoder rows
``messages``. The GLiNER2 shape ``{"input", "output"}`` is refused with how to flatten it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_provider_pioneer import safe_json

__all__ = ["DatasetCheck", "check_rows"]

#: Bad lines named in a message; the count says how many more.
SHOWN = 10


@dataclass
class DatasetCheck:
    """The outcome of :func:`check_rows`: rows seen, labels found, problems by line number."""

    rows: int = 0
    labels: list[str] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rows > 0 and not self.problems

    def message(self, where: str) -> str:
        if self.rows == 0 and not self.problems:
            return f"{where} has no rows; a dataset needs at least one JSON line."
        shown = "\n".join(f"  line {n}: {why}" for n, why in self.problems[:SHOWN])
        more = f"\n  ... and {len(self.problems) - SHOWN} more" if len(self.problems) > SHOWN else ""
        return (
            f"{where}: {len(self.problems)} of {self.rows} rows are not valid; nothing was uploaded. "
            f"Fix these lines:\n{shown}{more}"
        )


def _ner_problem(row: dict[str, object]) -> str | None:
    if "input" in row and "output" in row and "text" not in row:
        return 'GLiNER2 {"input", "output"} rows are not accepted; flatten to {"text", "entities": [[span, label]]}'
    text, entities = row.get("text"), row.get("entities")
    if not isinstance(text, str) or not text.strip():
        return "'text' must be a non-empty string"
    if not isinstance(entities, list):
        return "'entities' must be a list of [span, label] pairs ([] for a negative example)"
    for index, pair in enumerate(entities):
        if not (
            isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) and p for p in pair)
        ):
            return f"entity {index} is not a [span, label] pair of strings"
        if pair[0] not in text:
            return f"entity {index}: span {pair[0][:60]!r} is not in the text"
    return None


def _problem(row: object, dataset_type: str) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    if dataset_type == "ner":
        return _ner_problem(row)
    if dataset_type == "classification":
        if not isinstance(row.get("text"), str):
            return "'text' must be a string"
        if not (isinstance(row.get("label"), str) or isinstance(row.get("labels"), list)):
            return "give 'label' (one class) or 'labels' (a list)"
    elif dataset_type == "decoder" and not isinstance(row.get("messages"), list):
        return "'messages' must be a list of {role, content}"
    return None


def check_rows(lines: Iterable[str], dataset_type: str = "ner") -> DatasetCheck:
    """Check every line of a JSONL dataset (streamed); blank lines are skipped.

    :param lines: the file's lines.
    :param dataset_type: ``ner``, ``classification``, ``decoder`` or ``custom`` (``custom``: JSON objects only).
    """
    result = DatasetCheck()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        result.rows += 1
        try:
            row = safe_json.loads(line)
        except ValueError:
            result.problems.append((number, "not valid JSON"))
            continue
        problem = _problem(row, dataset_type)
        if problem:
            result.problems.append((number, problem))
        elif dataset_type == "ner":
            for _, label in row["entities"]:
                if label not in result.labels:
                    result.labels.append(label)
    return result
