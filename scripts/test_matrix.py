"""`make test-matrix`: the suite on every Airflow x Python combination docs/compatibility.md claims.

Each combination gets its own venv, ``.venv-matrix/af<airflow>-py<python>``, with the checkout
installed editable with its ``test`` and ``testing`` extras and ``apache-airflow==<airflow>``
pinned. The combinations run one after another (CI has 2 cores), each with
``pytest -x -q -p no:randomly -n <workers> --dist loadgroup`` (``--workers``, default 2, as
``make test``: most tests wait on sockets, sleeps and child processes; 0 runs one process); the
wall time of each install and each run is printed and written to ``.venv-matrix/times.json``.
Exit status: non-zero if any combination failed.

Two pairs at once (one worker each) would use the 2 cores no better than one pair on two
workers, and would put two installs' and two suites' timing-sensitive tests side by side.

How old Airflow releases are resolved: Airflow's own constraint files live on GitHub, out of
reach here, and an unpinned ``pip install apache-airflow==3.1.2`` today pulls libraries newer
than that release (structlog 26 breaks Airflow 3.1 at import). So an old release is installed with
``pip --uploaded-prior-to <a week after its release>``, which gives the set of dependencies a
user installing it then got, the way the constraint files do. That option needs the index's
upload times, so it is resolved from PyPI alone (``PIP_CONFIG_FILE=/dev/null`` drops the
machine's local mirror, which has none). The newest release is resolved as a user would today.

Each pair installs from its lock, ``constraints/<pair>.txt`` (every dependency pinned as resolved
and tested), so a fresh machine gets the same set in about a minute whatever PyPI published since;
``--relock`` resolves a pair afresh as above and rewrites its lock.

Usage: ``python scripts/test_matrix.py [--only af3.1.2-py3.11] [--list] [--relock] [--workers N]``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX_DIR = ROOT / ".venv-matrix"
LOCK_DIR = ROOT / "constraints"
#: one install step of one pair; measured installs take 1 to 3 minutes.
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Combo:
    """One Airflow x Python combination of the matrix."""

    airflow: str
    python: str
    #: resolve dependencies as of this UTC date (an old Airflow release); None: as of today.
    resolved_as_of: str | None = None
    #: extra requirements for that resolution, where pip alone would backtrack for many minutes.
    pins: tuple[str, ...] = ()
    #: "full": the whole suite; "no-dags": all but tests/dags (whole DAG runs cost the most and
    #: depend least on the Python version: the extreme pairs run them).
    scope: str = "full"
    #: install the test-providers extra (Amazon provider + moto, OpenLineage) and run the tests
    #: marked `providers`. Off everywhere in the matrix: their trees are large (the 3.1.2 week's no
    #: longer installs; today's took over 10 minutes to resolve on a loaded machine), and `make test`
    #: runs those tests on the project's own venv (Airflow 3.3.2, Python 3.11).
    providers: bool = False

    @property
    def name(self) -> str:
        return f"af{self.airflow}-py{self.python}"

    @property
    def lock(self) -> Path:
        return LOCK_DIR / f"{self.name}.txt"


#: What CI tests; docs/compatibility.md's version table lists exactly these (tests/unit/test_packaging.py
#: checks).
LOWEST_AS_OF = "2025-11-12"  # Airflow 3.1.2 came out on 2025-11-05
# That week's newest boto3 (1.40.71) needs a botocore that no aiobotocore (s3fs, the test extra's
# S3 path) accepts yet: without these pins pip backtracks through every aiobotocore release.
LOWEST_PINS = ("boto3<1.40.71", "botocore<1.40.71")
# The Amazon provider of that week pulls sagemaker-studio -> snowflake-connector-python, which pip
# can only backtrack to an unbuildable sdist: no pair installs the `providers` tests' extra (see
# Combo.providers), and that table says so.
_LOWEST = {"resolved_as_of": LOWEST_AS_OF, "pins": LOWEST_PINS}
MATRIX: tuple[Combo, ...] = (
    Combo("3.1.2", "3.11", **_LOWEST),  # type: ignore[arg-type]
    Combo("3.1.2", "3.12", scope="no-dags", **_LOWEST),  # type: ignore[arg-type]
    Combo("3.1.2", "3.13", scope="no-dags", **_LOWEST),  # type: ignore[arg-type]
    # 3.3.2 on Python 3.11 is `make test` itself (the whole suite), so the matrix does not repeat it.
    Combo("3.3.2", "3.12", scope="no-dags"),
    # DAG runs of the newest Airflow already run whole in `make test` (3.11): 3.13 runs the rest, so
    # CI keeps its margin under 90 minutes as the suite grows.
    Combo("3.3.2", "3.13", scope="no-dags"),
)


def find_python(version: str) -> str:
    """An interpreter for ``version`` ("3.12"): ``$PYTHON3_12``, ``python3.12`` on PATH, or pyenv's."""
    override = os.environ.get(f"PYTHON{version.replace('.', '_')}")
    if override:
        return override
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(
        glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / "python")), reverse=True
    )
    for candidate in candidates:
        if not candidate:
            continue
        # pyenv's shims exist for every version but fail for one that is not installed: ask the interpreter.
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    raise SystemExit(
        f"test-matrix: no Python {version} found (tried python{version} on PATH and {pyenv_root}/versions/"
        f"{version}.*); install it (e.g. `pyenv install {version}`) or set PYTHON{version.replace('.', '_')}."
    )


def _fingerprint(combo: Combo, relock: bool) -> str:
    """What the venv was built from: a change re-creates it."""
    lock = b"relock" if relock else combo.lock.read_bytes()
    text = (ROOT / "pyproject.toml").read_bytes() + repr(combo).encode() + lock
    return hashlib.sha256(text).hexdigest()


def _run(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> int:
    print("+", " ".join(cmd), flush=True)
    if log is None:
        return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    with log.open("w") as out:
        try:
            code = subprocess.run(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=INSTALL_TIMEOUT_S,
            ).returncode
        except subprocess.TimeoutExpired:
            # A resolver backtracking through hundreds of releases would eat CI's whole budget.
            print(f"gave up after {INSTALL_TIMEOUT_S} s (pip still resolving?)", file=sys.stderr)
            code = 124
    if code:
        print(log.read_text()[-6000:], file=sys.stderr)
    return code


def build_venv(combo: Combo, relock: bool = False) -> float:
    """Create (or reuse) the combination's venv from its lock, or resolve it afresh and rewrite
    the lock (``relock``); returns the seconds it took."""
    venv = MATRIX_DIR / combo.name
    stamp = venv / ".matrix-stamp"
    if not relock and not combo.lock.exists():
        raise SystemExit(f"[{combo.name}] no lock at {combo.lock}; run with --relock --only {combo.name}")
    fingerprint = _fingerprint(combo, relock)
    if stamp.exists() and stamp.read_text() == fingerprint:
        print(f"[{combo.name}] venv up to date", flush=True)
        return 0.0
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    python = find_python(combo.python)
    env = dict(os.environ)
    pip_args = ["--quiet", "--disable-pip-version-check"]
    if not relock:
        pip_args += ["-c", str(combo.lock)]
    elif combo.resolved_as_of:
        env["PIP_CONFIG_FILE"] = os.devnull  # see the module docstring: PyPI's upload times only
    log = MATRIX_DIR / f"{combo.name}.install.log"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", *pip_args]
    steps = [
        [python, "-m", "venv", str(venv)],
        [*pip, "--upgrade", "pip"],  # --uploaded-prior-to needs pip >= 26
        [
            *pip,
            *(
                ["--uploaded-prior-to", f"{combo.resolved_as_of}T00:00:00Z"]
                if relock and combo.resolved_as_of
                else []
            ),
            "-e",
            ".[test,testing,test-providers]" if combo.providers else ".[test,testing]",
            f"apache-airflow=={combo.airflow}",
            *combo.pins,
        ],
    ]
    for step in steps:
        if _run(step, env=env, log=log):
            raise SystemExit(f"[{combo.name}] install failed; log: {log}")
    if relock:
        frozen = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude-editable"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        header = (
            f"# scripts/test_matrix.py --relock: {combo.name} as resolved on {time.strftime('%Y-%m-%d')}.\n"
        )
        combo.lock.write_text(header + frozen)
        fingerprint = _fingerprint(combo, relock=False)
    stamp.write_text(fingerprint)
    return time.monotonic() - started


# Every pair skips what no Airflow version changes and `make test` already runs: the pacing across
# the emulator's limiter models (real processes, pure client code: 80 s a run).
ONCE = "not pacing_models"
SCOPES = {"full": [], "no-dags": ["--ignore=tests/dags"]}


def run_tests(combo: Combo, pytest_args: list[str], workers: int = 2) -> tuple[int, float]:
    """The combination's scope of the suite in its venv, on ``workers`` pytest-xdist workers (0: in
    one process); returns (exit code, seconds)."""
    venv = MATRIX_DIR / combo.name
    env = dict(os.environ)
    # Nothing of the developer's own Airflow may leak in: each run gets a fresh AIRFLOW_HOME
    # (tests/conftest.py sets its own anyway) and no PYTHONPATH pointing elsewhere.
    env.pop("PYTHONPATH", None)
    env.pop("AIRFLOW_HOME", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    selection = SCOPES[combo.scope]
    code = _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:randomly",
            *(["-n", str(workers), "--dist", "loadgroup"] if workers else []),
            *selection,
            # One -m expression: pytest keeps only the last -m it is given.
            "-m",
            ONCE if combo.providers else f"{ONCE} and not providers",
            *pytest_args,
        ],
        env=env,
    )
    return code, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="run only this combination (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the combinations and exit")
    parser.add_argument("--install-only", action="store_true", help="build the venvs, run no test")
    parser.add_argument("--relock", action="store_true", help="resolve afresh and rewrite the locks")
    parser.add_argument(
        "--workers", type=int, default=2, help="pytest-xdist workers per pair (default 2; 0: one process)"
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    combos = [c for c in MATRIX if not args.only or c.name in args.only]
    if args.list:
        for combo in MATRIX:
            print(combo.name)
        return 0
    if not combos:
        parser.error(f"no combination named {args.only}; see --list")
    MATRIX_DIR.mkdir(exist_ok=True)
    times_file = MATRIX_DIR / "times.json"
    times: dict[str, dict[str, float | str]] = (
        json.loads(times_file.read_text()) if times_file.exists() else {}
    )
    failed = []
    for combo in combos:
        print(f"\n=== [{combo.name}] Airflow {combo.airflow} on Python {combo.python}", flush=True)
        install_s = build_venv(combo, relock=args.relock)
        if args.install_only:
            print(f"[{combo.name}] installed in {install_s:.0f} s", flush=True)
            continue
        code, test_s = run_tests(combo, args.pytest_args, workers=args.workers)
        times[combo.name] = {
            "install_s": round(install_s, 1),
            "tests_s": round(test_s, 1),
            "result": "passed" if code == 0 else "failed",
        }
        times_file.write_text(json.dumps(times, indent=2) + "\n")
        print(
            f"[{combo.name}] {'passed' if code == 0 else 'FAILED'}: install {install_s:.0f} s, tests {test_s:.0f} s",
            flush=True,
        )
        if code:
            failed.append(combo.name)
    if args.install_only:
        return 0
    print("\ncombination          install   tests   result")
    for combo in combos:
        t = times[combo.name]
        print(f"{combo.name:<20} {t['install_s']:>6.0f} s {t['tests_s']:>5.0f} s   {t['result']}")
    if failed:
        print(f"test-matrix: FAILED on {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
