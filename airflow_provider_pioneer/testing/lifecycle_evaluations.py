"""The emulator's evaluations: a model (base or fine-tuned) scored on a ready dataset (LIFECYCLE.md §6)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.lifecycle_base import TRAINABLE_MODELS, invalid, iso
from airflow_provider_pioneer.testing.lifecycle_jobs import JobRoom

__all__ = ["Evaluation", "EvaluationRoom"]


@dataclass
class Evaluation:
    id: str
    account_id: str
    model_id: str
    dataset_name: str
    created: float
    f1: float
    labels: list[str]


class EvaluationRoom(JobRoom):
    """Evaluations of a lifecycle store (a part of ``LifecycleStore``)."""

    def evaluate(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("base_model") or body.get("model_id")
        if not isinstance(model, str) or not model:
            raise invalid(("body", "base_model"), "Field required")
        name = body.get("dataset_name")
        with self._lock:
            now = time.monotonic()
            d = self._find_dataset(account_id, str(name), None) if name else None
            if d is None or d.status(now, self.settings.dataset_process_s) != "ready":
                raise AuthError(400, f"Dataset {name} is not ready (evaluations need a ready dataset)")
            job = self._jobs.get(model)
            if job is not None and self._job_status(job, now) not in ("complete", "normalizing", "deployed"):
                raise AuthError(400, f"Training job {model} has not completed")
            if job is None and model not in TRAINABLE_MODELS:
                raise AuthError(404, f"Model {model} not found")
            f1 = self.settings.eval_f1
            if f1 is None:
                f1 = 0.86 if job is not None else 0.52
            ev = Evaluation(id=str(uuid.uuid4()), account_id=account_id, model_id=model, dataset_name=d.name,
                             created=now, f1=float(f1), labels=list(d.labels) or ["entity"])  # fmt: skip
            self._evaluations[ev.id] = ev
            self.counters["evaluations_submitted"] += 1
            item = {"id": ev.id, "model_id": model, "dataset_name": d.name, "status": "queued"}
            if self.settings.eval_create_shape == "bare":
                return {"id": ev.id, "status": "running"}
            return {"success": True, "count": 1, "evaluations": [item]}

    def evaluation(self, account_id: str, evaluation_id: str) -> dict[str, Any]:
        with self._lock:
            ev = self._evaluations.get(evaluation_id)
            if ev is None or ev.account_id != account_id:
                raise AuthError(404, f"Evaluation {evaluation_id} not found")
            elapsed = time.monotonic() - ev.created
            s = self.settings
            status = "queued" if elapsed < s.eval_s / 3 else "running" if elapsed < s.eval_s else "complete"
            doc: dict[str, Any] = {
                "id": ev.id,
                "status": status,
                "model_id": ev.model_id,
                "dataset_name": ev.dataset_name,
            }
            if status != "complete":
                return doc
            precision, recall = min(1.0, ev.f1 + 0.02), max(0.0, ev.f1 - 0.02)
            if s.eval_shape == "flat":
                doc.update(f1_score=ev.f1, precision_score=precision, recall_score=recall, sample_count=50,
                           completed_at=iso(time.time()))  # fmt: skip
            else:
                per_entity = {
                    label: {"f1": round(ev.f1 - 0.01 * i, 4), "precision": precision, "recall": recall}
                    for i, label in enumerate(ev.labels)
                }
                doc["metrics"] = {
                    "f1": ev.f1,
                    "precision": precision,
                    "recall": recall,
                    "per_entity": per_entity,
                }
            return doc
