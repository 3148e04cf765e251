"""The hub ↔ node wire contract (vdx.broker.wire) and the link's pure parts: no broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vdx.broker import wire
from vdx.broker.channel import addresses, broker_user, vhost_of
from vdx.broker.link import Backoff, fatal

AT = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)


def test_a_delivery_carries_the_hubs_trace_under_its_delivery_id():
    message = wire.delivery("hub-1", "d-1", "000.00.00.H41", b"<edXML/>", kind="document",
                            sender="000.00.00.G22", document_id="G22,2026/11/22,1/UBND",
                            received_at=AT)
    assert (message.exchange, message.routing_key) == (wire.DELIVER_EXCHANGE, "000.00.00.H41")
    assert (message.message_id, message.type, message.body) == ("d-1", "edxml.document",
                                                                b"<edXML/>")
    assert message.headers == {
        "x-vdx-hub": "hub-1", "x-vdx-hop": 1, "x-vdx-delivery-id": "d-1",
        "x-vdx-sender": "000.00.00.G22", "x-vdx-document-id": "G22,2026/11/22,1/UBND",
        "x-vdx-kind": "document", "x-vdx-received-at": AT.isoformat()}
    assert wire.delivery("hub-1", "d-2", "R", b"", kind="status", sender="S",
                         document_id="D", received_at=AT).type == "edxml.status"


def test_a_receipt_is_typed_and_names_its_kind_and_document():
    message = wire.receipt("hub-1", "r-1", "000.00.00.G22", b"<Receipt/>", kind="accepted",
                           document_id=None)
    assert (message.exchange, message.routing_key, message.message_id, message.type) == (
        wire.RECEIPTS_EXCHANGE, "000.00.00.G22", "r-1", "vdx.receipt")
    assert message.headers == {"x-vdx-hub": "hub-1", "x-vdx-hop": 1,
                               "x-vdx-receipt-kind": "accepted", "x-vdx-document-id": ""}


def test_each_published_copy_is_stamped_without_changing_the_message():
    message = wire.receipt("hub-1", "r-1", "A", b"x", kind="accepted", document_id="D")
    stamped = wire.published(message, AT)
    assert stamped.headers == message.headers | {"x-vdx-published-at": AT.isoformat()}
    assert "x-vdx-published-at" not in message.headers
    assert (stamped.message_id, stamped.body) == (message.message_id, message.body)


def test_submissions_say_where_they_come_from():
    sdk = wire.submission("000.00.00.H41", b"p", "m-1", kind=None, user_id="000.00.00.H41",
                          client="vdx-sdk/1.0")
    assert (sdk.exchange, sdk.routing_key, sdk.type, sdk.user_id) == (
        wire.SUBMIT_EXCHANGE, "000.00.00.H41", "edxml", "000.00.00.H41")
    assert sdk.headers == {"x-vdx-client": "vdx-sdk/1.0"}
    assert wire.submission("A", b"", "m", kind="status", user_id="A",
                           client="c").type == "edxml.status"
    gateway = wire.gateway_submission("000.00.00.H41", b"p", "doc-1", kind="edoc",
                                      user_id="vdx.gateway", system="dms.1",
                                      signed_by_gateway=True)
    assert (gateway.type, gateway.user_id, gateway.message_id) == ("edxml.document",
                                                                   "vdx.gateway", "doc-1")
    assert gateway.headers == {"x-vdx-gateway-system": "dms.1",
                               "x-vdx-signed-by-gateway": "true"}
    assert wire.gateway_submission("A", b"", "d", kind="status", user_id="g", system="s",
                                   signed_by_gateway=False).type == "edxml.status"
    assert wire.read_submission(gateway.headers) == wire.Submitted(None, "dms.1", True)
    assert wire.read_submission(sdk.headers) == wire.Submitted("vdx-sdk/1.0", None, False)


def test_what_reaches_an_inbox_is_read_by_its_type():
    delivery = wire.delivery("hub-1", "d-1", "R", b"", kind="status", sender="S",
                             document_id="D", received_at=AT)
    read = wire.read_from_hub(delivery.type, delivery.message_id, delivery.headers)
    assert read.is_delivery and not read.is_receipt
    assert (read.kind, read.delivery_id, read.sender, read.document_id, read.received_at,
            read.hub) == ("status", "d-1", "S", "D", AT.isoformat(), "hub-1")
    receipt = wire.receipt("hub-1", "r-1", "A", b"", kind="rejected", document_id="D")
    read = wire.read_from_hub(receipt.type, receipt.message_id, receipt.headers)
    assert read.is_receipt and not read.is_delivery
    assert (read.receipt_kind, read.delivery_id, read.document_id) == ("rejected", None, "D")


@pytest.mark.parametrize("type_, headers", [
    (None, {"x-vdx-delivery-id": "d", "x-vdx-receipt-kind": "accepted"}),  # headers alone
    ("edxml", {}), ("text/plain", {}), ("", None)])
def test_a_message_of_no_known_type_is_neither_delivery_nor_receipt(type_, headers):
    read = wire.read_from_hub(type_, "m", headers)
    assert read.kind is None and not read.is_delivery and not read.is_receipt


def test_the_reader_takes_what_the_broker_hands_over():
    # No delivery-id header: the message id is the delivery's id. A long string that is
    # not UTF-8 comes from pika as bytes.
    read = wire.read_from_hub("edxml.document", "m-1", {"x-vdx-sender": b"S\xff"})
    assert (read.delivery_id, read.sender, read.received_at) == ("m-1", "S\ufffd", None)


def test_inbox_names_go_both_ways():
    assert wire.inbox_queue("000.00.00.H41") == "vdx.node.000.00.00.H41.inbox"
    assert wire.inbox_node("vdx.node.000.00.00.H41.inbox") == "000.00.00.H41"
    assert wire.inbox_node(wire.SUBMIT_QUEUE) is None
    assert wire.receipts_queue("000.00.00.H41") == "vdx.node.000.00.00.H41.receipts"
    assert wire.receipts_node("vdx.node.000.00.00.H41.receipts") == "000.00.00.H41"
    assert wire.receipts_node(wire.inbox_queue("000.00.00.H41")) is None
    assert wire.inbox_node(wire.receipts_queue("000.00.00.H41")) is None
    assert wire.node_account("000.00.00.H41", "/") == "000.00.00.H41"
    assert wire.node_account("000.00.00.H41", "hub-a") == "000.00.00.H41@hub-a"


def test_the_broker_is_a_list_of_addresses():
    one = "amqp://u:p@10.0.0.1:5672/%2F"
    assert addresses(one) == (one,)
    assert addresses(f" {one} , amqp://u:p%2Cq@10.0.0.2:5673/hub ,") == (
        one, "amqp://u:p%2Cq@10.0.0.2:5673/hub")
    assert addresses([one]) == (one,)
    assert broker_user("amqp://000.00.00.H41%40hub:p@h/hub,amqp://x:y@h2/hub") \
        == "000.00.00.H41@hub"
    assert (vhost_of(one), vhost_of("amqp://h/hub%2Fa"), vhost_of("amqp://h")) == (
        "/", "hub/a", "/")
    with pytest.raises(ValueError):
        addresses(" , ")


def test_the_backoff_doubles_up_to_its_ceiling_and_starts_over_after_a_healthy_run():
    backoff = Backoff(start=0.5, maximum=4.0, healthy_after=10.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.ran(3.0)  # a short-lived connection: keep waiting longer
    assert backoff.next() == 4.0
    backoff.ran(11.0)
    assert [backoff.next(), backoff.next()] == [0.5, 1.0]


def test_a_refused_login_is_fatal_an_absent_broker_is_not():
    assert fatal("cannot connect: h:5672: ProbableAuthenticationError: ...ACCESS_REFUSED")
    assert not fatal("cannot connect: h:5672: AMQPConnectionError: ConnectionRefusedError")
    assert not fatal(None)
