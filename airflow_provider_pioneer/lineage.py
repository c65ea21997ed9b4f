"""OpenLineage for the inference operator, when apache-airflow-providers-openlineage is installed.

The input and output files become OpenLineage datasets named after their URLs (the OpenLineage
naming convention: ``s3://bucket/key`` is namespace ``s3://bucket``, name ``key``; a local
``file:///data/in.jsonl`` is namespace ``file``, name ``/data/in.jsonl``, as Airflow's own
``file`` assets are), and the run carries a ``pioneer`` facet with the model id.

Nothing here is imported unless the OpenLineage listener asks: there is no dependency on the
OpenLineage provider, and without it :func:`operator_lineage` returns ``None``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

__all__ = ["RUN_FACET_NAME", "dataset_name", "operator_lineage"]

#: Key of the run facet that carries the model.
RUN_FACET_NAME = "pioneer"


def dataset_name(location: str) -> tuple[str, str]:
    """``(namespace, name)`` of an ``ObjectStoragePath`` URL or a local path, per OpenLineage naming."""
    parts = urlsplit(str(location))
    scheme = parts.scheme.lower()
    if not scheme or scheme == "local" or len(scheme) == 1:  # a plain path (or C:\...)
        return "file", str(location)
    if scheme == "file":
        return (f"file://{parts.netloc}" if parts.netloc else "file"), parts.path
    # Object stores: the bucket (container) is the namespace, the key the name.
    return f"{scheme}://{parts.netloc}", parts.path.lstrip("/")


@lru_cache(maxsize=1)
def _run_facet_class() -> type:
    from attrs import define
    from openlineage.client.facet_v2 import RunFacet

    @define
    class PioneerRunFacet(RunFacet):
        """The Pioneer model a run used: a base model id or a fine-tuning job id."""

        modelId: str  # OpenLineage facets name their fields in camelCase

    return PioneerRunFacet


def operator_lineage(input_path: Any, output_path: Any, model_id: Any) -> Any:
    """The ``OperatorLineage`` of one inference run, or ``None`` without the OpenLineage provider.

    :param input_path: the rendered input (``None``: the texts came inline, no input dataset).
    :param output_path: the rendered output (``None``: records went to XCom, no output dataset).
    :param model_id: the rendered model id, reported in the ``pioneer`` run facet.
    """
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
    except ImportError:
        return None

    def datasets(location: Any) -> list[Any]:
        if not location:
            return []
        namespace, name = dataset_name(str(location))
        return [Dataset(namespace=namespace, name=name)]

    run_facets = {}
    if model_id:
        run_facets[RUN_FACET_NAME] = _run_facet_class()(modelId=str(model_id))
    return OperatorLineage(
        inputs=datasets(input_path),
        outputs=datasets(output_path),
        run_facets=run_facets,
    )
