"""The gateway under hostile requests: bodies read only after authentication, a signed
request bound to its operation, too many requests from one address, nested JSON.

The body tests drive the ASGI app with a ``receive`` that counts every byte the app pulls
from a 64 MiB upload: an unauthenticated request must be answered having pulled none.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime

import pytest
from vdx_adapters.gateway import auth, create_app, service
from vdx_adapters.gateway.app import PerClientLimit
from vdx_adapters.gateway.sdk import SdkService, gson_object

from tests.support.gateway import running_gateway
from tests.support.hub import running_hub

pytestmark = pytest.mark.rabbitmq
LISTING = {"servicetype": "eDoc", "messagetype": "edoc"}
BIG = 64 * 1024 * 1024
CHUNK = 1024 * 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-hardening")
    with running_hub("sqlite", tmp, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp, {"g22": "G22", "h41": "H41"}) as w:
        yield w


class Upload:
    """An ASGI ``receive`` streaming ``size`` bytes on demand, counting what was pulled."""

    def __init__(self, size: int) -> None:
        self.size, self.pulled, self.ended = size, 0, False

    async def __call__(self) -> dict:
        if self.ended:
            await asyncio.sleep(3600)  # the client has nothing more to say
        self.ended = self.pulled + CHUNK >= self.size
        chunk = min(CHUNK, self.size - self.pulled)
        self.pulled += chunk
        return {"type": "http.request", "body": b"\0" * chunk,
                "more_body": self.pulled < self.size}


async def call(app, request, size: int, client=("198.51.100.7", 40000)):
    """``request``'s headers with a body of ``size`` bytes; (status, answer, bytes pulled)."""
    headers = [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in request.headers]
    headers.append((b"content-length", str(size).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": request.method, "scheme": "http", "path": f"/{request.operation}",
             "raw_path": f"/{request.operation}".encode(), "query_string": b"",
             "root_path": "", "headers": headers, "client": client,
             "server": ("127.0.0.1", 8080), "state": {}}
    upload, sent = Upload(size), []

    async def send(message):
        sent.append(message)

    await app(scope, upload, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), upload.pulled


def run(coroutine):
    return asyncio.run(coroutine)


# ------------------------------------------------------------- bodies after auth only


def test_unauthenticated_large_posts_are_answered_without_reading_their_bodies(world):
    app = create_app(world.gateway, manage_lifecycle=False)
    g22 = world.system("g22")
    package = world.hub.agency("G22").document(world.hub.agency("H41").code)
    wrong = SdkService(g22.system_id, "not-the-secret").build(
        "sendEdoc", {"from": g22.nodes[0], **LISTING}, file=package)
    nobody = SdkService("nobody.at.all", "x").build("sendEdoc", {"from": g22.nodes[0],
                                                                 **LISTING}, file=package)
    unsigned = type(wrong)("POST", "sendEdoc", (("Content-Type", "application/json"),))

    async def many():
        return await asyncio.gather(*(call(app, request, BIG)
                                      for request in (wrong, nobody, unsigned) * 4))

    answers = run(many())
    for status, answer, pulled in answers:
        assert pulled == 0, answer  # not one byte of the 64 MiB read before refusing
        assert status == 401 and answer["status"] == "FAIL" and answer["DocId"] == ""
    assert {a["ErrorCode"] for _, a, _ in answers} == {
        "gateway.bad_signature", "gateway.unknown_system"}


def test_an_authenticated_body_is_read_only_up_to_the_operations_limit(world):
    app = create_app(world.gateway, manage_lifecycle=False)
    g22 = world.system("g22")
    package_limit = world.gateway.body_limit("sendEdoc")
    assert package_limit == world.gateway.config.limits.max_bytes + service.BODY_SLACK
    send = g22.service().build("sendEdoc", {"from": g22.nodes[0], **LISTING},
                               file=b"<x/>")
    status, answer, pulled = run(call(app, send, package_limit + 1))
    assert (status, answer["ErrorCode"], answer["DocId"]) == (413, "envelope.too_large", "")
    assert pulled == 0  # the declared length alone refuses it
    listing = g22.service().build("getReceivedEdocList", LISTING)
    status, answer, pulled = run(call(app, listing, BIG))
    assert (status, answer["ErrorCode"], answer["data"]) == (413, "envelope.too_large", [])
    assert pulled == 0 and f"at most {service.SMALL_BODY:,} bytes" in answer["ErrorDesc"]


# -------------------------------------------------------------- one address at a time


def test_too_many_requests_from_one_address_are_refused_with_the_operations_fields():
    release, entered = asyncio.Event(), []

    async def slow(scope, receive, send):
        entered.append(scope["client"][0])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = PerClientLimit(slow, limit=2)
    request = SdkService("s", "k").build("getEdoc", {"docId": "d", "filePath": "x"})

    async def scenario():
        first = [asyncio.create_task(call(app, request, 2)) for _ in range(2)]
        while len(entered) < 2:
            await asyncio.sleep(0)
        refused = await call(app, request, BIG)
        other = asyncio.create_task(call(app, request, 2, client=("203.0.113.5", 1)))
        while len(entered) < 3:
            await asyncio.sleep(0)
        release.set()
        served = await asyncio.gather(*first, other)
        again = await call(app, request, 2)  # the first two answered: room again
        return refused, served, again

    (status, answer, pulled), served, again = run(scenario())
    assert (status, answer["ErrorCode"], answer["data"], pulled) == \
        (429, "gateway.too_many_requests", "", 0)
    assert [s for s, _, _ in served] == [200, 200, 200] and again[0] == 200
    assert entered.count("198.51.100.7") == 3 and entered.count("203.0.113.5") == 1
    assert app.active == {}
    with pytest.raises(ValueError):
        PerClientLimit(slow, limit=0)


def test_the_gateway_app_applies_its_configured_limit(world):
    gateway = world.gateway
    entered, release = threading.Semaphore(0), threading.Event()
    real = gateway.admit

    def blocking(*args):
        entered.release()
        release.wait(30)
        return real(*args)

    from dataclasses import replace

    limited = service.Gateway.__new__(service.Gateway)
    limited.__dict__.update(gateway.__dict__)
    limited.config = replace(gateway.config, max_per_client=1)
    limited.admit = blocking
    app = create_app(limited, manage_lifecycle=False)
    h41 = world.system("h41")

    async def scenario():
        first = asyncio.create_task(call(app, h41.service().build("getReceivedEdocList",
                                                                  LISTING), 0))
        await asyncio.to_thread(entered.acquire)
        refused = await call(app, h41.service().build("countReceiveEdoc"), 2)
        release.set()
        return await first, refused

    (status, answer, _), (r_status, refused, _) = run(scenario())
    assert status == 200 and answer["status"] == "OK"
    assert (r_status, refused["ErrorCode"], refused["count"]) == \
        (429, "gateway.too_many_requests", 0)


# ------------------------------------------------------------- a request, one operation


def test_a_strict_getedoc_signature_replayed_to_updatestatus_is_refused(world):
    h41 = world.system("h41")
    item = _deliver(world)
    kept = h41.service()
    kept.build("updateStatus", {"status": "fail", "docId": "earlier"})  # the stale status
    get = kept.build("getEdoc", {"filePath": "xml", "docId": item["docId"]})
    assert get.header("XroadVnpt-status") == "fail"
    assert h41.send(get)[1]["status"] == "OK"
    replayed = type(get)("POST", "updateStatus", get.headers, b"{}")
    status, refused = h41.send(replayed)
    assert (status, refused["ErrorCode"]) == (401, "gateway.wrong_operation")
    assert "accepted for getEdoc" in refused["ErrorDesc"]
    assert h41.send(get)[1]["ErrorCode"] == "gateway.replayed_request"
    assert [i["status"] for i in h41.received() if i["docId"] == item["docId"]] == ["new"]


def test_a_signature_of_sendedoc_serves_no_other_operation_in_either_policy(world):
    h41 = world.system("h41")
    package = world.hub.agency("H41").document(world.hub.agency("G22").code)
    send = h41.service().build("sendEdoc", {"from": h41.nodes[0], **LISTING}, file=package)
    listing = h41.service().build("getReceivedEdocList", LISTING)
    for request, operation in ((send, "getReceivedEdocList"), (listing, "sendEdoc")):
        moved = type(request)("POST", operation, request.headers, request.body)
        status, refused = h41.send(moved)
        assert (status, refused["ErrorCode"]) == (401, "gateway.wrong_operation"), refused
    signed = auth.authenticate(auth.read_auth_headers(send.headers), h41.secret,
                               now=datetime.now(UTC), rule=auth.TimestampRule())
    auth.check_operation(signed, "sendEdoc", True)
    with pytest.raises(Exception) as info:
        auth.check_operation(signed, "updateStatus", False)
    assert info.value.code == "gateway.wrong_operation"


def _deliver(world) -> dict:
    g22, h41 = world.system("g22"), world.system("h41")
    package = world.hub.agency("G22").document(world.hub.agency("H41").code)
    answer = g22.send_edoc(package)
    assert answer["status"] == "OK", answer
    return next(i for i in h41.wait_for(len(h41.received()) or 1)
                if i["from"] == g22.nodes[0])


# ------------------------------------------------------------------------ nested JSON


def test_a_deeply_nested_signed_header_is_a_bad_request_not_a_crash(world):
    g22 = world.system("g22")
    request = g22.service().build("getReceivedEdocList", LISTING)
    headers = dict(request.headers)
    nested = "[" * 30_000 + "]" * 30_000  # under MAX_SIGN_HEADER
    sign_header = gson_object([(k, v) for k, v in json.loads(
        headers["XroadVnpt-sign-header"]).items()])[:-1] + ',"XroadVnpt-x":' + nested + "}"
    headers["XroadVnpt-sign-header"] = sign_header
    headers["XroadVnpt-hash-header"] = hmac.new(g22.secret.encode(), sign_header.encode(),
                                                hashlib.sha256).hexdigest()
    status, answer = g22.send(type(request)("POST", "getReceivedEdocList",
                                            tuple(headers.items())))
    assert (status, answer["ErrorCode"], answer["data"]) == (400, "gateway.bad_request", [])
    assert "nested too deeply" in answer["ErrorDesc"]
