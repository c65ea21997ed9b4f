"""The emulator's outermost ASGI layer: counting, the proxy's body-size limit, and faults.

It wraps the FastAPI app because only here is uvicorn's own ``send`` still at hand (its
``__self__`` is the request cycle with the TCP transport), so a fault can drop a connection
without answering, or notice that a client hung up on a trickled body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from airflow_provider_pioneer.testing.faults import Fault, echo_body, html_error_page
from airflow_provider_pioneer.testing.state import EmulatorState

__all__ = [
    "FAULT_SCOPE_KEY",
    "RATE_HEADERS_SCOPE_KEY",
    "drop_connection",
    "handle",
    "is_api_request",
    "request_key",
]

#: Where the layer leaves a ``bad_results`` fault for the ``/inference`` endpoint to apply.
FAULT_SCOPE_KEY = "pioneer_emulator.fault"
#: Where the ``/inference`` endpoint leaves its ``X-RateLimit-*`` headers for every answer.
RATE_HEADERS_SCOPE_KEY = "pioneer_emulator.rate_headers"

_Call = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_key(scope: Scope) -> str:
    """The API key a request carries: its ``X-API-Key``, else its ``Authorization: Bearer`` value."""
    headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    if headers.get(b"x-api-key"):
        return headers[b"x-api-key"]
    auth = headers.get(b"authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


async def handle(state: EmulatorState, app: _Call, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one Pioneer API request (not ``/health``, not the admin API) through counters and faults."""
    path: str = scope["path"]
    state.record_request(scope["method"], path)
    limit, kind = state.body_limit()
    if limit is not None:
        receive, too_big = await _check_body_size(scope, receive, limit)
        if too_big:
            await _answer_413(state, kind, send)
            return
    fault = state.match_fault(path)
    trickle = fault is not None and fault.kind == "trickle"
    if fault is not None and (fault.kind not in ("trickle", "bad_results") or fault.status is not None):
        await _answer_fault(state, fault, scope, _trickled(fault, send) if trickle else send)
        return
    if fault is not None and fault.kind == "bad_results":
        scope[FAULT_SCOPE_KEY] = fault
    downstream = _trickled(fault, send) if fault is not None and trickle else send
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
                drop_connection(send)
                return
            state.record_status(status)
            extra = scope.get(RATE_HEADERS_SCOPE_KEY)
            if extra and not any(k.lower() == b"x-ratelimit-limit" for k, _ in message["headers"]):
                message = {**message, "headers": [*message["headers"], *_raw(extra)]}
        await downstream(message)

    inference = path == "/inference"
    if inference:
        state.inference_started()
    try:
        await app(scope, receive, counting_send)
    finally:
        if inference:
            state.inference_finished()


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _check_body_size(scope: Scope, receive: Receive, limit: int) -> tuple[Receive, bool]:
    """Whether the request body is over ``limit`` bytes, and a ``receive`` that still yields it.

    Like a proxy, a declared ``Content-Length`` decides; a chunked body is read to count it.
    An over-size body is read to its end anyway, so the client is not reset mid-upload and
    gets to read the 413.
    """
    headers = dict(scope.get("headers", []))
    declared = headers.get(b"content-length")
    if declared is not None and int(declared) <= limit:
        return receive, False
    chunks: list[Message] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            chunks.append(message)
            break
        size += len(message.get("body", b""))
        if size <= limit:
            chunks.append(message)
        if not message.get("more_body", False):
            break
    if size > limit:
        return receive, True

    async def replay() -> Message:
        return chunks.pop(0) if chunks else await receive()

    return replay, False


async def _answer_413(state: EmulatorState, kind: str, send: Send) -> None:
    if kind == "json":
        body, content_type = json.dumps({"detail": "Request Entity Too Large"}).encode(), "application/json"
    else:
        body, content_type = html_error_page(413).encode(), "text/html"
    state.record_status(413)
    # Like nginx: close the connection after a 413 (the client must cope with that too).
    headers = {"content-type": content_type, "content-length": str(len(body)), "connection": "close"}
    await send({"type": "http.response.start", "status": 413, "headers": _raw(headers)})
    await send({"type": "http.response.body", "body": body})


async def _answer_fault(state: EmulatorState, fault: Fault, scope: Scope, send: Send) -> None:
    if fault.kind in ("drop", "lose_response"):
        drop_connection(send)
        return
    status = fault.status if fault.status is not None else 307
    headers = dict(fault.headers or {})
    if fault.kind == "redirect":
        body: bytes = b""
    elif fault.kind == "echo_key":
        body, headers["content-type"] = echo_body(
            request_key(scope), status, fault.envelope, fault.body_size, fault.offset
        )
    elif fault.content_type == "text/html":
        text = fault.body if isinstance(fault.body, str) else None
        body = (text or html_error_page(status)).encode()
        headers["content-type"] = "text/html; charset=utf-8"
    elif isinstance(fault.body, str | bytes) and fault.content_type:
        body = fault.body.encode() if isinstance(fault.body, str) else fault.body
        headers["content-type"] = fault.content_type
    else:
        payload = fault.body if fault.body is not None else {"detail": f"Injected fault {fault.id}"}
        body = json.dumps(payload).encode()
        headers["content-type"] = "application/json"
    headers["content-length"] = str(len(body))
    state.record_status(status)
    await send({"type": "http.response.start", "status": status, "headers": _raw(headers)})
    await send({"type": "http.response.body", "body": body})


def _trickled(fault: Fault, send: Send) -> Send:
    """A ``send`` that passes the body on ``fault.trickle_bytes`` at a time, ``trickle_interval`` apart.

    Headers (with the full ``Content-Length``) go at once, so the client waits for the rest.
    It stops early when the client hangs up, so no coroutine trickles into the void.
    """
    step, pause = fault.trickle_bytes, fault.trickle_interval
    cycle = getattr(send, "__self__", None)
    started = False

    async def trickle(message: Message) -> None:
        nonlocal started
        if message["type"] != "http.response.body":
            await send(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        for i in range(0, len(body), step):
            if getattr(cycle, "disconnected", False):
                return
            if started:
                await asyncio.sleep(pause)
            started = True
            last = i + step >= len(body)
            await send(
                {"type": "http.response.body", "body": body[i : i + step], "more_body": more or not last}
            )
        if not body:
            await send(message)

    return trickle


def drop_connection(send: Send) -> None:
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


def is_api_request(scope: Scope, admin_prefix: str) -> bool:
    """Whether the layer handles ``scope`` (admin calls and health probes are neither counted nor faulted)."""
    return (
        scope["type"] == "http" and scope["path"] != "/health" and not scope["path"].startswith(admin_prefix)
    )
