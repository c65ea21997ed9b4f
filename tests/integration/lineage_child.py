"""Run the inference operator in a Python where the OpenLineage packages cannot be imported.

    python tests/integration/lineage_child.py <input.jsonl> <output.jsonl>

A ``sys.meta_path`` finder refuses ``openlineage`` and ``airflow.providers.openlineage``, and the
OpenLineage distributions are left out of the package metadata (so Airflow's provider discovery
does not find their entry points): as if apache-airflow-providers-openlineage were not installed. The connection comes from
``AIRFLOW_CONN_PIONEER_DEFAULT``. Prints one JSON line: the summary, the lineage method's result
and whether any OpenLineage module got imported.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

BLOCKED = ("openlineage", "airflow.providers.openlineage")


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if any(fullname == name or fullname.startswith(name + ".") for name in BLOCKED):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _hide_distributions() -> None:
    import importlib.metadata

    modules: list[Any] = [importlib.metadata]
    try:
        import importlib_metadata

        modules.append(importlib_metadata)
    except ImportError:
        pass
    for module in modules:
        original = module.distributions

        def distributions(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            for dist in _original(*args, **kwargs):
                name = (dist.metadata["Name"] or "").lower().replace("_", "-")
                if "openlineage" not in name:
                    yield dist

        module.distributions = distributions


class _TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def main(input_path: str, output_path: str) -> int:
    sys.meta_path.insert(0, _Absent())
    _hide_distributions()
    from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

    op = PioneerInferenceOperator(
        task_id="infer",
        model_id="fastino/gliner2-base-v1",
        entities=["person", "organization"],
        input_path=input_path,
        output_path=output_path,
    )
    summary = op.execute({"ti": _TI()})  # type: ignore[arg-type]
    lineage = op.get_openlineage_facets_on_complete(None)
    imported = sorted(m for m in sys.modules if m.startswith(BLOCKED))
    print(json.dumps({"summary": summary, "lineage": repr(lineage), "imported": imported}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
