"""PioneerInferenceFeedbackOperator: corrections for stored inferences, from a JSONL file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer._compat import AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerError, PioneerNotFoundError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators._lifecycle_common import fail_for

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PioneerInferenceFeedbackOperator"]

_SHOWN = 10


def _problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    if not isinstance(row.get("inference_id"), str) or not row["inference_id"]:
        return "'inference_id' must be a non-empty string"
    if row.get("verdict") not in ("correct", "incorrect"):
        return "'verdict' must be 'correct' or 'incorrect'"
    if row["verdict"] == "incorrect" and row.get("corrected_output") is None:
        return "an 'incorrect' verdict needs 'corrected_output' (the schema's output shape)"
    if row.get("notes") is not None and (not isinstance(row["notes"], str) or len(row["notes"]) > 5000):
        return "'notes' must be a string of at most 5,000 characters"
    return None


class PioneerInferenceFeedbackOperator(BaseOperator):
    """Post human feedback for stored inferences (``POST /inferences/{id}/feedback``).

    Reads a JSONL file of ``{"inference_id", "verdict": "correct"|"incorrect", "corrected_output"?,
    "notes"?}`` (``inference_id`` as ``/inference`` returned it), checks every row first (bad lines
    are named and nothing is sent), then posts each. Posting feedback again overwrites it, so a
    retried task is harmless. Feedback feeds Pioneer's Adaptive Inference (Pro plans and up).

    Returns ``{"sent", "not_found", "not_found_ids"}``: an id Pioneer does not know (not stored,
    or another account's) is counted, not fatal, unless ``fail_on_not_found``.

    :param input_path: the JSONL file, any ``ObjectStoragePath`` URL. Templated.
    :param body_shape: ``"verdict"`` (the OpenAPI document, default) or ``"correction"`` (the older
        inference-history page: ``{"correction": corrected_output}``).
    :param fail_on_not_found: fail the task when any inference id is unknown.
    :param pioneer_conn_id: the Pioneer connection.
    """

    template_fields: Sequence[str] = ("input_path",)

    def __init__(
        self,
        *,
        input_path: str,
        body_shape: str = "verdict",
        fail_on_not_found: bool = False,
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if body_shape not in ("verdict", "correction"):
            raise ValueError(f"body_shape must be 'verdict' or 'correction', not {body_shape!r}")
        self.input_path = input_path
        self.body_shape = body_shape
        self.fail_on_not_found = fail_on_not_found
        self.pioneer_conn_id = pioneer_conn_id

    def _rows(self) -> list[dict[str, Any]]:
        from airflow.sdk import ObjectStoragePath

        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        with ObjectStoragePath(self.input_path).open("r", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = safe_json.loads(line)
                except ValueError:
                    problems.append(f"  line {number}: not valid JSON")
                    continue
                problem = _problem(row)
                if problem:
                    problems.append(f"  line {number}: {problem}")
                else:
                    rows.append(row)
        if problems:
            more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
            raise AirflowFailException(
                f"{self.input_path}: {len(problems)} rows are not valid feedback; nothing was sent. Fix these "
                "lines:\n" + "\n".join(problems[:_SHOWN]) + more
            )
        return rows

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_pioneer.lifecycle.api import feedback_body

        rows = self._rows()
        api = PioneerHook(self.pioneer_conn_id).lifecycle
        missing: list[str] = []
        sent = 0
        for row in rows:
            body = feedback_body(
                row["verdict"], row.get("corrected_output"), row.get("notes"), self.body_shape
            )
            try:
                api.post_feedback(row["inference_id"], body)
                sent += 1
            except PioneerNotFoundError:
                missing.append(row["inference_id"])
            except PioneerError as exc:
                raise fail_for(exc, f"Feedback for inference {row['inference_id']}") from None
        self.log.info("Posted feedback for %d inferences; %d unknown to Pioneer.", sent, len(missing))
        if missing and self.fail_on_not_found:
            raise AirflowFailException(
                f"Pioneer knows no stored inference {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                + " (was the call made with store=false, or from another account?)."
            )
        return {"sent": sent, "not_found": len(missing), "not_found_ids": missing[:100]}
