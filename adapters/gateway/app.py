"""The HTTP edge: a Starlette application around :class:`~adapters.gateway.service.Gateway`.

Starlette (with uvicorn to serve it) is a small, well-kept ASGI toolkit: routing, request
bodies and a lifespan hook are all the gateway needs from HTTP, and it leaves the
operations plain synchronous functions (run in its thread pool), which suits the
blocking database and broker clients the rest of the hub uses.

``POST {endpoint}/{operation}`` (and ``GET`` for the two counts) is read here: the
headers and at most the size limit of body, then handed to :meth:`Gateway.handle`. Every
answer is JSON, including for a body that is too large or a path that is no operation.
"""

from __future__ import annotations

import contextlib
import logging
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
        # The last path segment is the operation, so an endpoint with a path prefix
        # (``https://hub.example/vxp``) works as configured in the agency's software.
        operation = request.path_params["path"].rstrip("/").rsplit("/", 1)[-1]
        body = await _read_body(request, gateway.config.limits.max_bytes + _BODY_SLACK)
        if isinstance(body, Response):
            return body
        status, answer = await run_in_threadpool(
            gateway.handle, operation, request.method, request.headers.items(), body)
        return _json(status, answer)

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
        return _json(*wire.fail(GatewayError(
            "gateway.bad_request", f"{request.method} {request.url.path}: the gateway takes "
                                   f"POST (GET for the counts) to /<operation>")))

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])],
                    lifespan=lifespan, exception_handlers={404: not_http, 405: not_http})
    app.state.gateway = gateway
    return app


async def _read_body(request: Request, limit: int) -> bytes | Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(int(declared), limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _too_large(size, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        return _json(*wire.fail(GatewayError("gateway.bad_request",
                                             "the client closed the request early")))
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> Response:
    return _json(*wire.fail(EnvelopeError(
        "envelope.too_large", f"the request body is {size:,} bytes or more; packages are "
                              f"accepted up to {limit - _BODY_SLACK:,} bytes")))


def _json(status: int, answer: dict) -> Response:
    return Response(wire.encode(answer), status_code=status, media_type="application/json")
