"""The README's Guarantees table names the tests that prove each promise: they must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _guarantee_rows() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| **")]


def test_every_test_the_guarantees_name_exists() -> None:
    rows = _guarantee_rows()
    assert len(rows) >= 8
    for row in rows:
        proofs = row.rsplit("|", 2)[1]
        refs = re.findall(r"`([\w/]+\.py)(?:::(\w+))?`|`::(\w+)`", proofs)
        assert refs, f"no test named in: {row[:80]}"
        current: Path | None = None
        for file, name, bare in refs:
            if file:
                current = REPO / "tests" / file
                assert current.exists(), f"{file} named in the README does not exist"
            test = name or bare
            if test:
                assert current is not None
                assert re.search(rf"^def {test}\(", current.read_text(), re.M), (
                    f"{current.name}::{test} missing"
                )
