"""The HTTP edge: a Starlette application around :class:`~adapters.gateway.service.Gateway`.

Starlette (with uvicorn to serve it) is a small, well-kept ASGI toolkit: routing, request
bodies and a lifespan hook are all the gateway needs from HTTP, and it leaves the
operations plain synchronous functions (run in its thread pool), which suits the
blocking database and broker clients the rest of the hub uses.

``POST {endpoint}/{operation}`` (and ``GET`` for the two counts) is read here in two
steps: the headers and the client's address first (:meth:`Gateway.admit`: the signature,
the system's policy, the replay store), and only once they authenticated, the body,
streamed and bounded by :meth:`Gateway.body_limit` (the package limit for ``sendEdoc``,
a few KiB for the rest), then :meth:`Gateway.serve`. Nothing of an unauthenticated body is
read: the server (uvicorn) holds at most its buffer of it (64 KiB), stops reading the
socket, and after the answer discards the rest as it arrives. Every answer is JSON
carrying the fields the SDK reads for that operation (:mod:`.wire`), including for a body
that is too large, a path that is no operation, too many requests at once from one
address (:class:`PerClientLimit`) and a failure of the HTTP layer itself.

The client's address is the socket's peer, or, behind a proxy that uvicorn trusts
(``FORWARDED_ALLOW_IPS``, by default the same host), the address that proxy names in
``X-Forwarded-For``: a TLS terminator in front keeps per-system allow-lists working.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vdx.errors import GatewayError

from . import wire
from .service import Admitted, Gateway

log = logging.getLogger("vdx.gateway")


def create_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> Starlette:
    """The ASGI app serving ``gateway``; with ``manage_lifecycle`` its startup relays
    unpublished packages and starts draining inboxes, its shutdown stops both."""

    async def endpoint(request: Request) -> Response:
        operation = _operation(request)
        admitted = await run_in_threadpool(
            gateway.admit, operation, request.method, request.headers.items(),
            request.client.host if request.client else None)
        if not isinstance(admitted, Admitted):
            return _json(operation, *admitted)
        body = await _read_body(request, gateway, operation)
        if isinstance(body, Response):
            return body
        return _json(operation, *await run_in_threadpool(gateway.serve, admitted, body))

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
        # Gateway.admit and Gateway.serve never raise; this is the HTTP layer failing.
        reference = uuid.uuid4().hex[:12]
        log.error("unexpected failure in the HTTP layer", exc_info=exc,
                  extra={"event": "crash", "reference": reference})
        operation = _operation(request)
        return _json(operation, 500, wire.internal_error(reference, operation))

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])],
                    middleware=[Middleware(PerClientLimit,
                                           limit=gateway.config.max_per_client)],
                    lifespan=lifespan, exception_handlers={404: not_http, 405: not_http,
                                                           Exception: crashed})
    app.state.gateway = gateway
    return app


class PerClientLimit:
    """At most ``limit`` requests served at once for one client address; the next ones
    are answered at once with HTTP 429 and a ``gateway.too_many_requests`` FAIL carrying
    the operation's fields, before any of their body is read.

    The address is the one the allow-lists see (the socket's peer, or the client a
    trusted proxy names). A request counts from its headers until its answer is sent.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit {limit}: at least one request per client")
        self.app, self.limit = app, limit
        self.active: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else ""
        if self.active[address] >= self.limit:
            await self._refuse(scope, address, receive, send)
            return
        self.active[address] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active[address] -= 1
            if not self.active[address]:
                del self.active[address]

    async def _refuse(self, scope: Scope, address: str, receive: Receive, send: Send) -> None:
        log.warning("too many requests at once", extra={"event": "too_many_requests",
                                                          "peer": address})
        operation = _operation(Request(scope))
        error = GatewayError("gateway.too_many_requests",
                             f"this address has {self.limit} requests in progress already, the "
                             f"most the gateway serves at once for one address; try again "
                             f"when one is answered")
        status, answer = wire.fail(error, operation)
        await _json(operation, status, answer)(scope, receive, send)


def _operation(request: Request) -> str:
    # The last path segment is the operation, so an endpoint with a path prefix
    # (``https://hub.example/vxp``) works as configured in the agency's software.
    return request.url.path.rstrip("/").rsplit("/", 1)[-1]


async def _read_body(request: Request, gateway: Gateway, operation: str) -> bytes | Response:
    """The body of an admitted request, read as it streams in and never beyond
    :meth:`Gateway.body_limit`: a larger one is refused as soon as it is known to be."""
    limit = gateway.body_limit(operation)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _json(operation, *gateway.too_large(operation, int(declared)))
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _json(operation, *gateway.too_large(operation, size))
            chunks.append(chunk)
    except ClientDisconnect:
        return _json(operation, *wire.fail(GatewayError(
            "gateway.bad_request", "the client closed the request early"), operation))
    return b"".join(chunks)


def _json(operation: str, status: int, answer: dict) -> Response:
    response = Response(wire.body(operation, answer), status_code=status,
                        media_type="application/json")
    if answer.get("status") != "OK":  # readable even where the body cannot say it
        response.headers["X-VDX-Error-Code"] = str(answer.get("ErrorCode", ""))
    return response
