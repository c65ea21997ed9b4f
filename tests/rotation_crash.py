"""Run a DAG in this process, optionally SIGKILLing the process at one step (for the crash tests).

    python -m tests.rotation_crash DAG_ID [CLASS.METHOD {before,after}]

``CLASS`` is ``PioneerClient``, ``VariableKeyStore``, ``SecretsManagerKeyStore`` or a module of the rotation's steps
(``steps``, ``revoke``: the operator calls its steps through them). ``after`` kills right after the
first call of the method returns, ``before`` right as it is entered: no test-only code in the
product, the crash is the real thing. Run with the test suite's environment (AIRFLOW_HOME, the
connection); exits 3 if the step was never reached. Without a step it just runs the DAG (exit 0),
so a test can run one DAG in a child while it runs another itself.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Any

from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator
from airflow_provider_pioneer.rotation import revoke, steps
from airflow_provider_pioneer.rotation.secrets_manager import SecretsManagerKeyStore
from airflow_provider_pioneer.rotation.variable import VariableKeyStore

_CLASSES: dict[str, Any] = {
    "PioneerKeyRotationOperator": PioneerKeyRotationOperator,
    "PioneerClient": PioneerClient,
    "VariableKeyStore": VariableKeyStore,
    "SecretsManagerKeyStore": SecretsManagerKeyStore,
    "steps": steps,
    "revoke": revoke,
}


def _kill() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(target: str, when: str) -> None:
    """Replace ``CLASS.METHOD`` by a wrapper that kills the process before or after it."""
    class_name, method_name = target.split(".", 1)
    cls = _CLASSES[class_name]
    original = getattr(cls, method_name)

    @functools.wraps(original)
    def crashing(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            _kill()
        result = original(*args, **kwargs)
        _kill()
        return result

    setattr(cls, method_name, crashing)


def main(argv: list[str]) -> int:
    dag_id, *step = argv
    if step:
        target, when = step
        if when not in ("before", "after"):
            raise SystemExit("when must be 'before' or 'after'")
        arm(target, when)
    from tests.dags.support import load_dag

    load_dag(dag_id).test()
    return 3 if step else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
