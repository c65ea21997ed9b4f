"""Run PioneerInferenceOperator.execute() in this process, as one try of one task instance.

    python tests/integration/output_child.py '<json: operator kwargs + "ti": {...}>'

The kill tests start it, SIGKILL it mid-run (a real kill: no except, no finally, no flush) and
retry. The connection comes from the environment (``AIRFLOW_CONN_PIONEER_DEFAULT``, and the S3
connection for ``s3://`` paths). Exits 0 when the task succeeded, 1 with the message on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


class ChildTI:
    """A task instance as execute() sees it: identity (for the output's lease) and XCom."""

    def __init__(self, **identity: Any) -> None:
        self.__dict__.update(identity)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def main(raw: str) -> int:
    from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

    kwargs = json.loads(raw)
    ti = ChildTI(**kwargs.pop("ti"))
    try:
        PioneerInferenceOperator(**kwargs).execute({"ti": ti})  # type: ignore[arg-type]
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(ti.xcoms["pioneer_summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
