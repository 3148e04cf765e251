"""Senders take turns, and a node's limits hold: on real RabbitMQ and a real database.

Each node's packages wait in its own submit queue; the worker takes one from each queue in
turn, so a burst from one node does not keep another node's package behind it. A node
over its limits gets ``transport.rate_limited`` before its signature is checked.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from tests.support.hub import HUB_ID, running_hub
from vdx import store
from vdx.broker import provision
from vdx.broker.wire import SUBMIT_QUEUE, Incoming
from vdx.hub.journal import DocumentRow
from vdx.hub.supervisor import load_services
from vdx.hub.worker import HubServices, HubWorker, WorkerConfig

pytestmark = pytest.mark.rabbitmq


def start_worker(hub, **config) -> None:
    hub.worker = HubWorker(WorkerConfig(hub_id=HUB_ID, amqp_url=hub.amqp_url, **config),
                           store.session_factory(hub.engine), load_services(hub.config))
    hub.thread = threading.Thread(target=hub.worker.run_forever, daemon=True)
    hub.thread.start()


def wait_for_documents(hub, count: int, timeout: float = 120.0) -> list[str]:
    """The senders of the first ``count`` documents the hub recorded, in its order."""
    deadline = time.monotonic() + timeout
    with store.session_factory(hub.engine)() as session:
        while time.monotonic() < deadline:
            if session.scalar(select(func.count()).select_from(DocumentRow)) >= count:
                return list(session.scalars(select(DocumentRow.sender)
                                            .order_by(DocumentRow.id)))
            session.rollback()
            time.sleep(0.2)
    raise AssertionError(f"the hub did not record {count} documents")


def test_a_burst_does_not_keep_another_nodes_package_behind_it(tmp_path):
    with running_hub("sqlite", tmp_path, agencies=("G22", "H41", "H49"), start=False) as hub:
        flood, lone, recipient = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
        packages = [flood.document(recipient.code) for _ in range(500)]
        for body in packages:
            flood.send(body)
        lone.send(lone.document(recipient.code))  # queued after the whole burst
        start_worker(hub, node_prefetch=10, batch_max=10)
        order = wait_for_documents(hub, 501)
        position = order.index(lone.code)
        # Behind the burst in one shared queue it would be 501st; taking turns, it goes
        # in one of the first batches (the flood's queue may be consumed a moment first).
        assert position < 60, position
        assert order.count(flood.code) == 500


def test_a_node_over_its_limits_is_refused_before_its_signature_is_checked(tmp_path):
    with running_hub("sqlite", tmp_path, agencies=("G22", "H41"), start=False) as hub:
        sender, recipient = hub.agency("G22"), hub.agency("H41")
        node = hub.admin.set_limits(sender.code, rate=0.001, burst=2)
        assert (node.rate_per_second, node.burst) == (0.001, 2)
        bodies = [sender.document(recipient.code) for _ in range(3)]
        tampered = bodies[2].replace(b"Th\xe1\xbb\xad nghi\xe1\xbb\x87m", b"Tampered!!", 1)
        assert tampered != bodies[2]
        for body in (*bodies[:2], tampered):
            sender.send(body)
        hub.start()
        got = sender.inbox(5)  # each accepted one is also delivered
        kinds = sorted((m.receipt.kind, m.receipt.error_code or "") for m in got)
        # The tampered one would be signature.digest_mismatch; it never got that far.
        assert kinds == [("accepted", ""), ("accepted", ""), ("delivered", ""),
                         ("delivered", ""), ("rejected", "transport.rate_limited")]


def test_a_daily_volume_limit_holds(tmp_path):
    with running_hub("sqlite", tmp_path, agencies=("G22", "H41"), start=False) as hub:
        sender, recipient = hub.agency("G22"), hub.agency("H41")
        first, second = (sender.document(recipient.code) for _ in range(2))
        hub.admin.set_limits(sender.code, max_bytes_per_day=len(first) + len(second) // 2)
        sender.send(first)
        sender.send(second)
        hub.start()
        kinds = sorted((m.receipt.kind, m.receipt.error_code or "") for m in sender.inbox(3))
        assert kinds == [("accepted", ""), ("delivered", ""),
                         ("rejected", "transport.rate_limited")]
        cleared = hub.admin.set_limits(sender.code, max_bytes_per_day=None)
        assert cleared.max_bytes_per_day is None
        sender.send(sender.document(recipient.code))
        assert sorted(m.receipt.kind for m in sender.inbox(2)) == ["accepted", "delivered"]


def test_a_worker_consumes_the_queue_of_a_node_registered_after_it_started(tmp_path):
    with running_hub("sqlite", tmp_path, agencies=("G22",)) as hub:
        newcomer = hub.add_agency("H50")
        queue = provision.submit_queue(newcomer.code)
        path = f"queues/{quote(hub.vhost, safe='')}/{quote(queue, safe='')}"
        deadline = time.monotonic() + 30
        while (hub.admin.api.get(path) or {}).get("consumers", 0) < 1:
            assert time.monotonic() < deadline, "no worker consumes the new node's queue"
            time.sleep(0.2)
        newcomer.send(newcomer.document(hub.agency("G22").code))
        assert sorted(m.receipt.kind for m in newcomer.inbox(2)) == ["accepted", "delivered"]
        assert hub.agency("G22").inbox(1)[0].type == "edxml.document"


def batches_of(waiting: dict[str, int], lately: tuple[str, ...] = (),
               **config) -> list[list[str]]:
    """The queues of each batch a worker takes from ``waiting`` (queue → messages), when
    the nodes of ``lately`` sent a moment ago too."""
    engine = store.make_engine("sqlite://")
    unused = HubServices(view=None, make_receipt=None, sign_hash=None)  # never called
    worker = HubWorker(WorkerConfig(hub_id=HUB_ID, amqp_url="amqp://unused", **config),
                       store.session_factory(engine), unused, channel=lambda **_: None)
    tag = 0
    for queue, count in waiting.items():
        for _ in range(count):
            tag += 1
            worker._waiting.setdefault(queue, deque()).append(
                Incoming(tag=tag, body=b"x", user_id=None, message_id=None,
                         redelivered=False, queue=queue))
            worker._waiting_count += 1
        worker._seen[queue] = time.monotonic()
    for queue in lately:  # other nodes that sent a moment ago, none waiting now
        worker._seen[queue] = time.monotonic()
    batches = []
    while worker._waiting:
        batches.append([m.queue for m in worker._take_batch()])
    engine.dispose()
    return batches


def test_a_flood_is_taken_in_short_batches_and_a_lone_package_in_a_shorter_one():
    flood, lone = "vdx.hub.submit.G22", "vdx.hub.submit.H41"
    # A node sending alone gets full batches (the throughput of one busy sender) …
    assert batches_of({flood: 7}, node_batch=3, batch_max=5) == [[flood] * 5, [flood] * 2]
    # … but while another node sends too, short ones: its next package waits behind
    # at most one of them.
    taking_turns = batches_of({flood: 7}, lately=(lone,), node_batch=3)
    assert taking_turns == [[flood] * 3, [flood] * 3, [flood]]
    together = batches_of({flood: 7, lone: 1}, node_batch=3)
    # With another node waiting, each takes one per batch: the lone package is not held
    # behind the flood's share.
    assert together[0] == [flood, lone]
    assert sum(len(b) for b in together) == 8


def test_the_shared_submit_queue_is_not_held_to_a_node_share():
    assert batches_of({SUBMIT_QUEUE: 25}, node_batch=3, batch_max=10) == [
        [SUBMIT_QUEUE] * 10, [SUBMIT_QUEUE] * 10, [SUBMIT_QUEUE] * 5]
