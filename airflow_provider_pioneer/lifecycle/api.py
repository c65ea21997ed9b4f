"""The model-lifecycle calls of Pioneer's API (datasets, training jobs, evaluations) over a :class:`PioneerClient`.

HTTP only, no Airflow. Every variant of LIFECYCLE.md is read: ``presigned_url`` or ``upload_url``;
a job record or a bare ``{id, status}``; ``training_jobs`` or ``jobs`` lists; an evaluation created
as ``{evaluations: [...]}`` or ``{id, status}``, scored flat (``f1_score``) or nested (``metrics``).
The presigned upload goes out on its own session with no key: the URL is its own credential.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from airflow_provider_pioneer.exceptions import (
    PioneerConfigurationError,
    PioneerConnectionError,
    PioneerResponseError,
    PioneerServerError,
)
from airflow_provider_pioneer.urls import (
    CREATE_EVALUATION,
    CREATE_TRAINING_JOB,
    DATASET_PROCESS,
    DATASET_UPLOAD_URL,
    DATASET_VERSION,
    DEPLOY_CHECKPOINT,
    EVALUATION,
    INFERENCE_FEEDBACK,
    LIST_TRAINING_JOBS,
    STOP_TRAINING_JOB,
    TRAINING_JOB,
    TRAINING_JOB_CHECKPOINTS,
    TRAINING_JOB_LOGS,
    is_loopback,
)

if TYPE_CHECKING:
    from airflow_provider_pioneer.client import PioneerClient

__all__ = ["LifecycleClient", "evaluation_id_of", "evaluation_scores", "job_id_of"]

log = logging.getLogger(__name__)
_PUT_ATTEMPTS = 3


#: Pages of the job list read at most (200 jobs each): a runaway server cannot loop us for ever.
_MAX_PAGES = 500


def created_after(job: dict[str, Any], since: datetime | None) -> bool:
    """Whether ``job`` was created after ``since`` (ten minutes of slack; no timestamp: True)."""
    if since is None:
        return True
    stamp = job.get("created_at")
    if not isinstance(stamp, str):
        return True  # no timestamp: the name alone decides
    try:
        created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return True
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    # Ten minutes of slack for clocks that disagree; a name is per run in any sane DAG.
    return created >= since - timedelta(minutes=10)


def _jobs_page(doc: Any) -> list[dict[str, Any]]:
    for key in ("training_jobs", "jobs", "models"):
        items = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(items, list):
            return [item for item in items if isinstance(item, dict)]
    raise PioneerResponseError(f"Pioneer {LIST_TRAINING_JOBS} answered without a list of jobs.")


def job_id_of(doc: Any) -> str:
    """The job id of a create/get answer (``id``, or ``job_id``)."""
    job_id = doc.get("id") or doc.get("job_id") if isinstance(doc, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise PioneerResponseError(f"Pioneer {CREATE_TRAINING_JOB} answered without a job id.")
    return job_id


def evaluation_id_of(doc: Any) -> str:
    """The evaluation id of ``POST /felix/evaluations``: ``{evaluations: [{id}]}`` or ``{id}``."""
    if isinstance(doc, dict):
        items = doc.get("evaluations")
        if isinstance(items, list) and items and isinstance(items[0], dict) and items[0].get("id"):
            return str(items[0]["id"])
        if doc.get("id"):
            return str(doc["id"])
    raise PioneerResponseError(f"Pioneer {CREATE_EVALUATION} answered without an evaluation id.")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def evaluation_scores(doc: dict[str, Any]) -> dict[str, Any]:
    """``{f1, precision, recall, per_entity}`` of a finished evaluation, in either documented shape."""
    found = doc.get("metrics")
    metrics: dict[str, Any] = found if isinstance(found, dict) else {}
    scores: dict[str, Any] = {
        "f1": _number(metrics.get("f1", doc.get("f1_score", metrics.get("f1_score")))),
        "precision": _number(metrics.get("precision", doc.get("precision_score"))),
        "recall": _number(metrics.get("recall", doc.get("recall_score"))),
    }
    per_entity = metrics.get("per_entity") or doc.get("per_entity")
    if isinstance(per_entity, dict):
        scores["per_entity"] = per_entity
    if doc.get("sample_count") is not None:
        scores["sample_count"] = doc["sample_count"]
    return scores


class _FileBody:
    """A file as a request body that requests streams in blocks with a ``Content-Length``.

    Some file objects (Airflow's ``ObjectStoragePath.open`` wraps fsspec's) hide what requests
    looks for to stream them, and end up read whole; this exposes only ``read`` and the length.
    """

    def __init__(self, file: IO[bytes], size: int | None) -> None:
        self._file = file
        self.len = size if size is not None else 0

    def read(self, amount: int = -1) -> bytes:
        return self._file.read(amount)

    def __iter__(self) -> Iterator[bytes]:
        while block := self._file.read(_BLOCK):
            yield block


_BLOCK = 64 * 1024


class LifecycleClient:
    """Datasets, training jobs and evaluations through an authenticated :class:`PioneerClient`.

    :param client: the client (its retries, errors and key handling apply to every call but the
        presigned upload, which never carries the key).
    """

    def __init__(self, client: PioneerClient) -> None:
        self.client = client

    # -- datasets ----------------------------------------------------------------------------------
    def request_upload(
        self, dataset_name: str, dataset_type: str = "ner", filename: str = "data.jsonl"
    ) -> dict[str, Any]:
        """``POST /felix/datasets/upload/url``: ``{upload_url, dataset_id, version_number}`` (normalised)."""
        body = {"dataset_name": dataset_name, "dataset_type": dataset_type, "filename": filename}
        doc = self.client.request(DATASET_UPLOAD_URL, body)
        url = doc.get("presigned_url") or doc.get("upload_url") if isinstance(doc, dict) else None
        if not isinstance(url, str) or not doc.get("dataset_id"):
            raise PioneerResponseError(
                f"Pioneer {DATASET_UPLOAD_URL} answered without an upload URL and dataset_id."
            )
        return {
            "upload_url": url,
            "dataset_id": str(doc["dataset_id"]),
            "version_number": doc.get("version_number"),
        }

    def put_presigned(
        self, url: str, data: bytes | Callable[[], IO[bytes]], timeout: float = 300.0, size: int | None = None
    ) -> None:
        """PUT a file to a presigned URL: a plain request with no API key and no redirects.

        :param data: the bytes, or a callable opening the file (each attempt opens it afresh and
            streams it, so a large file is never held in memory).
        :param size: the file's length (sent as ``Content-Length``: S3 refuses chunked PUTs).
        :raises PioneerConfigurationError: the URL is not https (plain http only to loopback).
        """
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname or "")):
            raise PioneerConfigurationError(
                "The upload URL Pioneer returned is not https; refusing to upload to it."
            )
        where = f"PUT to the upload URL on {parts.hostname}"
        for attempt in range(1, _PUT_ATTEMPTS + 1):
            # A fresh session: nothing of the API client's (headers, key) can ride along.
            with requests.Session() as session, contextlib.ExitStack() as files:
                body = _FileBody(files.enter_context(data()), size) if callable(data) else data
                try:
                    response = session.put(url, data=body, timeout=timeout, allow_redirects=False)
                except requests.RequestException as exc:
                    if attempt == _PUT_ATTEMPTS:
                        raise PioneerConnectionError(f"{where} failed: {type(exc).__name__}.") from None
                    time.sleep(attempt)
                    continue
            if 200 <= response.status_code < 300:
                return
            if response.status_code >= 500 and attempt < _PUT_ATTEMPTS:
                time.sleep(attempt)
                continue
            error = PioneerServerError if response.status_code >= 500 else PioneerResponseError
            # Never the URL itself in the message: its signature is a credential.
            raise error(f"{where} answered HTTP {response.status_code}.", status=response.status_code)

    def process_upload(self, dataset_id: str) -> dict[str, Any]:
        """``POST /felix/datasets/upload/process``: start validation (202, status ``uploading``)."""
        doc = self.client.request(DATASET_PROCESS, {"dataset_id": dataset_id})
        return doc if isinstance(doc, dict) else {}

    def get_dataset(self, name: str, version: str = "latest") -> dict[str, Any]:
        """``GET /felix/datasets/{name}/{version}``: one version's status and metadata."""
        doc = self.client.request(DATASET_VERSION.bind(name=name, version=version))
        if not isinstance(doc, dict):
            raise PioneerResponseError(f"Pioneer {DATASET_VERSION} answered without a dataset record.")
        return doc

    # -- training jobs -----------------------------------------------------------------------------
    def create_training_job(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /felix/training-jobs``, sent once (no client retry): the caller decides what a lost answer means.

        :param body: ``base_model``, ``datasets``, ``model_name``... as the API takes them.
        :param idempotency_key: sent as ``Idempotency-Key`` (the /v1 API dedupes on it).
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        doc = self.client.request(CREATE_TRAINING_JOB, body, max_retries=0, headers=headers)
        job_id_of(doc)
        return dict(doc)

    def list_training_jobs(
        self,
        status: str | None = None,
        limit: int = 200,
        *,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /felix/training-jobs``, every page (newest first): the ``training_jobs`` (or ``jobs``) items.

        Pages are read with ``offset`` until the server says there are no more (``has_more``,
        ``total``), or a page comes back empty or short of what it could have held.

        :param status: only jobs in this state.
        :param limit: jobs per page asked for (the API allows 1-200; a server may send fewer).
        :param until: called with each page; True stops the paging there (e.g. the jobs got too old).
        """
        jobs: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            params: dict[str, Any] = {"limit": limit, "offset": len(jobs)}
            if status:
                params["status"] = status
            doc = self.client.request(LIST_TRAINING_JOBS, params=params)
            page = _jobs_page(doc)
            jobs.extend(page)
            more = doc.get("has_more") if isinstance(doc, dict) else None
            total = doc.get("total") if isinstance(doc, dict) else None
            if not page or (until is not None and until(page)):
                break
            if more is False or (isinstance(total, int) and len(jobs) >= total):
                break
            if more is None and total is None and len(page) < limit:
                break  # no paging fields: a short page is the last one
        else:
            log.warning("Pioneer %s: stopped after %d pages of jobs.", LIST_TRAINING_JOBS, _MAX_PAGES)
        return jobs

    def find_jobs_by_model_name(
        self, model_name: str, created_since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Jobs named ``model_name``, newest first, looked for on every page.

        :param created_since: only jobs created after this (with ten minutes of slack for clocks
            that disagree); the paging stops at the first page that is all older.
        """

        def recent(job: dict[str, Any]) -> bool:
            return created_after(job, created_since)

        def too_old(page: list[dict[str, Any]]) -> bool:
            return created_since is not None and not any(recent(job) for job in page)

        return [
            job
            for job in self.list_training_jobs(until=too_old)
            if job.get("model_name") == model_name and recent(job)
        ]

    def get_training_job(self, job_id: str) -> dict[str, Any]:
        doc = self.client.request(TRAINING_JOB.bind(job_id=job_id))
        if not isinstance(doc, dict):
            raise PioneerResponseError(f"Pioneer {TRAINING_JOB} answered without a job record.")
        return doc

    def get_training_logs(self, job_id: str) -> list[dict[str, Any]]:
        """``GET …/logs``: the job's log snapshot (a list of ``{timestamp, level, message}``)."""
        return logs_of(self.client.request(TRAINING_JOB_LOGS.bind(job_id=job_id)))

    def stop_training_job(self, job_id: str) -> dict[str, Any]:
        doc = self.client.request(STOP_TRAINING_JOB.bind(job_id=job_id), {})
        return doc if isinstance(doc, dict) else {}

    def deploy_final_checkpoint(self, job_id: str) -> dict[str, Any]:
        """Deploy the job's best (else final) deployable checkpoint (docs.fastino.ai's explicit deploy)."""
        doc = self.client.request(TRAINING_JOB_CHECKPOINTS.bind(job_id=job_id))
        items = doc.get("checkpoints") if isinstance(doc, dict) else None
        candidates = [c for c in items or [] if isinstance(c, dict) and c.get("is_deployable")]
        candidates.sort(key=lambda c: (not c.get("is_best"), not c.get("is_final")))
        if not candidates:
            raise PioneerResponseError(f"Training job {job_id} has no deployable checkpoint.")
        route = DEPLOY_CHECKPOINT.bind(job_id=job_id, checkpoint_id=str(candidates[0]["id"]))
        result = self.client.request(route, {})
        return result if isinstance(result, dict) else {}

    # -- inference feedback ------------------------------------------------------------------------
    def post_feedback(self, inference_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /inferences/{id}/feedback`` (idempotent: a repeat overwrites the same feedback)."""
        doc = self.client.request(INFERENCE_FEEDBACK.bind(inference_id=inference_id), body)
        return doc if isinstance(doc, dict) else {}

    # -- evaluations -------------------------------------------------------------------------------
    def create_evaluation(self, base_model: str, dataset_name: str, **extra: Any) -> str:
        """``POST /felix/evaluations`` (sent once); returns the evaluation id."""
        body = {
            "base_model": base_model,
            "dataset_name": dataset_name,
            **{k: v for k, v in extra.items() if v is not None},
        }
        return evaluation_id_of(self.client.request(CREATE_EVALUATION, body, max_retries=0))

    def get_evaluation(self, evaluation_id: str) -> dict[str, Any]:
        doc = self.client.request(EVALUATION.bind(evaluation_id=evaluation_id))
        if not isinstance(doc, dict):
            raise PioneerResponseError(f"Pioneer {EVALUATION} answered without an evaluation record.")
        return doc


def feedback_body(
    verdict: str, corrected_output: Any = None, notes: str | None = None, shape: str = "verdict"
) -> dict[str, Any]:
    """The feedback body in the OpenAPI shape (``verdict``...) or the older history page's (``correction``)."""
    if shape == "correction":
        return {"correction": corrected_output}
    body: dict[str, Any] = {"verdict": verdict}
    if corrected_output is not None:
        body["corrected_output"] = corrected_output
    if notes:
        body["notes"] = notes
    return body


def logs_of(doc: Any) -> list[dict[str, Any]]:
    """The log entries of a ``…/logs`` answer (``{logs: [...]}`` or a bare list); strings become entries."""
    items: Iterable[Any] = (
        doc.get("logs", []) if isinstance(doc, dict) else doc if isinstance(doc, list) else []
    )
    return [item if isinstance(item, dict) else {"message": str(item)} for item in items]
