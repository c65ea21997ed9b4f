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


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_link_every_section_and_every_link_lands() -> None:
    text = (REPO / "README.md").read_text()
    contents = text.split("Contents:", 1)[1].split("\n\n", 1)[0]
    linked = re.findall(r"\]\(#([\w-]+)\)", contents)
    anchors = {_slug(h) for h in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    assert set(linked) <= anchors, f"Contents links to no heading: {set(linked) - anchors}"
    sections = [_slug(h) for h in re.findall(r"^## (.+)$", text, re.M)][1:]  # after Quick start
    assert [s for s in sections if s not in linked] == []
    assert "output-checkpoint-and-resume" in linked  # where a user looks for resume and s3://


def test_the_runtime_dependencies_the_readme_lists_are_pyprojects() -> None:
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0] for req in declared}
    text = (REPO / "README.md").read_text()
    sentence = text.split("The runtime needs only", 1)[1].split(";", 1)[0]
    assert set(re.findall(r"`([\w-]+)`", sentence)) == names


def test_the_example_dag_table_lists_every_example_dag() -> None:
    dag_ids = {
        m for f in (REPO / "example_dags").glob("*.py") for m in re.findall(r'dag_id="(\w+)"', f.read_text())
    }
    assert len(dag_ids) >= 4
    text = (REPO / "README.md").read_text()
    table = text.split("| DAG | schedule | what |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", table, re.M)) == dag_ids


#: The words ``airflow providers list`` must show for each operator module the provider registers.
_OPERATOR_FAMILY = {
    "inference": "inference",
    "key_rotation": "rotation",
    "datasets": "lifecycle",
    "training": "lifecycle",
    "evaluation": "lifecycle",
    "feedback": "lifecycle",
}


def test_the_provider_description_names_every_operator_family() -> None:
    from airflow_provider_pioneer.get_provider_info import get_provider_info

    info = get_provider_info()
    modules = [m.rsplit(".", 1)[1] for group in info["operators"] for m in group["python-modules"]]
    unknown = [m for m in modules if m not in _OPERATOR_FAMILY]
    assert not unknown, (
        f"new operator modules {unknown}: name them in the description and in _OPERATOR_FAMILY"
    )
    for module in modules:
        assert _OPERATOR_FAMILY[module] in info["description"], module


def test_the_readmes_dag_test_example_is_the_file_the_suite_runs() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Testing your DAGs with the emulator", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    example = REPO / "tests" / "dags" / "readme_example"
    assert blocks[:2] == [
        (example / "dags" / "news_entities.py").read_text(),
        (example / "tests" / "test_news_entities.py").read_text(),
    ]


def test_the_deploying_page_is_linked_and_quotes_the_leases_real_timings() -> None:
    from airflow_provider_pioneer.batching import output

    assert "](docs/deploying.md)" in (REPO / "README.md").read_text()
    page = (REPO / "docs" / "deploying.md").read_text()
    quoted = {name: float(value) for value, name in re.findall(r"\*\*(\d+) s\*\* \(`(LEASE_\w+)`\)", page)}
    assert quoted == {"LEASE_HEARTBEAT_S": output.LEASE_HEARTBEAT_S, "LEASE_TTL_S": output.LEASE_TTL_S}
    margin = output.LEASE_TTL_S - output.LEASE_HEARTBEAT_S
    assert f"the {margin:.0f} s margin" in page
    # Every anchor of its own checklist lands on one of its headings.
    anchors = {_slug(h) for h in re.findall(r"^## (.+)$", page, re.M)}
    assert set(re.findall(r"\]\(#([\w-]+)\)", page)) <= anchors
