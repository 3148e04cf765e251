"""Queue lengths on the real broker: a full queue refuses (nacks) what is published to it,
and the publisher sees it; the limits are policies, so they reach queues declared before.
Also how ``vdx init`` moves a hub from the shared submit queue to one queue per node."""

from __future__ import annotations

import time
from urllib.parse import quote

import pika
import pytest

from tests.support.registry import amqp_url_for, temp_vhost, unique_code
from vdx.broker import provision

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def broker():
    with temp_vhost() as (api, vhost):
        yield api, vhost


def node_channel(api, vhost: str, code: str, password: str):
    url = amqp_url_for(api, vhost, provision.node_account(code, vhost), password)
    connection = pika.BlockingConnection(pika.URLParameters(url + "?connection_attempts=1"))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def publish_until_refused(channel, code: str, user: str, tries: int) -> int:
    """How many of ``tries`` publications the broker confirmed before the first nack."""
    for n in range(tries):
        try:
            channel.basic_publish("vdx.submit", code, f"<p{n}/>".encode(),
                                  pika.BasicProperties(user_id=user, delivery_mode=2))
        except pika.exceptions.NackError:
            return n
    return tries


def test_a_publication_beyond_the_length_is_nacked_also_for_queues_made_before(broker):
    api, vhost = broker
    code = unique_code()
    credentials = provision.provision_node(api, vhost, code)  # default lengths
    small = provision.QueueLimits(submit_messages=2, inbox_messages=1)
    provision.ensure_topology(api, vhost, provision.hub_topology(small))  # a policy change
    connection, channel = node_channel(api, vhost, code, credentials.password)
    try:
        # A quorum queue takes the publication that crosses its limit, then refuses.
        assert publish_until_refused(channel, code, provision.node_account(code, vhost),
                                     10) in (2, 3)
    finally:
        connection.close()
    # The inbox's policy, with reject-publish: the hub's delivery stays in its outbox.
    hub = pika.BlockingConnection(pika.URLParameters(
        amqp_url_for(api, vhost, api.settings.user, api.settings.password)))
    try:
        channel = hub.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.NackError):
            for n in range(3):
                channel.basic_publish("vdx.deliver", code, f"<d{n}/>".encode(),
                                      mandatory=True)
    finally:
        hub.close()


def test_the_default_lengths_are_policies_of_the_vhost(broker):
    api, vhost = broker
    policies = {p["name"]: p for p in api.get(f"policies/{quote(vhost, safe='')}")}
    defaults = provision.QueueLimits()
    assert policies["vdx-submit"]["definition"] == {
        "max-length": defaults.submit_messages, "max-length-bytes": defaults.submit_bytes,
        "overflow": "reject-publish"}
    assert policies["vdx-inbox"]["definition"]["max-length"] == defaults.inbox_messages
    assert policies["vdx-submit"]["apply-to"] == "queues"
    code = unique_code()
    import re
    for name in (provision.SUBMIT_QUEUE, provision.submit_queue(code)):
        assert re.match(policies["vdx-submit"]["pattern"], name), name
    assert re.match(policies["vdx-inbox"]["pattern"], provision.inbox_queue(code))
    assert policies["vdx-receipts"]["definition"] == {
        "max-length": defaults.receipts_messages, "max-length-bytes": defaults.receipts_bytes,
        "overflow": "reject-publish"}
    assert re.match(policies["vdx-receipts"]["pattern"], provision.receipts_queue(code))
    assert not re.match(policies["vdx-receipts"]["pattern"], provision.inbox_queue(code))
    assert not re.match(policies["vdx-inbox"]["pattern"], provision.receipts_queue(code))
    assert not re.match(policies["vdx-submit"]["pattern"], provision.DEAD_QUEUE)


def test_queue_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("VDX_SUBMIT_MAX_LENGTH", "5_000")
    monkeypatch.setenv("VDX_INBOX_MAX_BYTES", "1048576")
    monkeypatch.setenv("VDX_RECEIPTS_MAX_LENGTH", "300")
    limits = provision.QueueLimits.from_env()
    assert (limits.submit_messages, limits.inbox_bytes) == (5000, 1048576)
    assert limits.receipts_messages == 300
    assert limits.inbox_messages == provision.QueueLimits().inbox_messages
    monkeypatch.setenv("VDX_SUBMIT_MAX_LENGTH", "lots")
    with pytest.raises(provision.TransportError, match="VDX_SUBMIT_MAX_LENGTH"):
        provision.QueueLimits.from_env()


def test_a_hub_from_before_moves_to_per_node_queues_without_losing_a_package(broker):
    """The shared queue bound with ``#`` (the earlier layout) and a node without a queue of
    its own: the topology unbinds ``#``, the node's packages go meanwhile to the shared
    queue through the alternate exchange, and provisioning gives the node its queue."""
    api, vhost = broker
    v = quote(vhost, safe="")
    api.request("POST", f"bindings/{v}/e/vdx.submit/q/vdx.hub.submit",
                {"routing_key": "#", "arguments": {}})
    code = unique_code()
    credentials = provision.provision_node(api, vhost, code)
    api.delete(f"queues/{v}/{quote(provision.submit_queue(code), safe='')}")
    provision.ensure_topology(api, vhost)  # what `vdx init` does first
    assert api.get(f"bindings/{v}/e/vdx.submit/q/vdx.hub.submit") == []
    connection, channel = node_channel(api, vhost, code, credentials.password)
    user = provision.node_account(code, vhost)
    try:
        channel.basic_publish("vdx.submit", code, b"<before/>",
                              pika.BasicProperties(user_id=user, delivery_mode=2))
        provision.provision_node(api, vhost, code, create_user=False)  # then each node
        channel.basic_publish("vdx.submit", code, b"<after/>",
                              pika.BasicProperties(user_id=user, delivery_mode=2))
    finally:
        connection.close()
    hub = pika.BlockingConnection(pika.URLParameters(
        amqp_url_for(api, vhost, api.settings.user, api.settings.password)))
    try:
        channel = hub.channel()
        _, _, shared = channel.basic_get(provision.SUBMIT_QUEUE, auto_ack=True)
        _, _, own = channel.basic_get(provision.submit_queue(code), auto_ack=True)
        assert (shared, own) == (b"<before/>", b"<after/>")
        assert channel.basic_get(provision.SUBMIT_QUEUE, auto_ack=True)[0] is None
    finally:
        hub.close()


def test_a_revoked_nodes_submit_queue_is_unbound_and_dropped_once_empty(broker):
    api, vhost = broker
    v = quote(vhost, safe="")
    code = unique_code()
    provision.provision_node(api, vhost, code)
    provision.close_node_account(api, vhost, code)
    path = f"queues/{v}/{quote(provision.submit_queue(code), safe='')}"
    assert api.get(path) is not None  # the workers drain it first
    assert not provision.has_binding(api, vhost, provision.node_topology(code).bindings[1])
    deadline = time.monotonic() + 30  # until the broker's statistics report the queue
    while "messages" not in api.get(path):
        assert not provision.drop_submit_queue_if_empty(api, vhost, code)  # unknown: kept
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert provision.drop_submit_queue_if_empty(api, vhost, code)
    assert api.get(path) is None


def test_a_node_from_before_receipts_queues_gets_them_in_its_inbox_until_provisioned(broker):
    """A registry from before: the node has an inbox, no receipts queue and rights on its
    inbox only. Its receipts reach its inbox (``vdx.receipts``'s alternate exchange) until
    provisioning (what `vdx init` does for every node) gives it its receipts queue, from
    then on the receipts' only path; the queue's length is a policy like the inbox's."""
    api, vhost = broker
    v = quote(vhost, safe="")
    code = unique_code()
    account = provision.node_account(code, vhost)
    credentials = provision.provision_node(api, vhost, code)
    api.delete(f"queues/{v}/{quote(provision.receipts_queue(code), safe='')}")
    api.put(f"permissions/{v}/{quote(account, safe='')}", {
        "configure": "^$", "write": r"^vdx\.submit$",
        "read": f"^{provision.inbox_queue(code).replace('.', chr(92) + '.')}$"})
    hub = pika.BlockingConnection(pika.URLParameters(
        amqp_url_for(api, vhost, api.settings.user, api.settings.password)))
    try:
        channel = hub.channel()
        channel.confirm_delivery()
        channel.basic_publish("vdx.receipts", code, b"<r1/>", mandatory=True)
        connection, node = node_channel(api, vhost, code, credentials.password)
        try:
            assert node.basic_get(provision.inbox_queue(code), auto_ack=True)[2] == b"<r1/>"
        finally:
            connection.close()
        provision.provision_node(api, vhost, code, create_user=False)
        channel.basic_publish("vdx.receipts", code, b"<r2/>", mandatory=True)
        connection, node = node_channel(api, vhost, code, credentials.password)
        try:
            assert node.basic_get(provision.receipts_queue(code), auto_ack=True)[2] == b"<r2/>"
            assert node.basic_get(provision.inbox_queue(code), auto_ack=True)[0] is None
        finally:
            connection.close()
        # A receipts queue's length is a policy: a full one refuses, the hub sees it.
        provision.ensure_topology(api, vhost, provision.hub_topology(
            provision.QueueLimits(receipts_messages=1)))
        deadline = time.monotonic() + 10
        path = f"queues/{v}/{quote(provision.receipts_queue(code), safe='')}"
        while (api.get(path) or {}).get("policy") != "vdx-receipts" \
                or api.get(path).get("effective_policy_definition", {}).get("max-length") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(pika.exceptions.NackError):
            for n in range(3):
                channel.basic_publish("vdx.receipts", code, f"<r{n}/>".encode(),
                                      mandatory=True)
    finally:
        hub.close()
        provision.ensure_topology(api, vhost)  # back to the default lengths
