"""The VXP gateway end to end: VXP-SDK-exact requests, the real hub, broker and database.

Systems G22 and H41 use the gateway; H49 stays a plain AMQP node. Every request below is
built as the Java SDK builds it (:class:`vdx_adapters.gateway.SdkService`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pika
import pytest
import uvicorn
from click.testing import CliRunner
from sqlalchemy import func, select
from vdx_adapters.gateway import create_app, sdk
from vdx_adapters.gateway import systems as gateway_systems
from vdx_adapters.gateway import tables as gateway
from vdx_cli.cli import main

from tests.support.gateway import running_gateway, write_key
from tests.support.hub import running_hub
from vdx import build, parse
from vdx.core import model
from vdx.hub import journal
from vdx.hub.supervisor import RegistryView

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    with running_hub("sqlite", tmp) as hub, \
            running_gateway(hub, tmp, {"g22": "G22", "h41": "H41"}) as w:
        yield w


def unsigned(agency, *to: str) -> bytes:
    return build(model.DocumentPackage(
        sender=model.Organization(agency.code), recipients=tuple(model.Organization(t)
                                                                for t in to),
        document_id=f"{agency.code},2026/11/22,{time.time_ns()}/UNSIGNED",
        code=model.Code("7", "UBND-VP"),
        promulgation=model.PromulgationInfo("Nghệ An", datetime(2026, 11, 22).date()),
        document_type=model.DocumentType(1, "Công văn"), subject="Gửi qua cổng VXP",
        signer=model.SignerInfo("Trần Thị B")))


def deliver(world, package: bytes) -> tuple[str, dict]:
    """G22's system sends ``package`` to H41; returns its DocId and H41's list entry."""
    g22, h41 = world.system("g22"), world.system("h41")
    answer = g22.send_edoc(package)
    assert answer["status"] == "OK" and answer["ErrorCode"] == "0", answer
    (item,) = h41.wait_for(1)
    return answer["DocId"], item


# ---------------------------------------------------------------- sending, receiving


def test_a_document_goes_from_one_system_to_another_and_is_acknowledged(world):
    g22, h41 = world.system("g22"), world.system("h41")
    package = world.hub.agency("G22").document(world.hub.agency("H41").code)
    doc_id, item = deliver(world, package)
    assert item["from"] == world.hub.agency("G22").code
    assert item["to"] == world.hub.agency("H41").code
    assert (item["serviceType"], item["messageType"], item["status"]) == ("eDoc", "edoc", "new")
    assert set(item) == {"docId", "serviceType", "messageType", "created_time",
                         "updated_time", "from", "to", "status", "status_desc"}
    assert h41.get_edoc(item["docId"]) == package  # the signed bytes, never edited
    assert h41.call("countReceiveEdoc", method="GET")["count"] == 1
    assert h41.update(item["docId"], "done")["status"] == "OK"
    assert h41.received() == [] and h41.call("countReceiveEdoc")["count"] == 0
    (line,) = g22.wait_sent(doc_id, lambda ls: ls and ls[0]["sendStatus"] == "delivered")
    assert line["receiverDocId"] == item["docId"] and line["toCode"] == item["to"]
    assert line["title"] == "Thử nghiệm trục" and line["notation"] == "1/TEST"
    assert set(line) == {"serviceType", "senderDocId", "receiverDocId", "fromCode", "toCode",
                         "title", "notation", "messageType", "sentTime", "receivedTime",
                         "sendStatus", "sendStatusDesc", "receiveStatus",
                         "receiveStatusDesc"}


def test_fail_offers_the_document_again_and_processing_keeps_it(world):
    h41 = world.system("h41")
    _, item = deliver(world, world.hub.agency("G22").document(world.hub.agency("H41").code))
    h41.get_edoc(item["docId"])
    assert h41.update(item["docId"], "fail")["status"] == "OK"
    (again,) = h41.received()
    assert again["docId"] == item["docId"] and again["status"] == "fail"
    assert h41.update(item["docId"], "processing")["status"] == "OK"
    assert h41.received()[0]["status"] == "processing"
    assert h41.update(item["docId"], "done")["status"] == "OK"
    assert h41.received() == []


def test_the_sdk_loop_with_one_service_object(world):
    """The SDK's own example keeps one service object for a whole polling loop: one
    timestamp, and from the second document on, getEdoc and updateStatus of a document
    carry the very same signature (their parameters were all in its header map already).
    A strict system accepts a signed request once, for one operation, so it refuses the
    second updateStatus (``gateway.wrong_operation``); a compatible one serves the loop."""
    g22, h41 = world.system("g22"), world.system("h41")
    for _ in range(2):
        assert g22.send_edoc(world.hub.agency("G22").document(
            world.hub.agency("H41").code))["status"] == "OK"
    items = h41.wait_for(2)
    service = h41.service()
    assert h41.send(service.build("getReceivedEdocList", {
        "servicetype": "eDoc", "messagetype": "edoc"}))[1]["data"] == items
    signatures, answers = [], []
    for item in items:
        for operation, params in (("getEdoc", {"filePath": "xml", "docId": item["docId"]}),
                                  ("updateStatus", {"status": "done", "docId": item["docId"]})):
            request = service.build(operation, params)
            signatures.append(request.header("XroadVnpt-hash-header"))
            answers.append(h41.send(request)[1]["ErrorCode"])
    assert signatures[2] == signatures[3]
    assert answers == ["0", "0", "0", "gateway.wrong_operation"]
    gateway_systems.set_policy(world.hub.admin, h41.system_id, policy="compatible")
    try:
        assert h41.send(request)[1]["status"] == "OK"  # the same updateStatus, compatible
    finally:
        gateway_systems.set_policy(world.hub.admin, h41.system_id, policy="strict")
    assert h41.received() == []


def test_send_is_idempotent_for_the_same_package(world):
    g22, h41 = world.system("g22"), world.system("h41")
    package = world.hub.agency("G22").document(world.hub.agency("H41").code)
    request = g22.service().build("sendEdoc", {"from": g22.nodes[0], "servicetype": "eDoc",
                                               "messagetype": "edoc"}, file=package)
    first = g22.send(request)[1]
    retried = g22.send(request)[1]  # the SDK's HTTP layer re-sends the identical request
    later = g22.send_edoc(package)  # the software tries again, a new request
    assert first["status"] == retried["status"] == later["status"] == "OK"
    assert first["DocId"] == retried["DocId"] == later["DocId"]
    (item,) = h41.wait_for(1)
    time.sleep(0.5)
    assert len(h41.received()) == 1  # one copy, never a second publication
    h41.update(item["docId"], "done")
    with world.hub.engine.connect() as c:
        assert c.scalar(select(func.count()).select_from(journal.DocumentRow).where(
            journal.DocumentRow.sha256 == __import__("hashlib").sha256(package).hexdigest())) == 1


def test_a_status_travels_through_the_gateway_and_reaches_the_sent_list(world):
    g22, h41 = world.system("g22"), world.system("h41")
    G22, H41 = world.hub.agency("G22"), world.hub.agency("H41")
    doc_id, item = deliver(world, G22.document(H41.code))
    document_id = parse(h41.get_edoc(item["docId"])).document_id
    h41.update(item["docId"], "done")
    answer = h41.send_edoc(H41.status(G22.code, document_id, "03"), messagetype="status")
    assert answer["status"] == "OK", answer
    (status,) = g22.wait_for(1, "status")
    assert status["messageType"] == "status" and status["from"] == H41.code
    assert g22.call("countReceiveStatus")["count"] == 1
    assert b"<edXML:StatusCode>03</edXML:StatusCode>" in g22.get_edoc(status["docId"])
    g22.update(status["docId"], "done")
    (line,) = g22.wait_sent(doc_id, lambda ls: ls and ls[0]["receiveStatus"] == "03")
    assert line["receiveStatusDesc"] == "Đã tiếp nhận"


def test_the_gateway_signs_for_a_configured_node_and_says_so(world, tmp_path):
    g22, h41 = world.system("g22"), world.system("h41")
    G22, H41 = world.hub.agency("G22"), world.hub.agency("H41")
    package = unsigned(G22, H41.code)
    refused = g22.send_edoc(package)
    assert refused["status"] == "FAIL" and refused["ErrorCode"] == "signature.missing"
    assert "vdx gateway sign-for" in refused["ErrorDesc"]
    loose_key, cert = write_key(G22, tmp_path, mode=0o644)
    with pytest.raises(Exception) as info:
        gateway_systems.sign_for(world.hub.admin, G22.code, loose_key, cert)
    assert info.value.code == "gateway.bad_key" and "chmod 600" in info.value.message
    loose_key.chmod(0o600)
    gateway_systems.sign_for(world.hub.admin, G22.code, loose_key, cert)
    answer = g22.send_edoc(package)
    assert answer["status"] == "OK" and answer["SignedByGateway"] is True, answer
    (item,) = h41.wait_for(1)
    received = h41.get_edoc(item["docId"])
    assert b"Signature" in received and received != package
    h41.update(item["docId"], "done")
    (line,) = g22.wait_sent(answer["DocId"], lambda ls: ls and ls[0]["sendStatus"] == "delivered")
    assert "signed by the gateway" in line["sendStatusDesc"]
    gateway_systems.stop_signing(world.hub.admin, G22.code)


def test_a_package_the_hub_would_refuse_is_refused_in_the_answer(world):
    g22 = world.system("g22")
    G22, H49 = world.hub.agency("G22"), world.hub.agency("H49")
    tampered = G22.document(H49.code).replace(b"Th\xe1\xbb\xad nghi\xe1\xbb\x87m",
                                              b"Gi\xe1\xba\xa3 m\xe1\xba\xa1o")
    answer = g22.send_edoc(tampered)
    assert answer["status"] == "FAIL" and answer["ErrorCode"].startswith("signature."), answer
    answer = g22.send_edoc(b"not xml at all")
    assert (answer["status"], answer["ErrorCode"]) == ("FAIL", "envelope.not_xml")
    wrong_kind = g22.send_edoc(G22.document(H49.code), messagetype="status")
    assert wrong_kind["ErrorCode"] == "gateway.bad_request"
    foreign = g22.send_edoc(H49.document(G22.code))  # `from` is G22, the package is H49's
    assert foreign["ErrorCode"] == "gateway.bad_request" and H49.code in foreign["ErrorDesc"]


def test_a_plain_amqp_node_and_a_gateway_system_talk_to_each_other(world):
    h41 = world.system("h41")
    H41, H49 = world.hub.agency("H41"), world.hub.agency("H49")
    body = H49.document(H41.code)
    H49.send(body)
    (item,) = h41.wait_for(1)
    assert item["from"] == H49.code and h41.get_edoc(item["docId"]) == body
    h41.update(item["docId"], "done")
    H49.drain()  # its receipts


def test_the_mailbox_loses_nothing_while_stopped_and_keeps_each_delivery_once(world):
    h41 = world.system("h41")
    H41, H49 = world.hub.agency("H41"), world.hub.agency("H49")
    world.gateway.drainer.stop()
    try:
        body = H49.document(H41.code)
        connection = pika.BlockingConnection(pika.URLParameters(world.hub.amqp_url))
        channel = connection.channel()
        delivery_id = str(uuid.uuid4())
        for _ in range(2):  # after a crash the hub relays a delivery under the same id
            channel.basic_publish("vdx.deliver", H41.code, body, pika.BasicProperties(
                delivery_mode=2, message_id=delivery_id, type="edxml.document",
                headers={"x-vdx-sender": H49.code}))
        connection.close()
        time.sleep(0.3)
        assert h41.received() == []  # waiting in the broker: nothing taken, nothing lost
    finally:
        world.gateway.drainer.start()
    (item,) = h41.wait_for(1)
    time.sleep(0.5)
    assert [i["docId"] for i in h41.received()] == [delivery_id]
    assert item["from"] == H49.code and h41.get_edoc(delivery_id) == body
    h41.update(delivery_id, "done")


# ---------------------------------------------------------------------------- refusals


def test_refusals(world):
    g22, h41 = world.system("g22"), world.system("h41")
    H41 = world.hub.agency("H41")
    listing = {"servicetype": "eDoc", "messagetype": "edoc"}

    def refused(status_and_answer, code, http=401):
        status, answer = status_and_answer
        assert (status, answer["status"], answer["ErrorCode"]) == (http, "FAIL", code), answer
        assert answer["ErrorDesc"]

    request = g22.service().build("getReceivedEdocList", listing)
    assert g22.send(request)[1]["status"] == "OK"
    refused(g22.send(request), "gateway.replayed_request")
    old = g22.service(created=datetime.now(UTC) - timedelta(minutes=6))
    refused(g22.send(old.build("getReceivedEdocList", listing)), "gateway.stale_request")
    ahead = g22.service(created=datetime.now(UTC) + timedelta(minutes=6))
    refused(g22.send(ahead.build("getReceivedEdocList", listing)), "gateway.stale_request")
    wrong_secret = sdk.SdkService(g22.system_id, "not-the-secret")
    refused(g22.send(wrong_secret.build("getReceivedEdocList", listing)),
            "gateway.bad_signature")
    refused(g22.send(sdk.SdkService("nobody", "x").build("getReceivedEdocList", listing)),
            "gateway.unknown_system")
    tampered = g22.service().build("getReceivedEdocList", listing)
    tampered = sdk.WireRequest(tampered.method, tampered.operation, tuple(
        (k, "status" if k == "XroadVnpt-messagetype" else v) for k, v in tampered.headers))
    refused(g22.send(tampered), "gateway.header_mismatch")
    unsigned_header = g22.service().build("getReceivedEdocList", listing)
    stripped = tuple((k, v) for k, v in unsigned_header.headers if k != "XroadVnpt-hash-header")
    refused(g22.send(sdk.WireRequest("POST", "getReceivedEdocList", stripped)),
            "gateway.bad_signature")
    # another system's node
    other = g22.send(g22.service().build(
        "sendEdoc", {"from": H41.code, "servicetype": "eDoc", "messagetype": "edoc"},
        file=H41.document(g22.nodes[0])))
    refused(other, "gateway.not_your_node", 403)
    _, item = deliver(world, world.hub.agency("G22").document(H41.code))
    refused(g22.send(g22.service().build("getEdoc", {"docId": item["docId"]})),
            "gateway.unknown_document", 200)
    refused(g22.send(g22.service().build("updateStatus", {"docId": item["docId"],
                                                          "status": "done"})),
            "gateway.unknown_document", 200)
    assert h41.update(item["docId"], "done")["status"] == "OK"
    # the body is not the file hash-file names
    bad = g22.service().build("sendEdoc", {"from": g22.nodes[0], "servicetype": "eDoc",
                                           "messagetype": "edoc"}, file=b"<a/>")
    refused(g22.send(sdk.WireRequest("POST", "sendEdoc", bad.headers, b"<b/>\r\n")),
            "gateway.hash_mismatch", 400)
    refused(g22.send(g22.service().build("updateStatus", {"docId": "x", "status": "gone"})),
            "gateway.bad_request", 400)
    refused(g22.send(g22.service().build("registerAgency", body=b'{"code":"X"}')),
            "gateway.not_supported", 200)
    refused(g22.send(g22.service().build("deleteAgency", {"AgencyCode": "X"})),
            "gateway.not_supported", 200)
    refused(g22.send(g22.service().build("getSynchronizeUnit")), "gateway.bad_request", 400)
    response = world.http.get("/no/such/thing/here", headers={"Accept": "text/html"})
    assert response.json()["status"] == "FAIL"


def test_agency_lists_come_from_the_registry(world):
    g22 = world.system("g22")
    answer = g22.call("getAgenciesList")
    by_code = {a["code"]: a for a in answer["data"]}
    for prefix in ("G22", "H41", "H49"):
        agency = by_code[world.hub.agency(prefix).code]
        assert agency["name"] == f"Cơ quan {prefix}" and agency["id"] == agency["code"]
        assert set(agency) == {"id", "pid", "code", "name", "mail", "oldCode"}
    qd20 = g22.call("getAgenciesListQD20", {"level": "2"})["data"]
    assert {a["code"] for a in qd20} >= {world.hub.agency(p).code for p in ("G22", "H41")}
    assert set(qd20[0]) == {"id", "code", "name", "mail", "code102"}
    assert g22.call("getAgenciesListQD20", {"level": "1"})["data"] == []


def test_the_hub_lets_the_gateway_account_publish_only_for_served_nodes(world):
    user = gateway.gateway_user(world.hub.vhost)
    with world.hub.engine.connect() as connection:
        from sqlalchemy.orm import Session

        view = RegistryView(Session(bind=connection), None, user)
        assert view.may_publish_for(user, world.hub.agency("G22").code)
        assert not view.may_publish_for(user, world.hub.agency("H49").code)
        assert not view.may_publish_for("someone.else", world.hub.agency("G22").code)


def test_real_http_with_the_sdk_wire_format(world):
    """uvicorn on a socket, urllib as the client: the body really ends with CRLF."""
    g22, h41 = world.system("g22"), world.system("h41")
    server = uvicorn.Server(uvicorn.Config(create_app(world.gateway, manage_lifecycle=False),
                                           host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}"
        package = world.hub.agency("G22").document(world.hub.agency("H41").code)
        request = g22.service().build("sendEdoc", {"from": g22.nodes[0], "servicetype": "eDoc",
                                                   "messagetype": "edoc"}, file=package)
        assert request.body == package + b"\r\n"
        answer = sdk.send(endpoint, request)
        assert answer["status"] == "OK", answer
        (item,) = h41.wait_for(1)
        assert h41.get_edoc(item["docId"]) == package
        assert sdk.send(endpoint, h41.service().build("updateStatus", {
            "status": "done", "docId": item["docId"]}))["status"] == "OK"
    finally:
        server.should_exit = True
        thread.join(10)


# --------------------------------------------------------------------------------- CLI


def test_cli_adds_lists_and_removes_systems(world, tmp_path, monkeypatch):
    hub = world.hub
    monkeypatch.setenv("VDX_DATABASE_URL", hub.config.database_url)
    monkeypatch.setenv("VDX_AMQP_URL", hub.amqp_url)
    monkeypatch.setenv("VDX_PKI_DIR", str(hub.config.pki_dir))
    monkeypatch.setenv("VDX_HOME", str(tmp_path))
    runner = CliRunner()
    code = hub.add_agency("H50").code  # not H49: the gateway would drain its inbox
    added = runner.invoke(main, ["gateway", "add-system", "cli.sys.1", "--node", code])
    assert added.exit_code == 0, added.output
    assert "secret" in added.output
    secret = next(line.split()[1] for line in added.output.splitlines()
                  if line.startswith("secret"))
    assert len(secret) >= 40
    again = runner.invoke(main, ["gateway", "add-system", "cli.sys.1", "--node", code])
    assert again.exit_code == 1 and "gateway.duplicate_system" in again.output
    unknown = runner.invoke(main, ["gateway", "add-system", "cli.sys.2", "--node", "H99.T1"])
    assert unknown.exit_code == 1 and "registry.unknown_node" in unknown.output
    listed = runner.invoke(main, ["gateway", "systems", "--json"])
    assert {"system_id": "cli.sys.1", "nodes": [code]}.items() <= next(
        s for s in json.loads(listed.output) if s["system_id"] == "cli.sys.1").items()
    assert "cli.sys.1" in runner.invoke(main, ["gateway", "systems"]).output
    user = gateway.gateway_user(hub.vhost)
    read = hub.admin.api.get(f"permissions/{hub.vhost}/{user}")["read"]
    assert code.replace(".", "\\.") in read and read.startswith("^(")
    removed = runner.invoke(main, ["gateway", "remove-system", "cli.sys.1"])
    assert code.replace(".", "\\.") not in hub.admin.api.get(
        f"permissions/{hub.vhost}/{user}")["read"]
    assert removed.exit_code == 0 and code in removed.output
    gone = runner.invoke(main, ["gateway", "remove-system", "cli.sys.1"])
    assert gone.exit_code == 1 and "gateway.unknown_system" in gone.output


# -------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_the_round_trip_on_postgresql(tmp_path):
    with running_hub("postgresql", tmp_path, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp_path, {"g22": "G22", "h41": "H41"}) as pg:
        g22, h41 = pg.system("g22"), pg.system("h41")
        package = hub.agency("G22").document(hub.agency("H41").code)
        first, again = g22.send_edoc(package), g22.send_edoc(package)
        assert first["status"] == "OK" and first["DocId"] == again["DocId"]
        (item,) = h41.wait_for(1)
        assert h41.get_edoc(item["docId"]) == package
        assert h41.update(item["docId"], "fail")["status"] == "OK"
        assert [i["docId"] for i in h41.received()] == [item["docId"]]
        assert h41.update(item["docId"], "done")["status"] == "OK"
        assert h41.received() == []
        g22.wait_sent(first["DocId"], lambda ls: ls and ls[0]["sendStatus"] == "delivered")
        request = g22.service().build("countReceiveEdoc")
        assert g22.send(request)[1]["count"] == 0
        assert g22.send(request)[1]["ErrorCode"] == "gateway.replayed_request"
