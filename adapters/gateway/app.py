"""The HTTP edge: a Starlette application around :class:`~adapters.gateway.service.Gateway`.

Starlette (with uvicorn to serve it) is a small, well-kept ASGI toolkit: routing, request
bodies and a lifespan hook are all the gateway needs from HTTP, and it leaves the
operations plain synchronous functions (run in its thread pool), which suits the
blocking database and broker clients the rest of the hub uses.

``POST {endpoint}/{operation}`` (and ``GET`` for the two counts) is read here: the
headers, the client's address and at most the size limit of body, then handed to
:meth:`Gateway.handle`. Every answer is JSON carrying the fields the SDK reads for that
operation (:mod:`.wire`), including for a body that is too large, a path that is no
operation and a failure of the HTTP layer itself.

The client's address is the socket's peer, or, behind a proxy that uvicorn trusts
(``FORWARDED_ALLOW_IPS``, by default the same host), the address that proxy names in
``X-Forwarded-For``: a TLS terminator in front keeps per-system allow-lists working.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from vdx.errors import EnvelopeError, GatewayError

from . import wire
from .service import Gateway

log = logging.getLogger("vdx.gateway")
# Room for the package, the CRLF the SDK appends, and nothing much else.
_BODY_SLACK = 1024


def create_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> Starlette:
    """The ASGI app serving ``gateway``; with ``manage_lifecycle`` its startup relays
    unpublished packages and starts draining inboxes, its shutdown stops both."""

    async def endpoint(request: Request) -> Response:
        operation = _operation(request)
        body = await _read_body(request, operation,
                                gateway.config.limits.max_bytes + _BODY_SLACK)
        if isinstance(body, Response):
            return body
        status, answer = await run_in_threadpool(
            gateway.handle, operation, request.method, request.headers.items(), body,
            request.client.host if request.client else None)
        return _json(operation, status, answer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_lifecycle:
            await run_in_threadpool(gateway.start)
        try:
            yield
        finally:
            if manage_lifecycle:
                await run_in_threadpool(gateway.stop)

    async def not_http(request: Request, exc: Exception) -> Response:
        operation = _operation(request)
        return _json(operation, *wire.fail(GatewayError(
            "gateway.bad_request", f"{request.method} {request.url.path}: the gateway takes "
                                   f"POST (GET for the counts) to /<operation>"), operation))

    async def crashed(request: Request, exc: Exception) -> Response:
        # Gateway.handle never raises; this is the HTTP layer failing around it.
        reference = uuid.uuid4().hex[:12]
        log.error("unexpected failure in the HTTP layer", exc_info=exc,
                  extra={"event": "crash", "reference": reference})
        operation = _operation(request)
        return _json(operation, 500, wire.internal_error(reference, operation))

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])],
                    lifespan=lifespan, exception_handlers={404: not_http, 405: not_http,
                                                           Exception: crashed})
    app.state.gateway = gateway
    return app


def _operation(request: Request) -> str:
    # The last path segment is the operation, so an endpoint with a path prefix
    # (``https://hub.example/vxp``) works as configured in the agency's software.
    return request.url.path.rstrip("/").rsplit("/", 1)[-1]


async def _read_body(request: Request, operation: str, limit: int) -> bytes | Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(operation, int(declared), limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _too_large(operation, size, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        return _json(operation, *wire.fail(GatewayError(
            "gateway.bad_request", "the client closed the request early"), operation))
    return b"".join(chunks)


def _too_large(operation: str, size: int, limit: int) -> Response:
    return _json(operation, *wire.fail(EnvelopeError(
        "envelope.too_large", f"the request body is {size:,} bytes or more; packages are "
                              f"accepted up to {limit - _BODY_SLACK:,} bytes"), operation))


def _json(operation: str, status: int, answer: dict) -> Response:
    response = Response(wire.body(operation, answer), status_code=status,
                        media_type="application/json")
    if answer.get("status") != "OK":  # readable even where the body cannot say it
        response.headers["X-VDX-Error-Code"] = str(answer.get("ErrorCode", ""))
    return response
