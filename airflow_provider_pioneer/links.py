"""Extra links from Pioneer tasks to the Pioneer console."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import BaseOperator, BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["CONSOLE_URL", "PioneerModelLink", "model_url"]

#: The Pioneer console (where models, jobs and keys are managed).
CONSOLE_URL = "https://agent.pioneer.ai"


def model_url(model_id: str) -> str:
    """The console page of ``model_id`` (a base model id or a training job id)."""
    return f"{CONSOLE_URL}/models/{quote(model_id, safe='/')}"


class PioneerModelLink(BaseOperatorLink):
    """ "Pioneer model": the console page of the task's ``model_id``.

    Airflow 3 evaluates the link on the worker when the task finishes (with the rendered
    ``model_id``, mapped tasks included) and stores it in XCom under :attr:`xcom_key`;
    the UI reads it from there.
    """

    name = "Pioneer model"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        model_id = getattr(operator, "model_id", None)
        return model_url(model_id) if isinstance(model_id, str) and model_id else ""
