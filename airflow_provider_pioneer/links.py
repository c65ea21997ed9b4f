"""Extra links from Pioneer tasks: only to pages Pioneer documents.

Pioneer's docs name two console pages (``https://agent.pioneer.ai/settings/api-keys`` and
``https://agent.pioneer.ai/credits``) and no page per model, so the model link opens the
documented "Models" page of the docs (base models, and fine-tuned models by job id), the same
for every task. A guessed console path would break silently when the console changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperator, BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["MODELS_DOC_URL", "PioneerModelLink"]

#: docs.pioneer.ai/concepts/models: what a model id is (base model or training job id).
MODELS_DOC_URL = "https://docs.pioneer.ai/concepts/models"


class PioneerModelLink(BaseOperatorLink):
    """ "Pioneer models": Pioneer's documentation of models (there is no documented per-model page).

    Airflow 3 evaluates the link on the worker when the task finishes and stores it in XCom under
    :attr:`xcom_key`; the UI reads it from there.
    """

    name = "Pioneer models"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return MODELS_DOC_URL
