"""FastAPI app of the Pioneer emulator: Pioneer's HTTP API plus the admin API under ``/_emulator/``.

Counting, the body-size limit and faults live in ``transport.py``, the outermost ASGI layer
(see there why); this module holds the routes and their request validation. The admin routes are
made from the registry of admin calls (``admin_calls.py``), the lifecycle's routes in
``lifecycle_app.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from airflow_provider_pioneer.testing import admin, extractor, transport
from airflow_provider_pioneer.testing.admin import ADMIN_PREFIX, AdminCall
from airflow_provider_pioneer.testing.admin_calls import ADMIN_CALLS
from airflow_provider_pioneer.testing.faults import Fault, corrupt_results
from airflow_provider_pioneer.testing.state import ApiKey, AuthError, EmulatorState

__all__ = ["create_app"]

MAX_BATCH = 1000
_SUNSET = "Wed, 30 Jun 2027 23:59:59 GMT"


class InferenceBody(BaseModel):
    """EncoderInferenceRequest; ``text`` and ``schema`` are checked by hand for precise ``loc``s."""

    model_config = ConfigDict(extra="allow")

    model_id: str
    text: Any
    schema_: Any = Field(alias="schema")
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    include_confidence: bool = True
    include_spans: bool = True
    store: bool = True
    project_id: str | None = None


class CreateKeyBody(BaseModel):
    name: str = Field(min_length=1)


class DeleteKeyBody(BaseModel):
    name: str | None = None
    key_id: str | None = None


def _error(loc: tuple[str | int, ...], msg: str, type_: str, value: Any) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_, "input": value}


def _check_texts(text: Any, max_chars: int) -> list[str]:
    """Validate ``text``; raise 422 with one error per bad entry (loc points at its index)."""
    locs: list[tuple[str | int, ...]]
    if isinstance(text, str):
        texts, locs = [text], [("body", "text")]
    elif isinstance(text, list):
        if not text:
            raise RequestValidationError(
                [_error(("body", "text"), "List should have at least 1 item", "too_short", text)]
            )
        if len(text) > MAX_BATCH:
            raise RequestValidationError(
                [
                    _error(
                        ("body", "text"), f"List should have at most {MAX_BATCH} items", "too_long", len(text)
                    )
                ]
            )
        texts, locs = text, [("body", "text", i) for i in range(len(text))]
    else:
        raise RequestValidationError(
            [
                _error(
                    ("body", "text"), "Input should be a valid string or list of strings", "string_type", text
                )
            ]
        )
    errors = []
    for t, loc in zip(texts, locs, strict=True):
        if not isinstance(t, str):
            errors.append(_error(loc, "Input should be a valid string", "string_type", t))
        elif not t.strip():
            errors.append(_error(loc, "Value error, text must not be empty or whitespace", "value_error", t))
        elif not _is_valid_unicode(t):
            # JSON can carry a lone surrogate ("\ud83d"); it is no text. Answer 422, never a 500.
            errors.append(_error(loc, "Value error, text is not valid Unicode", "value_error", None))
        elif len(t) > max_chars:
            errors.append(
                _error(
                    loc,
                    f"String should have at most {max_chars} characters",
                    "string_too_long",
                    t[:100] + "...",
                )
            )
    if errors:
        raise RequestValidationError(errors)
    return texts


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_labels(schema: Any) -> tuple[list[str], bool]:
    """Entity labels of ``schema`` and whether the deprecated flat-list form was used."""
    base: tuple[str, ...]
    if isinstance(schema, list):
        items, base, deprecated = schema, ("body", "schema"), True
    elif isinstance(schema, dict):
        items, base, deprecated = schema.get("entities", []), ("body", "schema", "entities"), False
        if not isinstance(items, list):
            raise RequestValidationError([_error(base, "Input should be a valid list", "list_type", items)])
    else:
        raise RequestValidationError(
            [_error(("body", "schema"), "Input should be a valid dictionary or list", "model_type", schema)]
        )
    labels, errors = [], []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip():
            labels.append(name)
        else:
            errors.append(
                _error(
                    (*base, i),
                    "Entity label should be a non-empty string or {name: ...}",
                    "value_error",
                    item,
                )
            )
    if errors:
        raise RequestValidationError(errors)
    return labels, deprecated


async def _api_key(
    request: Request,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> str | None:
    if x_api_key:
        return x_api_key
    # The legacy API knew X-API-Key only: a Bearer token there is no key at all (401).
    if _state(request).profile.bearer and authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


ApiKeyHeader = Annotated[str | None, Depends(_api_key)]


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.emulator_state
    return state


async def _inference_key(request: Request, key: ApiKeyHeader) -> ApiKey:
    state = _state(request)
    api_key = state.authenticate(key, limit="inference")
    # Every answer after the limiter carries its headers (the transport layer adds them).
    request.scope[transport.RATE_HEADERS_SCOPE_KEY] = state.inference_headers(api_key)
    return api_key


async def _management_key(request: Request, key: ApiKeyHeader) -> ApiKey:
    return _state(request).authenticate(key, limit="keys")


async def _plain_key(request: Request, key: ApiKeyHeader) -> ApiKey:
    return _state(request).authenticate(key)


# Module-level aliases: with postponed annotations FastAPI can only resolve names in module globals.
InferenceKey = Annotated[ApiKey, Depends(_inference_key)]
ManagementKey = Annotated[ApiKey, Depends(_management_key)]
PlainKey = Annotated[ApiKey, Depends(_plain_key)]
JsonBody = Annotated[dict[str, Any], Body()]


class _EmulatorApp(FastAPI):
    """FastAPI with the counting and fault-injection layer (``transport.py``) outermost."""

    emulator_state: EmulatorState

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if transport.is_api_request(scope, ADMIN_PREFIX):
            await transport.handle(self.emulator_state, super().__call__, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _error_response(exc: AuthError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def create_app(state: EmulatorState) -> FastAPI:
    """Build the emulator's ASGI app around ``state``.

    :param state: the emulator state every endpoint reads and changes.
    """
    app = _EmulatorApp(title="Pioneer emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.emulator_state = state

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        return _error_response(exc)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/inference")
    async def inference(request: Request, body: InferenceBody, key: InferenceKey) -> Response:
        started = time.perf_counter()
        texts = _check_texts(body.text, state.config.max_text_chars)
        labels, deprecated = _check_labels(body.schema_)
        state.lifecycle.check_servable(body.model_id)  # a training job: 404 / 409 / 425 until it serves
        if not state.model_exists(body.model_id):
            return JSONResponse({"detail": f"Model {body.model_id} not found"}, status_code=404)
        state.check_model_ready(body.model_id)  # current profile: 409 not servable, 425 warming up
        state.check_budget(key, sum(len(t.split()) for t in texts))  # fail fast, before the wait
        delay = state.latency_seconds(len(texts))
        if delay > 0:
            await asyncio.sleep(delay)
        results = [
            extractor.extract(t, labels, body.threshold, body.include_confidence, body.include_spans)
            for t in texts
        ]
        tokens = state.bill_inference(key, texts)
        inference_id = str(uuid.uuid4())
        if body.store:  # stored calls can get feedback (POST /inferences/{id}/feedback)
            state.lifecycle.remember_inference(inference_id, key.account_id)
        payload = {
            "type": "encoder",
            "inference_id": inference_id,
            "result": results[0] if isinstance(body.text, str) else results,
            "model_id": body.model_id,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "token_usage": tokens,
            "model_used": body.model_id,
        }
        fault: Fault | None = request.scope.get(transport.FAULT_SCOPE_KEY)
        if fault is not None:  # bad_results: billed like any 200, then the entries are spoiled
            _spoil_results(payload, isinstance(body.text, str), fault)
        headers = {"Deprecation": "true", "Sunset": _SUNSET} if deprecated else None
        return JSONResponse(payload, headers=headers)

    @app.post("/create-api-key")
    async def create_api_key(body: CreateKeyBody, key: ManagementKey) -> Response:
        return JSONResponse(state.create_key_via_api(body.name, key))

    @app.get("/list-api-keys")
    async def list_api_keys(
        key: ManagementKey, limit: Annotated[int | None, Query(ge=1)] = None, after_id: str | None = None,
        offset: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:  # fmt: skip
        records = state.list_keys(account_of_key=key.value)
        return JSONResponse(state.key_variants.page(records, limit=limit, after_id=after_id, offset=offset))

    @app.delete("/delete-api-key")
    async def delete_api_key(body: DeleteKeyBody, key: ManagementKey) -> Response:
        if not body.name and not body.key_id:
            raise RequestValidationError(
                [_error(("body",), "Give the key's name or key_id", "missing", body.model_dump())]
            )
        name, key_id = state.key_variants.revocation(body.name, body.key_id)  # 422 for a field it refuses
        revoked = state.revoke(key.value, name=name, key_id=key_id)
        if not revoked:
            return JSONResponse({"detail": "API key not found"}, status_code=404)
        return JSONResponse({"deleted": True, "name": body.name, "key_id": body.key_id, "revoked": revoked})

    @app.get("/v1/models")
    async def list_models(
        _: PlainKey,
        limit: Annotated[int | None, Query(ge=1)] = None,
        after_id: str | None = None,
    ) -> Response:
        return JSONResponse(state.list_models(limit, after_id))

    from airflow_provider_pioneer.testing.lifecycle_app import add_lifecycle_routes

    add_lifecycle_routes(app, state)
    _add_admin_routes(app, state)
    return app


def _spoil_results(payload: dict[str, Any], single: bool, fault: Fault) -> None:
    if not single:
        payload["result"] = corrupt_results(payload["result"], fault.indices, fault.bad)
        return
    spoiled = corrupt_results([payload["result"]], fault.indices, fault.bad)
    if spoiled:
        payload["result"] = spoiled[0]
    else:
        del payload["result"]


def _add_admin_routes(app: FastAPI, state: EmulatorState) -> None:
    """The ``/_emulator/`` API that :class:`~airflow_provider_pioneer.testing.EmulatorControl` speaks:
    one route per call of ``admin_calls.ADMIN_CALLS``."""
    for call in ADMIN_CALLS:
        app.add_api_route(
            f"{ADMIN_PREFIX}/{call.path}", _admin_endpoint(call, state), methods=[call.verb], name=call.name
        )


def _admin_endpoint(
    call: AdminCall[..., Any], state: EmulatorState
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            return JSONResponse(admin.serve(call, state, json.loads(raw) if raw else {}))
        except (KeyError, ValueError, TypeError) as exc:  # what the state refuses; bad JSON is a ValueError
            return JSONResponse({"detail": str(exc)}, status_code=400)

    return endpoint
