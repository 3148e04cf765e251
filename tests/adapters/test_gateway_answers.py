"""Every FAIL answer carries every field the VXP SDK reads for its operation.

The SDK (SDKVXP 2.0.1 and 2.0.0, read with ``javap -c -p``) reads each field of an answer
with ``getAsString()``/``getAsJsonArray()``/``getAsInt()`` and no null check, catches its
own NullPointerException and hands the agency's code a result whose fields are all null.
:data:`SDK_READS` is that reading, written down here independently of
``adapters/gateway/wire.py``: the pure tests hold ``wire.fail`` to it for every operation
and error code, the gateway tests every way a real request is refused.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient
from vdx_adapters.gateway import Gateway, create_app, service, wire
from vdx_adapters.gateway import systems as gateway_systems
from vdx_adapters.gateway.sdk import SdkService

from tests.support.gateway import VxpSystem, running_gateway
from tests.support.hub import running_hub
from vdx import store
from vdx.core.xmlsafe import ParseLimits
from vdx.errors import CATALOGUE, error_for

# What a FAIL answer must carry beyond status/ErrorCode/ErrorDesc, with its JSON type
# (javap of KnobstickServiceImp and AgencyServiceImp, both versions).
SDK_READS: dict[str, dict[str, type]] = {
    "sendEdoc": {"DocId": str},                  # getAsString, always
    "getReceivedEdocList": {"data": list},       # getAsJsonArray when ErrorCode is "0"
    "getSentEdocList": {"data": list},
    "getEdoc": {"data": str},                    # getAsString: 2.0.0 always, 2.0.1 unless FAIL
    "updateStatus": {},
    "countReceiveEdoc": {"count": int},          # getAsInt unless status is FAIL (2.0.1)
    "countReceiveStatus": {"count": int},
    "getAgenciesList": {"data": list},
    "getAgenciesListQD20": {"data": list},
    "getSynchronizeUnit": {"data": list},        # not offered: refused, still readable
    "registerAgency": {},
    "deleteAgency": {},
}
REFUSAL_CODES = sorted(code for code in CATALOGUE
                       if code.split(".")[0] in ("gateway", "transport", "envelope",
                                                 "signature", "routing", "registry"))


def assert_sdk_reads_it(operation: str, answer: dict) -> None:
    """``answer`` is a refusal the SDK reports to its caller for ``operation``."""
    assert answer["status"] == "FAIL", answer
    for name in ("status", "ErrorCode", "ErrorDesc"):
        assert isinstance(answer[name], str) and answer[name], (operation, name, answer)
    assert answer["ErrorCode"] != "0"
    for name, kind in SDK_READS.get(operation, {}).items():
        assert name in answer, (operation, name, answer)
        # type() and not isinstance(): True is an int to Python, not to Gson's getAsInt
        assert type(answer[name]) is kind, (operation, name, answer)
        assert answer[name] in ("", [], 0), (operation, name, answer)  # neutral


# -------------------------------------------------------------------------- pure: wire


def test_every_offered_operation_has_its_reading_written_down():
    assert set(service.OPERATIONS) <= set(SDK_READS)
    assert {op: {k: type(v) for k, v in f.items()} for op, f in wire.FAIL_FIELDS.items()} == \
        {op: f for op, f in SDK_READS.items() if f}


@pytest.mark.parametrize("operation", sorted(SDK_READS))
def test_every_refusal_of_every_operation_carries_what_the_sdk_reads(operation):
    for code in REFUSAL_CODES:
        status, answer = wire.fail(error_for(code), operation)
        assert_sdk_reads_it(operation, answer)
        assert 200 <= status < 600
        assert wire.encode(answer).isascii()
    assert_sdk_reads_it(operation, wire.internal_error("abc123", operation))


def test_the_http_status_follows_the_code_and_the_fields_follow_the_operation():
    assert wire.fail(error_for("gateway.stale_request"), "sendEdoc")[0] == 401
    assert wire.fail(error_for("gateway.address_not_allowed"), "getEdoc")[0] == 403
    assert wire.fail(error_for("envelope.too_large"), "sendEdoc")[0] == 413
    assert wire.fail(error_for("gateway.already_done"), "updateStatus")[0] == 200
    _, unknown = wire.fail(error_for("gateway.bad_request"), "noSuchOperation")
    assert set(unknown) == {"status", "ErrorCode", "ErrorDesc"}


def test_answers_never_share_the_tables_lists():
    _, first = wire.fail(error_for("gateway.bad_request"), "getReceivedEdocList")
    first["data"].append("edited by a caller")
    _, second = wire.fail(error_for("gateway.bad_request"), "getReceivedEdocList")
    assert second["data"] == [] and wire.FAIL_FIELDS["getReceivedEdocList"]["data"] == []


def test_a_refused_download_is_an_empty_body_the_sdk_reports_as_failed():
    # 2.0.1's downloadEdoc saves the body as the .edxml and says SUCCESS unless it is empty
    _, answer = wire.fail(error_for("gateway.bad_request"), "downloadEdoc")
    assert wire.body("downloadEdoc", answer) == b""
    assert wire.body("getEdoc", answer).startswith(b'{"status":"FAIL"')


# ------------------------------------------------------------ the gateway, for real

CALLS: dict[str, tuple[dict, dict]] = {  # operation: (params, build() keywords)
    "sendEdoc": ({"servicetype": "eDoc", "messagetype": "edoc"}, {"file": b"<not-xml"}),
    "getReceivedEdocList": ({"servicetype": "eDoc", "messagetype": "edoc"}, {}),
    "getSentEdocList": ({"servicetype": "eDoc", "messagetype": "edoc", "docId": ""}, {}),
    "getEdoc": ({"filePath": "xml", "docId": "no-such-document"}, {}),
    "updateStatus": ({"status": "done", "docId": "no-such-document"}, {}),
    "countReceiveEdoc": ({}, {}),
    "countReceiveStatus": ({}, {}),
    "getAgenciesList": ({}, {}),
    "getAgenciesListQD20": ({"level": "x"}, {}),
    "registerAgency": ({}, {"body": b'{"code":"X"}'}),
    "deleteAgency": ({"AgencyCode": "X"}, {}),
}
# How each call of CALLS is refused once it is authenticated (the others succeed).
BUSINESS = {"sendEdoc": "envelope.not_xml", "getEdoc": "gateway.unknown_document",
            "updateStatus": "gateway.unknown_document",
            "getAgenciesListQD20": "gateway.bad_request",
            "registerAgency": "gateway.not_supported", "deleteAgency": "gateway.not_supported"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-answers")
    with running_hub("sqlite", tmp, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp, {"g22": "G22"}) as w:
        yield w


def build(system: VxpSystem | SdkService, operation: str, created: datetime | None = None):
    params, kwargs = CALLS[operation]
    if operation == "sendEdoc":
        params = {**params, "from": system.nodes[0] if isinstance(system, VxpSystem)
                  else "000.00.00.G22"}
    service = system.service(created) if isinstance(system, VxpSystem) else system
    return service.build(operation, params, **kwargs)


def send(world, request, http: TestClient | None = None):
    response = (http or world.http).request(request.method, f"/{request.operation}",
                                            headers=list(request.headers),
                                            content=request.body)
    return response.status_code, response


@pytest.mark.rabbitmq
@pytest.mark.parametrize("operation", sorted(CALLS))
def test_every_way_a_request_is_refused_carries_what_the_sdk_reads(world, operation):
    g22 = world.system("g22")
    seen: dict[str, dict] = {}

    def refused(request, http=None) -> None:
        status, response = send(world, request, http)
        answer = response.json()
        assert_sdk_reads_it(operation, answer)
        assert response.headers["X-VDX-Error-Code"] == answer["ErrorCode"]
        seen[answer["ErrorCode"]] = answer

    refused(build(SdkService("nobody", "x"), operation))
    refused(build(SdkService(g22.system_id, "not-the-secret"), operation))
    refused(build(g22, operation, created=datetime.now(UTC) - timedelta(minutes=6)))
    first = build(g22, operation)
    send(world, first)  # whatever it answers, the same signed request again is a replay
    if operation != "sendEdoc":  # idempotent by content: answered as the first time
        refused(first)
    if operation in BUSINESS:  # an unknown document, a bad level, …
        refused(build(g22, operation))
    limited = gateway_systems.set_policy(world.hub.admin, g22.system_id,
                                         allow_from=["203.0.113.0/24"])
    try:
        refused(build(g22, operation))
    finally:
        gateway_systems.set_policy(world.hub.admin, limited.system_id, allow_from=[])
    expected = {"gateway.unknown_system", "gateway.bad_signature", "gateway.stale_request",
                "gateway.address_not_allowed"}
    if operation != "sendEdoc":
        expected.add("gateway.replayed_request")
    if operation in BUSINESS:
        expected.add(BUSINESS[operation])
    assert set(seen) == expected


@pytest.mark.rabbitmq
def test_refusals_of_paths_and_methods_that_are_no_operation(world):
    g22 = world.system("g22")
    for operation in ("getSynchronizeUnit", "noSuchOperation"):
        request = g22.service().build(operation)
        _, response = send(world, request)
        assert_sdk_reads_it(operation, response.json())
        assert response.json()["ErrorCode"] == "gateway.bad_request"
    # 2.0.1's downloadEdoc would save a JSON body as the document and report SUCCESS
    response = world.http.get("/downloadEdoc", params={"docId": "d"})
    assert response.content == b"" and response.headers["X-VDX-Error-Code"] == \
        "gateway.bad_request"
    for method, path in (("PUT", "/getEdoc"), ("DELETE", "/countReceiveEdoc")):
        response = world.http.request(method, path)
        operation = path.strip("/")
        assert response.status_code == 400
        assert_sdk_reads_it(operation, response.json())


@pytest.mark.rabbitmq
def test_a_body_too_large_is_refused_with_the_operations_fields(world):
    small = Gateway(replace(world.gateway.config, limits=ParseLimits(max_bytes=1000)),
                    engine=world.hub.engine)
    g22 = world.system("g22")
    with TestClient(create_app(small, manage_lifecycle=False)) as http:
        for operation in CALLS:
            request = build(g22, operation)
            # over the package limit for sendEdoc, over the small-body limit for the rest
            size = max(3000, small.body_limit(operation) + 1)
            assert size < service.SMALL_BODY or operation != "sendEdoc"
            request = type(request)(request.method, operation, request.headers, b"x" * size)
            status, response = send(world, request, http)
            assert status == 413, operation
            assert response.json()["ErrorCode"] == "envelope.too_large"
            assert_sdk_reads_it(operation, response.json())


@pytest.mark.rabbitmq
def test_a_database_that_is_down_is_refused_with_the_operations_fields(world):
    # a PostgreSQL server that is not there: nothing listens on port 1
    down = Gateway(world.gateway.config, engine=store.make_engine(
        "postgresql+psycopg://vdx@127.0.0.1:1/vdx", connect_args={"connect_timeout": 2}))
    g22 = world.system("g22")
    for operation in CALLS:
        request = build(g22, operation)
        status, answer = down.handle(operation, request.method, request.headers, request.body)
        assert (status, answer["ErrorCode"]) == (503, "transport.unavailable"), answer
        assert_sdk_reads_it(operation, answer)


@pytest.mark.rabbitmq
def test_an_unexpected_failure_is_answered_with_the_operations_fields(world, monkeypatch,
                                                                      caplog):
    def crash(*args):
        raise RuntimeError("a bug")

    g22 = world.system("g22")
    for operation, op in list(service.OPERATIONS.items()):
        monkeypatch.setitem(service.OPERATIONS, operation, replace(op, run=crash))
    with caplog.at_level(logging.ERROR, logger="vdx.gateway"):
        for operation in CALLS:
            status, response = send(world, build(g22, operation))
            answer = response.json()
            assert (status, answer["ErrorCode"]) == (500, "gateway.internal"), answer
            assert_sdk_reads_it(operation, answer)
    assert "a bug" in caplog.text
    monkeypatch.undo()
    # the HTTP layer failing around the gateway answers the same way
    broken = Gateway(world.gateway.config, engine=world.hub.engine)
    monkeypatch.setattr(broken, "admit", crash)
    with TestClient(create_app(broken, manage_lifecycle=False),
                    raise_server_exceptions=False) as http:
        status, response = send(world, build(g22, "sendEdoc"), http)
    assert status == 500
    assert_sdk_reads_it("sendEdoc", response.json())
