"""The Python SDK (vdx.client) through the real hub and broker, and its receipt checks."""

from __future__ import annotations

import dataclasses
import itertools
import os
import sqlite3
import time
import uuid
from datetime import date

import pika
import pytest

from tests.support.hub import Agency, Hub, running_hub
from vdx import build
from vdx.broker import provision
from vdx.client import checks as inbound
from vdx.client.checks import verify_receipt
from vdx.client.node import NodeClient, SignedReceipt
from vdx.client.state import ARRIVING, SqliteState
from vdx.core import envelope, model
from vdx.core.receipts import Receipt, build_receipt, parse_receipt, sign_receipt
from vdx.errors import SignatureError, TransportError
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub("sqlite", tmp_path_factory.mktemp("client"), agencies=()) as h:
        yield h


def pair(hub: Hub) -> tuple[Agency, Agency]:
    """Two fresh agencies: each test gets inboxes nobody else uses."""
    n = next(_numbers)
    return hub.add_agency(f"S{n:02d}"), hub.add_agency(f"R{n:02d}")


def client_for(hub: Hub, agency: Agency, **options) -> NodeClient:
    return NodeClient(agency.amqp_url, agency.code, signer=agency.signer, trust=hub.pki.trust,
                      hub_certificate=hub.admin.hub_certificate(), **options)


def document_value(sender: str, *to: str) -> model.DocumentPackage:
    return model.DocumentPackage(
        sender=model.Organization(sender), recipients=tuple(model.Organization(t) for t in to),
        document_id=f"{sender},2026/11/22,{next(_numbers)}/SDK", code=model.Code("7", "SDK"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"), subject="Thử nghiệm SDK",
        signer=model.SignerInfo("Nguyễn Văn A"))


def take_receipts(client: NodeClient, count: int, timeout: float = 15.0) -> list[SignedReceipt]:
    got: list[SignedReceipt] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += client.receipts(timeout=0.2)
    assert len(got) == count, [r.receipt.kind for r in got]
    return got


def hub_channel(hub: Hub):
    """The hub's own (administrator) channel on the test vhost: it may publish to
    vdx.deliver, which no node may, to play a hub that republishes or misbehaves."""
    connection = pika.BlockingConnection(pika.URLParameters(hub.amqp_url))
    return connection, connection.channel()


def publish_delivery(hub: Hub, recipient: str, body: bytes, *, sender: str,
                     delivery_id: str) -> None:
    connection, channel = hub_channel(hub)
    try:
        channel.basic_publish(provision.DELIVER_EXCHANGE, recipient, body, pika.BasicProperties(
            delivery_mode=2, message_id=delivery_id, type="edxml.document", headers={
                "x-vdx-delivery-id": delivery_id, "x-vdx-sender": sender,
                "x-vdx-kind": "document", "x-vdx-hub": "test-hub"}))
    finally:
        connection.close()


def ready_messages(hub: Hub, queue: str) -> int:
    connection, channel = hub_channel(hub)
    try:
        return channel.queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


# ----------------------------------------------------------------------------- sending


def test_a_value_is_built_signed_sent_and_accepted(hub):
    a, b = pair(hub)
    with client_for(hub, a) as client:
        submission = client.send(document_value(a.code, b.code))
        assert submission.confirmed and submission.kind == "document"
        receipt = client.wait_for_receipt(submission, timeout=10)
        assert receipt.kind == "accepted"
        assert receipt.package_sha256 == submission.sha256
        assert receipt.document_id == submission.document_id
        # wait_for_receipt only looks: receipts() still hands out every receipt, once
        got = take_receipts(client, 2)
        assert sorted(r.receipt.kind for r in got) == ["accepted", "delivered"]
        assert all(r.hub_verified for r in got)
        assert list(client.receipts(timeout=0.3)) == []


def test_a_tampered_package_gets_a_rejected_receipt_with_its_reason(hub):
    a, b = pair(hub)
    body = a.document(b.code).replace("Thử nghiệm trục".encode(), "Đã bị sửa".encode())
    with client_for(hub, a) as client:
        receipt = client.wait_for_receipt(client.send(body), timeout=10)
    assert receipt.kind == "rejected"
    assert receipt.error_code == "signature.digest_mismatch"
    assert receipt.rejection.message_vi  # the catalogue's Vietnamese summary travels too
    assert b.drain() == []


def test_send_many_pipelines_and_keeps_receipts_for_later_callers(hub):
    a, b = pair(hub)
    with client_for(hub, a) as client:
        submissions = client.send_many([a.document(b.code) for _ in range(60)])
        assert all(s.confirmed for s in submissions)
        # Waiting for the last one first: the others' receipts arrive meanwhile and
        # must still be there for their own callers.
        for submission in reversed(submissions):
            assert client.wait_for_receipt(submission, timeout=20).kind == "accepted"
    assert len({s.message_id for s in submissions}) == 60


def test_unread_deliveries_beyond_prefetch_do_not_hold_up_a_senders_receipts(hub):
    """Receipts have a queue of their own: a sender whose inbox holds more unread
    deliveries than its prefetch still learns promptly what became of what it sent."""
    a, b = pair(hub)
    for _ in range(6):
        b.send(b.document(a.code))
    deadline = time.monotonic() + 20
    while ready_messages(hub, provision.inbox_queue(a.code)) < 6:
        assert time.monotonic() < deadline, "the deliveries did not reach A's inbox"
        time.sleep(0.1)
    with client_for(hub, a, prefetch=2) as client:
        time.sleep(0.5)  # the broker hands the client its 2 deliveries, and holds the rest
        started = time.monotonic()
        receipt = client.wait_for_receipt(client.send(document_value(a.code, b.code)),
                                          timeout=10)
        assert receipt.kind == "accepted"
        assert time.monotonic() - started < 5
    assert ready_messages(hub, provision.inbox_queue(a.code)) == 6  # all unread, none lost


def test_the_client_reconnects_and_sends_after_losing_its_connection(hub):
    a, b = pair(hub)
    with client_for(hub, a) as client:
        client.wait_for_receipt(client.send(a.document(b.code)), timeout=10)
        provision.close_connections(hub.admin.api, a.code)
        submission = client.send(a.document(b.code))
        assert client.wait_for_receipt(submission, timeout=15).kind == "accepted"


def test_connection_refusals_are_clear_and_fast(hub):
    a, _ = pair(hub)
    wrong_password = a.amqp_url.replace("@", "x@", 1)
    started = time.monotonic()
    with pytest.raises(TransportError, match="ACCESS_REFUSED"):
        NodeClient(wrong_password, a.code, connect_timeout=10).connect()
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match="not as node"):
        NodeClient(a.amqp_url, "000.00.00.H99")


# --------------------------------------------------------------------------- receiving


def test_a_delivery_is_verified_and_acknowledged_only_after_the_handler(hub):
    a, b = pair(hub)
    with client_for(hub, a) as sender, client_for(hub, b) as receiver:
        submission = sender.send(document_value(a.code, b.code))
        with pytest.raises(RuntimeError):
            for delivery in receiver.deliveries(timeout=10):
                assert (delivery.kind, delivery.sender) == ("document", a.code)
                assert delivery.document_id == submission.document_id
                assert f"2.5.4.97={a.code}" in delivery.signer  # the verified certificate
                first = delivery
                raise RuntimeError("the DMS is down")
        (again,) = receiver.deliveries(timeout=10, limit=1)
        assert again.delivery_id == first.delivery_id and again.redelivered
        assert again.package == first.package
        # status 01 went back on its own, signed by the recipient, once for two handlings
        (arrived,) = sender.deliveries(timeout=3)
    assert (arrived.kind, arrived.status_code, arrived.sender) == ("status", "01", b.code)
    assert arrived.document_id == submission.document_id


def test_run_retries_a_failing_handler(hub):
    a, b = pair(hub)
    a.send(a.document(b.code))
    calls = []

    def flaky(delivery):
        calls.append(delivery.delivery_id)
        if len(calls) == 1:
            raise OSError("disk full")

    with client_for(hub, b) as receiver:
        assert receiver.run(flaky, idle_timeout=1.0, retry_delay=0.1) == 1
    assert len(calls) == 2 and calls[0] == calls[1]


def test_a_delivery_is_handed_out_once_per_delivery_id_even_after_a_restart(hub, tmp_path):
    a, b = pair(hub)
    state = tmp_path / "receiver.db"
    a.send(a.document(b.code))
    with client_for(hub, b, state=state) as receiver:
        (first,) = receiver.deliveries(timeout=10, limit=1)
        # the hub publishes the same delivery again (as after a crash of its own)
        publish_delivery(hub, b.code, first.body, sender=a.code, delivery_id=first.delivery_id)
        assert list(receiver.deliveries(timeout=1.0)) == []
    publish_delivery(hub, b.code, first.body, sender=a.code, delivery_id=first.delivery_id)
    with client_for(hub, b, state=state) as restarted:
        assert list(restarted.deliveries(timeout=1.0)) == []
    assert ready_messages(hub, provision.inbox_queue(b.code)) == 0  # acknowledged, not lost
    statuses = [m for m in a.drain() if m.type == "edxml.status"]
    assert len(statuses) == 1  # one status 01, whatever the copies


def status_receipt(client: NodeClient, code: str, timeout: float = 10.0) -> Receipt:
    """The hub's ``accepted`` receipt for a status ``code`` that ``client`` sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in client.receipts(timeout=0.2):
            if (item.receipt.kind, item.receipt.status_code) == ("accepted", code):
                return item.receipt
    raise AssertionError(f"no accepted receipt for a status {code} within {timeout} s")


def statuses_at(agency: Agency) -> list[bytes]:
    """The status packages the hub relayed to ``agency`` (its inbox drained)."""
    return [m.body for m in agency.drain(settle=1.0) if m.type == "edxml.status"]


class Crash(BaseException):
    """The process dies here: nothing after it runs, nothing is settled."""


def crash_in_handler(hub: Hub, agency: Agency, state) -> str:
    """Hand the delivery waiting for ``agency`` to a handler that dies after the 01 was
    accepted by the hub; its delivery id."""
    client = client_for(hub, agency, state=state)
    with client:
        stream = client.deliveries(timeout=10)
        delivery = next(stream)
        status_receipt(client, "01")  # the 01 went out before the handler: it is there
    # closed without settling, as a process that died: the broker has it back
    del stream
    return delivery.delivery_id


def test_status_01_is_sent_before_the_handler_runs(hub):
    a, b = pair(hub)
    with client_for(hub, a) as sender, client_for(hub, b) as receiver:
        sender.send(document_value(a.code, b.code))
        for delivery in receiver.deliveries(timeout=10, limit=1):
            # inside the handler: the hub already accepted the automatic 01
            assert status_receipt(receiver, "01").document_id == delivery.document_id
            receiver.send_status(delivery, "03")
        relayed = [d.status_code for d in sender.deliveries(timeout=10, limit=2)]
    assert sorted(relayed) == ["01", "03"]


@pytest.mark.parametrize("handler_returned", [False, True],
                         ids=["crash-in-handler", "crash-before-the-01-confirm"])
def test_one_01_per_delivery_across_a_crash(hub, tmp_path, handler_returned):
    a, b = pair(hub)
    state = tmp_path / "receiver.db"
    a.send(a.document(b.code))
    delivery_id = crash_in_handler(hub, b, state)
    if handler_returned:  # as if the handler had returned before the 01 was confirmed
        recorded = SqliteState(state)
        record = recorded.delivery(delivery_id)
        assert record.state == ARRIVING and record.arrival_body
        recorded.mark_handled(delivery_id, record.arrival_id, record.arrival_body)
        recorded.close()
    with client_for(hub, b, state=state) as restarted:
        handled = list(restarted.deliveries(timeout=1.5))
    if handler_returned:
        assert handled == []  # not handed out again: the handler had finished
    else:  # the handler never finished: the document is not lost
        assert [(d.delivery_id, d.redelivered) for d in handled] == [(delivery_id, True)]
    assert ready_messages(hub, provision.inbox_queue(b.code)) == 0
    (arrived,) = statuses_at(a)  # the 01 published again had the same id: dropped
    assert b"<edXML:StatusCode>01</edXML:StatusCode>" in arrived


def test_a_01_recorded_but_never_published_goes_out_on_redelivery(hub, tmp_path,
                                                                  monkeypatch):
    a, b = pair(hub)
    state = tmp_path / "receiver.db"
    a.send(a.document(b.code))
    def crash(*_args):
        raise Crash

    with client_for(hub, b, state=state) as client:
        monkeypatch.setattr(client, "_publish_arrival", crash)
        with pytest.raises(Crash):
            next(client.deliveries(timeout=10))
    assert statuses_at(a) == []  # recorded, but the process died before publishing it
    with sqlite3.connect(state) as db:
        ((delivery_id, recorded, body),) = db.execute(
            "SELECT delivery_id, state, arrival_body FROM deliveries").fetchall()
    assert recorded == ARRIVING
    with client_for(hub, b, state=state) as restarted:
        (again,) = restarted.deliveries(timeout=10, limit=1)
    assert again.delivery_id == delivery_id
    assert statuses_at(a) == [body]  # exactly the 01 recorded before the crash


def test_a_delivery_carries_its_attachments_decoded_from_the_one_parse(hub, monkeypatch):
    a, b = pair(hub)
    sent = (
        model.Attachment("cong-van.pdf", "application/pdf", b"%PDF-1.7\n" + os.urandom(400_000)),
        model.Attachment("phu-luc.xlsx", "application/vnd.openxmlformats-officedocument."
                         "spreadsheetml.sheet", os.urandom(70_001)),
        model.Attachment("ghi-chu.txt", "text/plain", "Ghi chú có dấu\n".encode(),
                         description="Ghi chú"),
    )
    document = dataclasses.replace(document_value(a.code, b.code), attachments=sent)
    loaded, decoded = [], []
    load_tree, from_tree = inbound.load_tree, envelope.from_tree

    def counting_load(body, *args):
        tree = load_tree(body, *args)
        loaded.append(tree.getroot())
        return tree

    def counting_read(tree, *, attachment_data=True):
        if attachment_data:  # the hub's own reads (in this process) decode nothing
            decoded.append(tree.getroot())
        return from_tree(tree, attachment_data=attachment_data)

    monkeypatch.setattr(inbound, "load_tree", counting_load)
    monkeypatch.setattr(envelope, "from_tree", counting_read)
    with client_for(hub, a) as sender, client_for(hub, b) as receiver:
        sender.send(document)
        (delivery,) = receiver.deliveries(timeout=10, limit=1)
    got = delivery.package.attachments
    assert [(x.name, x.content_type, x.content_id, x.description) for x in got] == [
        (x.name, x.content_type, x.content_id, x.description) for x in sent]
    assert [x.data for x in got] == [x.data for x in sent]
    # decoded from the tree the signature was verified on: one parse of the body
    assert len(loaded) == 1 and len(decoded) == 1 and decoded[0] is loaded[0]

    a.send(a.signer.sign(build(dataclasses.replace(
        document, document_id=document.document_id + "-2"))))
    with client_for(hub, b, attachment_data=False) as lean:
        (listed,) = lean.deliveries(timeout=10, limit=1)
    assert [x.name for x in listed.package.attachments] == [x.name for x in sent]
    assert all(x.data == b"" for x in listed.package.attachments)


def test_a_delivery_that_does_not_verify_is_dead_lettered(hub):
    a, b = pair(hub)
    rogue_key, rogue_root = pki.create_root("VDX TEST Rogue Root", ec_key=True)
    key, cert = pki.issue_agency_certificate(rogue_key, rogue_root, a.code, "Giả mạo",
                                             ec_key=True)
    forged = Signer(key, cert).sign(build(document_value(a.code, b.code)))
    genuine = a.document(b.code)
    dead_before = ready_messages(hub, provision.DEAD_QUEUE)
    refused = []
    with client_for(hub, b, on_refused=refused.append) as receiver:
        publish_delivery(hub, b.code, forged, sender=a.code, delivery_id=_uuid())
        # genuinely signed by A, but the "hub" says it came from someone else
        publish_delivery(hub, b.code, genuine, sender="000.00.00.H99", delivery_id=_uuid())
        assert list(receiver.deliveries(timeout=1.5)) == []
    assert sorted(r.code for r in refused) == ["signature.untrusted_certificate",
                                               "signature.wrong_signer"]
    assert ready_messages(hub, provision.DEAD_QUEUE) == dead_before + 2


def test_statuses_03_and_06_reach_the_sender(hub):
    a, b = pair(hub)
    with client_for(hub, a) as sender, client_for(hub, b) as receiver:
        sender.send(document_value(a.code, b.code))
        (delivery,) = receiver.deliveries(timeout=10, limit=1)
        registered = receiver.send_status(delivery, "03")
        finished = receiver.send_status(delivery, "06", "Đã xử lý xong")
        for submission, code in ((registered, "03"), (finished, "06")):
            receipt = receiver.wait_for_receipt(submission, timeout=10)
            assert (receipt.kind, receipt.status_code) == ("accepted", code)
        statuses = {d.status_code: d for d in sender.deliveries(timeout=10, limit=3)}
    assert sorted(statuses) == ["01", "03", "06"]
    assert statuses["06"].package.description == "Đã xử lý xong"
    assert statuses["03"].package.description == model.STATUS_MEANINGS["03"][0]
    assert {d.document_id for d in statuses.values()} == {delivery.document_id}
    with pytest.raises(ValueError, match="status code"):
        receiver.send_status(delivery, "99")


# ------------------------------------------------------------------------ receipt checks


@pytest.fixture(scope="module")
def hub_signer() -> Signer:
    key, cert = pki.create_root("VDX TEST Hub", ec_key=True)
    return Signer(key, cert)


def _receipt() -> Receipt:
    return Receipt.accepted("test-hub", "000.00.00.G22", "doc-1", "a" * 64)


def test_a_receipt_verifies_only_with_the_hub_certificate(hub_signer):
    signed = sign_receipt(_receipt(), hub_signer.sign_receipt)
    assert verify_receipt(signed, hub_signer.certificate) == parse_receipt(signed)
    _key, other = pki.create_root("VDX TEST Other", ec_key=True)
    with pytest.raises(SignatureError) as wrong_key:
        verify_receipt(signed, other)
    assert wrong_key.value.code == "signature.invalid"
    tampered = signed.replace(b"doc-1", b"doc-2")
    with pytest.raises(SignatureError) as edited:
        verify_receipt(tampered, hub_signer.certificate)
    assert edited.value.code == "signature.digest_mismatch"


def test_an_unsigned_receipt_is_refused_when_the_hub_certificate_is_known(hub_signer):
    unsigned = build_receipt(_receipt())
    with pytest.raises(SignatureError) as missing:
        verify_receipt(unsigned, hub_signer.certificate)
    assert missing.value.code == "signature.missing"
    assert verify_receipt(unsigned, None).document_id == "doc-1"  # no certificate: parsed


def _uuid() -> str:
    return str(uuid.uuid4())

