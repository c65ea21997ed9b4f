"""FastAPI app of the Pioneer emulator: Pioneer's HTTP API plus the admin API under ``/_emulator/``.

Faults and counters live in :class:`_EmulatorApp.__call__`, the outermost ASGI layer, because
that is the only place that still holds uvicorn's own ``send`` (whose ``__self__`` is the
request cycle with the TCP transport) and so can drop a connection without answering.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Message, Receive, Scope, Send

from airflow_provider_pioneer.testing import extractor
from airflow_provider_pioneer.testing.state import ApiKey, AuthError, EmulatorState, Fault

__all__ = ["create_app"]

ADMIN_PREFIX = "/_emulator"
MAX_BATCH = 1000
_SUNSET = "Wed, 30 Jun 2027 23:59:59 GMT"
_HTML_ERROR = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}"
    "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {
    401: "Unauthorized", 402: "Payment Required", 404: "Not Found", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}  # fmt: skip


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
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


ApiKeyHeader = Annotated[str | None, Depends(_api_key)]


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.emulator_state
    return state


async def _inference_key(request: Request, key: ApiKeyHeader) -> ApiKey:
    return _state(request).authenticate(key, limit="inference")


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
    """FastAPI with the fault-injection and counting layer outermost (see module docstring)."""

    emulator_state: EmulatorState

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Admin calls and health probes are neither counted nor faulted: tests poll them freely.
        if scope["type"] != "http" or scope["path"] == "/health" or scope["path"].startswith(ADMIN_PREFIX):
            await super().__call__(scope, receive, send)
            return
        state = self.emulator_state
        path: str = scope["path"]
        state.record_request(scope["method"], path)
        fault = state.match_fault(path)
        if fault is not None:
            await self._answer_fault(fault, send)
            return
        lost = False

        async def counting_send(message: Message) -> None:
            nonlocal lost
            if lost:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                if 200 <= status < 300 and state.match_fault(path, lose_response=True) is not None:
                    # Everything is committed by now; the client just never hears about it.
                    lost = True
                    _drop_connection(send)
                    return
                state.record_status(status)
            await send(message)

        inference = path == "/inference"
        if inference:
            state.inference_started()
        try:
            await super().__call__(scope, receive, counting_send)
        finally:
            if inference:
                state.inference_finished()

    async def _answer_fault(self, fault: Fault, send: Send) -> None:
        if fault.kind in ("drop", "lose_response"):
            _drop_connection(send)
            return
        status = fault.status if fault.status is not None else 307
        headers = dict(fault.headers)
        if fault.kind == "redirect":
            body: bytes = b""
        elif fault.content_type == "text/html":
            text = fault.body if isinstance(fault.body, str) else None
            body = (text or _HTML_ERROR.format(status=status, reason=_REASONS.get(status, "Error"))).encode()
            headers["content-type"] = "text/html; charset=utf-8"
        elif isinstance(fault.body, str | bytes) and fault.content_type:
            body = fault.body.encode() if isinstance(fault.body, str) else fault.body
            headers["content-type"] = fault.content_type
        else:
            payload = fault.body if fault.body is not None else {"detail": f"Injected fault {fault.id}"}
            body = json.dumps(payload).encode()
            headers["content-type"] = "application/json"
        headers["content-length"] = str(len(body))
        self.emulator_state.record_status(status)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _drop_connection(send: Send) -> None:
    """Close the TCP connection under the request without writing a byte of response.

    uvicorn's ``send`` is a bound method of its RequestResponseCycle, which holds the transport.
    Marking the cycle disconnected stops uvicorn from writing its own 500 afterwards.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("drop faults need uvicorn (no transport reachable from the ASGI send callable)")
    transport.abort()
    if hasattr(cycle, "disconnected"):
        cycle.disconnected = True  # type: ignore[union-attr]


def _error_response(exc: AuthError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


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
    async def inference(body: InferenceBody, key: InferenceKey) -> Response:
        started = time.perf_counter()
        texts = _check_texts(body.text, state.config.max_text_chars)
        labels, deprecated = _check_labels(body.schema_)
        if not state.model_exists(body.model_id):
            return JSONResponse({"detail": f"Model {body.model_id} not found"}, status_code=404)
        state.check_budget(key, sum(len(t.split()) for t in texts))  # fail fast, before the wait
        delay = state.latency_seconds(len(texts))
        if delay > 0:
            await asyncio.sleep(delay)
        results = [
            extractor.extract(t, labels, body.threshold, body.include_confidence, body.include_spans)
            for t in texts
        ]
        tokens = state.bill_inference(key, texts)
        payload = {
            "type": "encoder",
            "inference_id": str(uuid.uuid4()),
            "result": results[0] if isinstance(body.text, str) else results,
            "model_id": body.model_id,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "token_usage": tokens,
            "model_used": body.model_id,
        }
        headers = {"Deprecation": "true", "Sunset": _SUNSET} if deprecated else None
        return JSONResponse(payload, headers=headers)

    @app.post("/create-api-key")
    async def create_api_key(body: CreateKeyBody, key: ManagementKey) -> Response:
        return JSONResponse(state.create_key(body.name, account_of_key=key.value))

    @app.get("/list-api-keys")
    async def list_api_keys(key: ManagementKey) -> Response:
        return JSONResponse({"keys": state.list_keys(account_of_key=key.value)})

    @app.delete("/delete-api-key")
    async def delete_api_key(body: DeleteKeyBody, key: ManagementKey) -> Response:
        if not body.name and not body.key_id:
            raise RequestValidationError(
                [_error(("body",), "Give the key's name or key_id", "missing", body.model_dump())]
            )
        revoked = state.revoke(key.value, name=body.name, key_id=body.key_id)
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

    _add_admin_routes(app, state)
    return app


def _add_admin_routes(app: FastAPI, state: EmulatorState) -> None:
    """The ``/_emulator/`` API that :class:`~airflow_provider_pioneer.testing.EmulatorControl` speaks."""
    p = ADMIN_PREFIX

    def admin(fn: Any, *args: Any, **kwargs: Any) -> Response:
        try:
            result = fn(*args, **kwargs)
            return JSONResponse({"ok": True} if result is None else result)
        except (KeyError, ValueError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get(f"{p}/info")
    async def info() -> Response:
        return JSONResponse(
            {"api_key": state.bootstrap_key, "api_key_name": state.key_name_of(state.bootstrap_key)}
        )

    @app.get(f"{p}/counters")
    async def counters() -> Response:
        return JSONResponse(state.counters())

    @app.post(f"{p}/reset-counters")
    async def reset_counters() -> Response:
        state.reset_counters()
        return JSONResponse({"ok": True})

    @app.get(f"{p}/faults")
    async def list_faults() -> Response:
        return JSONResponse({"faults": state.faults()})

    @app.post(f"{p}/faults")
    async def inject(body: JsonBody) -> Response:
        return admin(lambda: {"fault_id": state.inject(**body)})

    @app.delete(f"{p}/faults")
    async def clear_faults() -> Response:
        state.clear_faults()
        return JSONResponse({"ok": True})

    @app.post(f"{p}/accounts")
    async def new_account(body: JsonBody) -> Response:
        return admin(lambda: dict(zip(("key", "key_name"), state.new_account(**body), strict=True)))

    @app.post(f"{p}/keys")
    async def create_key(body: JsonBody) -> Response:
        return admin(state.create_key, body["name"], body.get("account_of_key"))

    @app.post(f"{p}/keys/alive")
    async def key_alive(body: JsonBody) -> Response:
        return admin(lambda: {"alive": state.key_is_alive(body["key"])})

    @app.post(f"{p}/keys/list")
    async def alive_keys(body: JsonBody) -> Response:
        return admin(lambda: {"keys": state.list_keys(body.get("account_of_key"))})

    @app.put(f"{p}/credits")
    async def credits(body: JsonBody) -> Response:
        return admin(lambda: state.set_credits(body.get("tokens"), body.get("account_of_key")))

    @app.put(f"{p}/spend-cap")
    async def spend_cap(body: JsonBody) -> Response:
        return admin(lambda: state.set_spend_cap(body.get("tokens"), body.get("account_of_key")))

    @app.put(f"{p}/latency")
    async def latency(body: JsonBody) -> Response:
        return admin(lambda: state.set_latency(**body))

    @app.put(f"{p}/rate-limit")
    async def rate_limit(body: JsonBody) -> Response:
        return admin(lambda: state.set_rate_limit(body.get("per_minute"), body.get("burst")))

    @app.put(f"{p}/key-rate-limit")
    async def key_rate_limit(body: JsonBody) -> Response:
        return admin(lambda: state.set_key_rate_limit(body.get("per_minute")))

    @app.post(f"{p}/extract")
    async def extract(body: JsonBody) -> Response:
        return admin(lambda: extractor.extract(**body))
