"""One broker link for every program, on the real broker, given a list of addresses whose
first refuses connections: the hub worker, the SDK, the gateway's publisher and drainer."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import date
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest

from adapters.gateway.broker import InboxDrainer, InboxMessage, Publisher
from tests.support.hub import HUB_ID, Hub, running_hub
from vdx import store
from vdx.broker import wire
from vdx.broker.link import Link
from vdx.client.node import NodeClient
from vdx.core import model
from vdx.errors import TransportError
from vdx.hub.supervisor import load_services
from vdx.hub.worker import HubWorker, WorkerConfig

pytestmark = pytest.mark.rabbitmq


def refusing(url: str) -> str:
    """``url`` moved to a local port nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = urlsplit(url)
    login = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{login}@127.0.0.1:{port}"))


def two_addresses(url: str) -> str:
    return f"{refusing(url)},{url}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub("sqlite", tmp_path_factory.mktemp("link"), agencies=(),
                     start=False) as h:
        # The worker drives its own channel: the same addresses, in turn.
        h.worker = HubWorker(
            WorkerConfig(hub_id=HUB_ID, amqp_url=two_addresses(h.amqp_url), prefetch=100),
            store.session_factory(h.engine), load_services(h.config))
        h.thread = threading.Thread(target=h.worker.run_forever, daemon=True)
        h.thread.start()
        yield h


def ready_messages(hub: Hub, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(hub.amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def document_value(sender: str, recipient: str) -> model.DocumentPackage:
    return model.DocumentPackage(
        sender=model.Organization(sender), recipients=(model.Organization(recipient),),
        document_id=f"{sender},2026/11/22,{uuid.uuid4().hex[:8]}/LINK",
        code=model.Code("7", "LINK"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"), subject="Qua hai địa chỉ",
        signer=model.SignerInfo("Nguyễn Văn A"))


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_sdk_and_the_hub_fail_over_to_the_address_that_answers(hub):
    a, b = hub.add_agency("S01"), hub.add_agency("R01")
    sender = NodeClient(two_addresses(a.amqp_url), a.code, signer=a.signer,
                        trust=hub.pki.trust, hub_certificate=hub.admin.hub_certificate())
    receiver = NodeClient(two_addresses(b.amqp_url), b.code, signer=b.signer,
                          trust=hub.pki.trust, auto_arrival=False)
    started = time.monotonic()
    with sender, receiver:
        assert time.monotonic() - started < 5  # the refused address cost no backoff
        submission = sender.send(document_value(a.code, b.code))
        assert sender.wait_for_receipt(submission, timeout=30).kind == "accepted"
        (delivery,) = receiver.deliveries(timeout=20, limit=1)
        assert (delivery.sender, delivery.document_id) == (a.code, submission.document_id)


def test_every_address_must_log_in_as_the_node(hub):
    a = hub.add_agency("S02")
    other = hub.add_agency("S03")
    with pytest.raises(ValueError, match="not as node"):
        NodeClient(f"{a.amqp_url},{other.amqp_url}", a.code)


def test_a_refused_login_is_reported_at_once_with_every_address_tried(hub):
    bad = hub.amqp_url.replace("guest:guest@", "guest:wrong@", 1)
    link = Link(f"{refusing(hub.amqp_url)},{bad}")
    started = time.monotonic()
    with pytest.raises(TransportError) as refused:
        link.start(timeout=20)
    assert time.monotonic() - started < 10
    assert "ACCESS_REFUSED" in refused.value.message
    assert refused.value.message.count("127.0.0.1:") == 2


def test_a_message_the_broker_cannot_route_is_refused_like_a_nack(hub):
    link = Link(two_addresses(hub.amqp_url))
    link.start(timeout=10)
    try:
        lost = link.publish(wire.Outgoing(wire.DELIVER_EXCHANGE, "nobody.at.all", b"x",
                                          str(uuid.uuid4()), wire.RECEIPT, {}))
        assert lost.wait(10) and not lost.ok
        assert "could not route" in lost.error
        kept = link.publish(wire.Outgoing(wire.DELIVER_EXCHANGE, "nobody.at.all", b"x",
                                          str(uuid.uuid4()), wire.RECEIPT, {}))
        assert kept.wait(10) and "could not route" in kept.error  # each one on its own
        assert link.unconfirmed == 0
    finally:
        link.stop()


def test_the_gateway_publishes_and_drains_through_the_same_link(hub):
    a = hub.add_agency("G01")
    missing = "000.00.00.X99"
    stored: list[InboxMessage] = []
    failures = {"left": 1}

    def store_message(message: InboxMessage) -> None:
        if failures["left"]:  # the mailbox's database is down once: back to the queue
            failures["left"] -= 1
            raise RuntimeError("database unavailable")
        stored.append(message)

    url = two_addresses(hub.amqp_url)
    drainer = InboxDrainer(url, lambda: (a.code, missing), store_message, refresh=0.3)
    publisher = Publisher(url)
    drainer.start()
    try:
        # An inbox that does not exist is refused alone; the others are drained.
        assert drainer.ready.wait(15)
        assert list(drainer.refused) == [missing]
        delivery = wire.delivery(HUB_ID, str(uuid.uuid4()), a.code, b"<doc/>",
                                 kind="document", sender="000.00.00.G22",
                                 document_id="D-1", received_at=store.utcnow())
        publisher.publish(delivery)
        wait_until(lambda: len(stored) == 1)
        (message,) = stored
        assert (message.node_code, message.type, message.message_id, message.body) == (
            a.code, "edxml.document", delivery.message_id, b"<doc/>")
        read = wire.read_from_hub(message.type, message.message_id, message.headers)
        assert (read.sender, read.document_id) == ("000.00.00.G22", "D-1")
        # Acknowledged once stored: nothing is left in the queue, even after a stop.
        drainer.stop()
        assert ready_messages(hub, wire.inbox_queue(a.code)) == 0
        drainer.start()
        assert drainer.ready.wait(15)
        assert "NOT_FOUND" in drainer.refused[missing]
        # The missing inbox is tried again at each reading of the served nodes.
        connection = pika.BlockingConnection(pika.URLParameters(hub.amqp_url))
        try:
            channel = connection.channel()
            channel.queue_declare(wire.inbox_queue(missing), durable=True)
            channel.basic_publish("", wire.inbox_queue(missing), b"<late/>",
                                  pika.BasicProperties(delivery_mode=2, type=wire.STATUS,
                                                       message_id="late-1"))
        finally:
            connection.close()
        wait_until(lambda: len(stored) == 2)
        assert (stored[1].node_code, stored[1].message_id) == (missing, "late-1")
        # Its receipts queue is still missing, and said so; then it comes too.
        assert list(drainer.refused) == [missing]
        assert wire.receipts_queue(missing) in drainer.refused[missing]
        connection = pika.BlockingConnection(pika.URLParameters(hub.amqp_url))
        try:
            channel = connection.channel()
            channel.queue_declare(wire.receipts_queue(missing), durable=True)
            channel.basic_publish("", wire.receipts_queue(missing), b"<receipt/>",
                                  pika.BasicProperties(delivery_mode=2, type=wire.RECEIPT,
                                                       message_id="receipt-1"))
        finally:
            connection.close()
        wait_until(lambda: len(stored) == 3)
        assert (stored[2].node_code, stored[2].type) == (missing, wire.RECEIPT)
        assert drainer.refused == {}
        # An inbox deleted while consumed (a node revoked) is noticed, and tried again.
        connection = pika.BlockingConnection(pika.URLParameters(hub.amqp_url))
        try:
            connection.channel().queue_delete(wire.inbox_queue(missing))
            connection.channel().queue_delete(wire.receipts_queue(missing))
        finally:
            connection.close()
        wait_until(lambda: missing in drainer.refused)
    finally:
        drainer.stop()
        publisher.close()


def test_the_gateway_publisher_refuses_soon_when_no_address_answers(hub):
    publisher = Publisher(f"{refusing(hub.amqp_url)},{refusing(hub.amqp_url)}",
                          connect_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as refused:
            publisher.publish(wire.receipt(HUB_ID, "r", "nobody", b"", kind="accepted",
                                           document_id=None))
        assert refused.value.code == "transport.unavailable"
        assert "cannot publish to the broker as guest" in refused.value.message
        assert time.monotonic() - started < 5
    finally:
        publisher.close()
