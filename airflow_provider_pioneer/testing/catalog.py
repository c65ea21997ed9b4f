"""The base models of the emulator's model catalogue (``GET /models``) and which model ids exist."""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["BASE_MODELS", "list_models", "model_exists"]

#: Base encoder models every account can call; ids starting with ``job_`` or UUIDs are fine-tuned models.
BASE_MODELS: tuple[str, ...] = ("fastino/gliner2-base-v1", "fastino/gliner2-large-v1")
_MODELS_CREATED_AT = "2025-01-15T00:00:00Z"


def model_exists(model_id: str) -> bool:
    if model_id in BASE_MODELS or model_id.startswith("job_"):
        return True
    try:
        uuid.UUID(model_id)
    except ValueError:
        return False
    return True


def list_models(limit: int | None = None, after_id: str | None = None) -> dict[str, Any]:
    """A ModelListResponse page of the base models (``after_id`` is exclusive)."""
    ids = list(BASE_MODELS)
    if after_id is not None:
        ids = ids[ids.index(after_id) + 1 :] if after_id in ids else []
    page = ids[:limit] if limit is not None else ids
    data = [
        {"id": m, "type": "model", "display_name": m.split("/")[-1], "created_at": _MODELS_CREATED_AT}
        for m in page
    ]
    return {
        "data": data,
        "has_more": len(page) < len(ids),
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
