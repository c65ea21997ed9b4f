"""`make release-check`: build the release and prove that what a user installs works.

1. ``python -m build`` makes the sdist and the wheel (in a temporary directory).
2. The sdist holds what a user or a distro rebuilds from (package, tests, examples, README,
   CHANGELOG, LICENSE) and nothing of a developer's machine (venvs, demo output, caches).
3. The wheel's metadata: version, Airflow requirement, the ``testing`` extra, classifiers,
   both entry points.
4. The wheel alone (not the checkout) goes into a fresh venv with its runtime dependencies only;
   Airflow's own CLI there lists the provider with its ``pioneer`` connection type.
5. The same venv plus the ``testing`` extra and pytest: a user's test file using the
   ``pioneer_emulator`` fixture runs the installed hook against the emulator, and the README's
   DAG-test example (``tests/dags/readme_example/``: a DAG file and its test with the
   ``pioneer_dag_test`` fixture) runs its DAG with ``dag.test()`` in the fixture's migrated home.

Runs from any directory but the checkout's, so nothing imports the source tree. Exit status 0
only if every check passed; each step's wall time is printed.

Usage: ``python scripts/release_check.py [--keep]`` (``--keep`` leaves the temporary directory).
"""

from __future__ import annotations

import argparse
import email
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "airflow-provider-pioneer"
PACKAGE = "airflow_provider_pioneer"
#: Every dependency pinned as the dev venv resolved and tested it (Makefile, `make lock`).
LOCK = ROOT / "constraints" / "dev.txt"

#: The README's "Test a DAG file" example: ``dags/`` and ``tests/``, copied as a user's project.
README_EXAMPLE = ROOT / "tests" / "dags" / "readme_example"

#: In the sdist, relative to its top directory.
SDIST_MUST_HAVE = (
    "PKG-INFO",
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/py.typed",
    f"{PACKAGE}/get_provider_info.py",
    f"{PACKAGE}/testing/pytest_plugin.py",
    "example_dags/pioneer_batch_inference.py",
    "tests/conftest.py",
)
#: No path component of an sdist member may match: a developer's machine, not the product.
SDIST_JUNK = re.compile(
    r"(^|/)(\.venv[^/]*|\.demo|\.airflow|\.git|\.ci|\.mypy_cache|\.ruff_cache|\.pytest_cache|"
    r"__pycache__|dist|build|benchmarks|node_modules)(/|$)|\.pyc$|\.egg-info"
)
CLASSIFIERS = (
    "Framework :: Apache Airflow",
    "Framework :: Apache Airflow :: Provider",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
)

USER_TEST = textwrap.dedent(
    '''
    """What a user of the provider writes: a DAG-side test against the emulator fixture."""
    import json


    def test_hook_extracts_entities_through_the_emulator(pioneer_emulator, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_PIONEER_DEFAULT",
            json.dumps({"conn_type": "pioneer", "host": pioneer_emulator.url, "password": pioneer_emulator.api_key}),
        )
        from airflow_provider_pioneer.hooks.pioneer import PioneerHook

        response = PioneerHook().infer(
            ["Ada Lovelace worked with Charles Babbage in London."],
            schema={"entities": ["person", "location"]},
            model_id="fastino/gliner2-base-v1",
        )
        assert response["result"], response
    '''
)

failures: list[str] = []


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print the step and its wall time; a failed check ends the run (later steps build on it)."""
    print(f"\n== {title}", flush=True)
    started = time.monotonic()
    try:
        yield
    except CheckFailed as exc:
        failures.append(f"{title}: {exc}")
        raise
    finally:
        print(f"   ({time.monotonic() - started:.1f} s)", flush=True)


class CheckFailed(Exception):
    """One check of the release did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command; its output is returned, and shown in full when it fails."""
    shown = " ".join(str(c) for c in cmd)
    print(f"+ {shown}", flush=True)
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        raise CheckFailed(f"`{shown}` exited {result.returncode}")
    return result.stdout


def version() -> str:
    text = (ROOT / PACKAGE / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise SystemExit(f"release-check: no __version__ in {PACKAGE}/__init__.py")
    return match.group(1)


def check_sdist(sdist: Path, ver: str) -> None:
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    top = f"{DIST_NAME.replace('-', '_')}-{ver}"
    check(all(n == top or n.startswith(f"{top}/") for n in names), f"sdist members outside {top}/")
    inside = {n[len(top) + 1 :] for n in names if n != top}
    missing = [m for m in SDIST_MUST_HAVE if m not in inside]
    check(not missing, f"sdist lacks {missing}")
    junk = sorted(n for n in inside if SDIST_JUNK.search(n))
    check(not junk, f"sdist carries files a user must not get: {junk[:10]}")
    print(f"   sdist: {len(inside)} files, with {', '.join(SDIST_MUST_HAVE[:5])}; no venv/demo/cache files")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]


def check_wheel(wheel: Path, ver: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = f"{DIST_NAME.replace('-', '_')}-{ver}.dist-info"
        meta = email.message_from_bytes(zf.read(f"{info}/METADATA"))
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    stray = sorted({n.split("/")[0] for n in names} - {PACKAGE, info})
    check(not stray, f"wheel installs more than the package: {stray}")
    check(f"{PACKAGE}/py.typed" in names, "wheel lacks py.typed")
    check(f"{info}/licenses/LICENSE" in names, "wheel lacks the LICENSE")
    check(meta["Version"] == ver, f"wheel version {meta['Version']} != {ver}")
    requires = meta.get_all("Requires-Dist") or []
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = sorted(r for r in requires if "extra ==" not in r)
    check(
        sorted(_name(r) for r in runtime) == sorted(_name(r) for r in declared),
        f"runtime requirements {runtime} are not pyproject's {declared}",
    )
    floor = re.search(r">=([\d.]+)", next(r for r in declared if _name(r) == "apache-airflow"))
    check(
        floor is not None
        and any(_name(r) == "apache-airflow" and f">={floor.group(1)}" in r for r in runtime),
        f"the wheel's Airflow requirement differs from pyproject's {declared}: {runtime}",
    )
    testing = [r for r in requires if "extra == 'testing'" in r or 'extra == "testing"' in r]
    for lib in ("fastapi", "uvicorn"):
        check(any(r.startswith(lib) for r in testing), f"{lib} is not in the testing extra: {testing}")
    check("testing" in (meta.get_all("Provides-Extra") or []), "no Provides-Extra: testing")
    classifiers = meta.get_all("Classifier") or []
    absent = [c for c in CLASSIFIERS if c not in classifiers]
    check(not absent, f"classifiers missing: {absent}")
    check(bool(meta.get_all("Project-URL")), "no Project-URL")
    check("[apache_airflow_provider]" in entry_points and "[pytest11]" in entry_points, entry_points)
    print(f"   wheel: {len(names)} files; Requires-Dist {', '.join(r for r in requires if 'extra' not in r)}")


def venv_env(venv: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "PIP_REQ"))
    }
    env.update(
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    ver = version()
    tmp = Path(tempfile.mkdtemp(prefix="pioneer-release-"))
    started = time.monotonic()
    try:
        dist = tmp / "dist"
        with step(f"build sdist and wheel of {DIST_NAME} {ver}"):
            run([sys.executable, "-m", "build", "--outdir", dist, ROOT], cwd=tmp)
        sdists = sorted(dist.glob("*.tar.gz"))
        wheels = sorted(dist.glob("*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            failures.append(f"build made {[p.name for p in dist.glob('*')] if dist.exists() else 'nothing'}")
            return report(started)
        print(
            f"   {sdists[0].name} ({sdists[0].stat().st_size // 1024} KiB), {wheels[0].name} ({wheels[0].stat().st_size // 1024} KiB)"
        )
        with step("sdist contents"):
            check_sdist(sdists[0], ver)
        with step("wheel metadata"):
            check_wheel(wheels[0], ver)

        venv, home, work = tmp / "venv", tmp / "airflow-home", tmp / "work"
        home.mkdir()
        work.mkdir()
        env = venv_env(venv, home)
        python = venv / "bin" / "python"
        with step("install the wheel with its runtime dependencies only, into a fresh venv"):
            run([sys.executable, "-m", "venv", venv], cwd=work)
            run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], cwd=work, env=env)
            # With the project's lock as constraints, the way users install with Airflow's own
            # constraint files: the same set every time, whatever PyPI published since.
            run([python, "-m", "pip", "install", "--quiet", "-c", LOCK, wheels[0]], cwd=work, env=env)
            run([python, "-m", "pip", "check"], cwd=work, env=env)
            where = run(
                [python, "-c", f"import {PACKAGE} as p; print(p.__file__)"], cwd=work, env=env
            ).strip()
            check(str(venv) in where, f"the provider imports from {where}, not from the venv")
            print(f"   installed at {where}")
        airflow = venv / "bin" / "airflow"
        with step("airflow providers list / hooks / get see the provider and its connection type"):
            listed = json.loads(run([airflow, "providers", "list", "--output", "json"], cwd=work, env=env))
            ours = [p for p in listed if p.get("package_name") == DIST_NAME]
            check(len(ours) == 1, f"`airflow providers list` does not show {DIST_NAME}: {listed}")
            check(ours[0].get("version") == ver, f"listed version {ours[0].get('version')} != {ver}")
            hooks = json.loads(run([airflow, "providers", "hooks", "--output", "json"], cwd=work, env=env))
            pioneer = [h for h in hooks if h.get("connection_type") == "pioneer"]
            check(len(pioneer) == 1, f"no `pioneer` connection type in `airflow providers hooks`: {hooks}")
            check(
                pioneer[0].get("class") == f"{PACKAGE}.hooks.pioneer.PioneerHook"
                and pioneer[0].get("package_name") == DIST_NAME,
                f"the pioneer connection type is not ours: {pioneer[0]}",
            )
            got = run([airflow, "providers", "get", DIST_NAME, "--output", "json"], cwd=work, env=env)
            check(DIST_NAME in got and ver in got, f"`airflow providers get` says {got!r}")
            print(f"   {DIST_NAME} {ver}; connection type pioneer -> {pioneer[0]['class']}")
        with step("the testing extra: pioneer_emulator and pioneer_dag_test in a user's pytest run"):
            run(
                [python, "-m", "pip", "install", "--quiet", "-c", LOCK, f"{wheels[0]}[testing]", "pytest"],
                cwd=work,
                env=env,
            )
            run(
                [python, "-c", f"import {PACKAGE}.testing; from {PACKAGE}.testing import PioneerEmulator"],
                cwd=work,
                env=env,
            )
            (work / "test_user_dag.py").write_text(USER_TEST)
            # The README's DAG test as a user's project has it: no conftest, nothing of the checkout.
            project = work / "project"
            for part in ("dags", "tests"):
                shutil.copytree(
                    README_EXAMPLE / part, project / part, ignore=shutil.ignore_patterns("__pycache__")
                )
            out = run(
                [
                    python,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "test_user_dag.py",
                    project / "tests",
                ],
                cwd=work,
                env=env,
            )
            check("2 passed" in out, out[-2000:])
            print("   " + out.strip().splitlines()[-1])
    except CheckFailed:
        pass  # recorded by step(); reported below
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return report(started)


def report(started: float) -> int:
    elapsed = time.monotonic() - started
    if failures:
        print(f"\nrelease-check FAILED in {elapsed:.0f} s:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print(f"\nrelease-check passed in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
