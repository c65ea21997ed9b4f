"""HTTP routes of the emulator's model lifecycle (datasets, training jobs, evaluations).

The logic is :class:`~airflow_provider_pioneer.testing.lifecycle.LifecycleStore`'s; this module only
maps HTTP onto it. The presigned upload (``PUT /_presigned/{dataset_id}``) is S3's part of the
protocol: it is authorised by the signature in its URL and refuses a request carrying an API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response

# Module globals: with postponed annotations FastAPI resolves endpoint annotations here.
from airflow_provider_pioneer.testing.app import JsonBody
from airflow_provider_pioneer.testing.app import PlainKey as Key

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.state import EmulatorState

__all__ = ["add_lifecycle_routes"]


def add_lifecycle_routes(app: FastAPI, state: EmulatorState) -> None:
    """Register the lifecycle routes on ``app`` (its admin calls are in ``admin_calls.py``).

    :param app: the emulator's FastAPI app.
    :param state: its state (``state.lifecycle`` is the store).
    """
    store = state.lifecycle

    def ok(doc: dict[str, Any], status: int = 200) -> Response:
        return JSONResponse(doc, status_code=status)

    # -- datasets ----------------------------------------------------------------------------------
    @app.post("/felix/datasets/upload/url")
    async def upload_url(request: Request, body: JsonBody, key: Key) -> Response:
        store.base_url = str(request.base_url).rstrip("/")
        return ok(store.upload_url(key.account_id, body))

    @app.put("/_presigned/{dataset_id}")
    async def presigned_put(
        dataset_id: str,
        request: Request,
        signature: Annotated[str | None, Query(alias="X-Amz-Signature")] = None,
        x_api_key: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        data = await request.body()
        store.presigned_put(dataset_id, signature, data, has_auth=bool(x_api_key or authorization))
        return Response(status_code=200, headers={"ETag": f'"{len(data)}"'})

    @app.post("/felix/datasets/upload/process")
    async def process(body: JsonBody, key: Key) -> Response:
        return ok(store.process(key.account_id, body), 202)

    @app.get("/felix/datasets")
    async def list_datasets(key: Key, include_failed: bool = False) -> Response:
        return ok(store.list_datasets(key.account_id, include_failed))

    @app.get("/felix/datasets/{name}")
    async def dataset_versions(name: str, key: Key) -> Response:
        return ok(store.dataset_versions(key.account_id, name))

    @app.get("/felix/datasets/{name}/{version}")
    async def dataset(name: str, version: str, key: Key) -> Response:
        return ok(store.dataset(key.account_id, name, version))

    # -- training jobs -----------------------------------------------------------------------------
    @app.post("/felix/training-jobs")
    async def submit(
        body: JsonBody, key: Key, idempotency_key: Annotated[str | None, Header()] = None
    ) -> Response:
        # A job is paid from credits: an account without enough gets the 402 here, at the submit.
        state.check_budget(key, store.settings.training_cost_tokens)
        status, doc = store.submit(key.account_id, body, idempotency_key)
        return ok(doc, status)

    @app.get("/felix/training-jobs")
    async def list_jobs(
        key: Key,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 200,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        return ok(store.list_jobs(key.account_id, status, limit, offset))

    @app.get("/felix/training-jobs/{job_id}")
    async def job(job_id: str, key: Key) -> Response:
        return ok(store.job(key.account_id, job_id))

    @app.get("/felix/training-jobs/{job_id}/logs")
    async def logs(job_id: str, key: Key) -> Response:
        return ok(store.job_logs(key.account_id, job_id))

    @app.post("/felix/training-jobs/{job_id}/stop")
    async def stop(job_id: str, key: Key) -> Response:
        return ok(store.stop(key.account_id, job_id))

    @app.get("/felix/training-jobs/{job_id}/checkpoints")
    async def checkpoints(job_id: str, key: Key) -> Response:
        return ok(store.checkpoints(key.account_id, job_id))

    @app.post("/felix/training-jobs/{job_id}/checkpoints/{checkpoint_id}/deploy")
    async def deploy(job_id: str, checkpoint_id: str, key: Key) -> Response:
        return ok(store.deploy(key.account_id, job_id, checkpoint_id))

    # -- evaluations -------------------------------------------------------------------------------
    @app.post("/felix/evaluations")
    async def evaluate(body: JsonBody, key: Key) -> Response:
        return ok(store.evaluate(key.account_id, body))

    @app.get("/felix/evaluations/{evaluation_id}")
    async def evaluation(evaluation_id: str, key: Key) -> Response:
        return ok(store.evaluation(key.account_id, evaluation_id))

    # -- inference feedback ------------------------------------------------------------------------
    @app.post("/inferences/{inference_id}/feedback")
    async def feedback(inference_id: str, body: JsonBody, key: Key) -> Response:
        return ok(store.post_feedback(key.account_id, inference_id, body))
