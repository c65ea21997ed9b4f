"""The emulator's inference feedback: ``POST /inferences/{id}/feedback`` on a stored inference."""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.lifecycle_base import LifecycleBase, invalid, iso

__all__ = ["FeedbackRoom"]


class FeedbackRoom(LifecycleBase):
    """Feedback on stored inferences (a part of ``LifecycleStore``)."""

    def remember_inference(self, inference_id: str, account_id: str) -> None:
        with self._lock:
            self._inferences[inference_id] = account_id

    def post_feedback(self, account_id: str, inference_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /inferences/{id}/feedback`` in the configured shape: ``{verdict, corrected_output?, notes?}``
        (OpenAPI) or ``{correction}`` (the older history page)."""
        with self._lock:
            if self._inferences.get(inference_id) != account_id:
                raise AuthError(404, f"Inference {inference_id} not found")
            if self.settings.feedback_shape == "correction":
                if not isinstance(body.get("correction"), dict | list):
                    raise invalid(("body", "correction"), "Field required")
                stored = {"human_verdict": "incorrect", "human_corrected_output": body["correction"]}
            else:
                verdict = body.get("verdict")
                if verdict not in ("correct", "incorrect"):
                    raise invalid(("body", "verdict"), "Input should be 'correct' or 'incorrect'")
                if verdict == "incorrect" and body.get("corrected_output") is None:
                    raise invalid(("body", "corrected_output"), "Required when verdict is 'incorrect'")
                notes = body.get("notes")
                if notes is not None and (not isinstance(notes, str) or len(notes) > 5000):
                    raise invalid(("body", "notes"), "String should have at most 5000 characters")
                stored = {"human_verdict": verdict, "human_corrected_output": body.get("corrected_output"),
                          "human_feedback_notes": notes}  # fmt: skip
            stored["human_feedback_at"] = iso(time.time())
            self.feedback[inference_id] = stored
            self.counters["feedback_posted"] += 1
            return {"inference_id": inference_id, "human_verdict": stored["human_verdict"],
                    "human_feedback_at": stored["human_feedback_at"]}  # fmt: skip
