"""Release metadata tells the truth: versions claimed = versions CI tests; the testing extra is real."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _matrix_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pioneer_test_matrix", ROOT / "scripts" / "test_matrix.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(module)
    return module


#: How the version table of docs/compatibility.md names each scope of scripts/test_matrix.py.
SCOPE_CELLS = {"full": "tested", "no-dags": "tested (unit + integration)"}
NO_PROVIDERS_CELL = ", no S3"


def _documented_tested_pairs() -> set[tuple[str, str, str]]:
    """The (Airflow, Python, cell) triples of the "Supported versions" table (docs/compatibility.md)."""
    page = (ROOT / "docs" / "compatibility.md").read_text()
    section = page.split("## Supported versions", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    pythons = [re.fullmatch(r"Python (3\.\d+)", cell) for cell in header[1:]]
    assert all(pythons), header
    pairs = set()
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        airflow = re.match(r"(\d+\.\d+\.\d+)", cells[0])
        assert airflow, line
        for match, cell in zip(pythons, cells[1:], strict=True):
            if cell.startswith("tested"):
                pairs.add((airflow.group(1), match.group(1), cell))  # type: ignore[union-attr]
    return pairs


def test_the_documented_version_table_is_exactly_the_ci_matrix() -> None:
    matrix = {
        (c.airflow, c.python, SCOPE_CELLS[c.scope] + ("" if c.providers else NO_PROVIDERS_CELL))
        for c in _matrix_module().MATRIX
    }
    assert _documented_tested_pairs() == matrix


def test_declared_airflow_and_python_versions_are_the_tested_extremes() -> None:
    project = _pyproject()["project"]
    combos = _matrix_module().MATRIX
    airflow = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "apache-airflow")
    lowest = min(Version(c.airflow) for c in combos)
    # The lowest Airflow the package accepts is the lowest CI tests, and nothing below it passes.
    assert airflow.specifier.contains(lowest)
    assert not airflow.specifier.contains(Version(f"{lowest.major}.{lowest.minor}.{lowest.micro - 1}"))
    assert not airflow.specifier.contains("3.0.6")
    # The newest Airflow CI tests is accepted.
    assert airflow.specifier.contains(max(Version(c.airflow) for c in combos))
    # Every Python classifier is tested, and every tested Python is a classifier.
    tested_pythons = {c.python for c in combos}
    classified = {
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert classified == tested_pythons
    assert project["requires-python"] == f">={min(tested_pythons, key=Version)}"
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= set(
        project["classifiers"]
    )


def test_the_emulator_libraries_come_from_the_testing_extra() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    testing = {Requirement(r).name for r in extras["testing"]}
    assert {"fastapi", "uvicorn", "pydantic"} <= testing
    # The test extra pulls the testing extra in (the suite runs the emulator) and the build tool.
    test = [Requirement(r) for r in extras["test"]]
    assert any(r.name == "airflow-provider-pioneer" and r.extras == {"testing"} for r in test)
    assert "build" in {r.name for r in test}


# A user's environment without the testing extra: fastapi and friends cannot be imported.
_WITHOUT_EXTRA = textwrap.dedent(
    """
    import sys
    for name in ("fastapi", "uvicorn", "starlette", "pydantic"):
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        sys.modules[name] = None  # import fails; importlib.util.find_spec says "not installed"
    import pytest
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:randomly", sys.argv[1]]))
    """
)

_USER_TESTS = textwrap.dedent(
    """
    def test_unrelated_to_pioneer():
        assert 1 + 1 == 2


    def test_uses_the_fixture(pioneer_emulator):
        raise AssertionError("the fixture must not start without the testing extra")
    """
)


def test_pytest_plugin_does_not_break_pytest_without_the_testing_extra(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(_USER_TESTS)
    (tmp_path / "conftest.py").write_text("")  # a rootdir of its own: the repo's conftest stays out
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, str(tmp_path / "test_user.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout + result.stderr
    # The plugin loads (the unrelated test passes); only the fixture's user gets the error, and it
    # says which extra to install.
    assert "1 passed, 1 error" in out, out[-3000:]
    assert "pip install 'airflow-provider-pioneer[testing]'" in out, out[-3000:]
    assert "The Pioneer emulator needs fastapi, pydantic, starlette, uvicorn" in out, out[-3000:]


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{lock.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_every_install_has_a_lock_that_pins_what_it_tests() -> None:
    """A fresh machine resolves nothing: every pair and the dev venv install from a full lock
    (an unpinned resolve backtracked for 35 minutes on CI and failed)."""
    extras = _pyproject()["project"]["optional-dependencies"]
    dev = _pins(ROOT / "constraints" / "dev.txt")
    # The dev venv is the newest Airflow with everything `make test` and `make e2e` install.
    newest = max((c.airflow for c in _matrix_module().MATRIX), key=Version)
    assert dev["apache-airflow"] == newest
    for extra in ("test", "testing", "test-providers", "e2e", "browser"):
        for requirement in map(Requirement, extras[extra]):
            name = canonicalize_name(requirement.name)
            if name != "airflow-provider-pioneer":
                assert name in dev, f"constraints/dev.txt does not pin {name} (extra {extra}); run make lock"
                assert requirement.specifier.contains(dev[name]), f"{name}=={dev[name]} breaks {requirement}"
    for combo in _matrix_module().MATRIX:
        pins = _pins(combo.lock)
        assert pins["apache-airflow"] == combo.airflow, combo.name
        assert "pytest" in pins and "airflow-provider-pioneer" not in pins, combo.name
