"""What the README (the PyPI page) and the docs pages (docs/, mkdocs.yml) state that the code can check.

The Guarantees table (docs/guarantees.md) names the tests that prove each promise: they must exist.
The README links every docs page and every link lands; the code the pages show is pulled from files
the suite runs.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


DOCS = REPO / "docs"
#: The README is the PyPI page: what it is, install, a minimal DAG per operator, links.
README_MAX_LINES = 260


def _guarantee_rows() -> list[str]:
    text = (DOCS / "guarantees.md").read_text()
    section = text.split("# Guarantees", 1)[1].split("\n## ", 1)[0]
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
                assert current.exists(), f"{file} named in docs/guarantees.md does not exist"
            test = name or bare
            if test:
                assert current is not None
                assert re.search(rf"^def {test}\(", current.read_text(), re.M), (
                    f"{current.name}::{test} missing"
                )


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _nav_pages() -> list[str]:
    """Every page of mkdocs.yml's nav, as a path under docs/."""
    import yaml

    def walk(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [page for item in node for page in walk(item)]
        if isinstance(node, dict):
            return [page for value in node.values() for page in walk(value)]
        return []

    return walk(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])


def _headings(page: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,4} (.+)$", page.read_text(), re.M)}


def test_the_readme_is_short_and_links_every_docs_page() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    nav = _nav_pages()
    on_disk = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(nav) == on_disk, "every docs/*.md page is in mkdocs.yml's nav, and only those"
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)(?:#[\w-]+)?\)", text))
    assert set(nav) - linked == set(), "the README links every page of the docs"
    # Where a user looks for resume and s3:// output.
    assert "docs/inference.md" in text and "output-checkpoint-and-resume" in _headings(DOCS / "inference.md")


def test_every_link_of_the_readme_lands() -> None:
    text = (REPO / "README.md").read_text()
    anchors = _headings(REPO / "README.md")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if not path:
            assert anchor in anchors, f"README links #{anchor}: no such heading"
            continue
        assert (REPO / path).exists(), f"README links {path}: no such file"
        if anchor:
            assert anchor in _headings(REPO / path), f"README links {target}: no such heading"


def test_the_runtime_dependencies_the_readme_lists_are_pyprojects() -> None:
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0] for req in declared}
    text = (REPO / "README.md").read_text()
    # In the README's install section, which docs/getting-started.md shows as it is.
    install = text.split("--8<-- [start:install]", 1)[1].split("--8<-- [end:install]", 1)[0]
    assert '--8<-- "README.md:install"' in (DOCS / "getting-started.md").read_text()
    sentence = install.split("The runtime needs only", 1)[1].split(";", 1)[0]
    assert set(re.findall(r"`([\w-]+)`", sentence)) == names


def test_the_example_dag_table_lists_every_example_dag() -> None:
    dag_ids = {
        m for f in (REPO / "example_dags").glob("*.py") for m in re.findall(r'dag_id="(\w+)"', f.read_text())
    }
    assert len(dag_ids) >= 4
    text = (DOCS / "getting-started.md").read_text()
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
    example = REPO / "tests" / "dags" / "readme_example"
    dag_file = example / "dags" / "news_entities.py"
    test_file = example / "tests" / "test_news_entities.py"
    text = (REPO / "README.md").read_text()

    def blocks(section: str) -> list[str]:
        body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
        return re.findall(r"```python\n(.*?)```", body, re.S)

    # The README (the PyPI page, where no snippet is expanded) prints both files as they are.
    assert blocks("Batch inference")[:1] == [dag_file.read_text()]
    assert blocks("Testing a DAG")[:1] == [test_file.read_text()]
    # The testing page pulls them from the same files.
    page = (DOCS / "testing.md").read_text()
    assert re.findall(r'```python\n--8<-- "([^"]+)"\n```', page)[:2] == [
        str(dag_file.relative_to(REPO)),
        str(test_file.relative_to(REPO)),
    ]


def test_the_code_on_the_docs_pages_is_pulled_from_files_not_pasted() -> None:
    """Every Python block of a page is a snippet of a file that exists, and its section is marked."""
    included = 0
    for page in DOCS.glob("*.md"):
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            match = re.fullmatch(r'--8<-- "([^":]+)(?::([\w-]+))?"\n', block)
            assert match, f"{page.name} pastes code; pull it with --8<-- from a file the suite runs:\n{block}"
            source = REPO / match.group(1)
            assert source.is_file(), f"{page.name} pulls {match.group(1)}: no such file"
            if match.group(2):
                assert f"--8<-- [start:{match.group(2)}]" in source.read_text(), (page.name, match.groups())
            included += 1
    assert included >= 6


def _parameters(cls: type) -> set[str]:
    import inspect

    return {
        name
        for klass in cls.__mro__
        if "__init__" in vars(klass)
        for name in inspect.signature(klass.__init__).parameters
    }


def test_the_readmes_minimal_dags_compile_and_pass_only_real_parameters() -> None:
    """The README's pasted examples (PyPI shows no snippet) name parameters the operators take."""
    import ast
    import importlib

    text = (REPO / "README.md").read_text()
    checked = 0
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        tree = ast.parse(block)
        classes = {
            alias.asname or alias.name: getattr(importlib.import_module(node.module), alias.name)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("airflow_provider_pioneer")
            for alias in node.names
        }
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
            cls = classes.get(call.func.id)
            if isinstance(cls, type):
                unknown = {k.arg for k in call.keywords if k.arg} - _parameters(cls)
                assert not unknown, f"README: {cls.__name__} takes no {sorted(unknown)}"
                checked += 1
    assert checked >= 6


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
