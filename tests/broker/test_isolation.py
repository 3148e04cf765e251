"""What a node's broker account can and cannot do, tried on the real RabbitMQ.

Two nodes, A and B, provisioned exactly as ``vdx node register`` does. A may publish to
``vdx.submit`` as itself and read its own inbox and receipts queue; everything else is
refused by the broker (403 ACCESS_REFUSED, or 406 PRECONDITION_FAILED for a forged
``user_id``), except a passive declare on brokers before 4.2.6 (see the last test).
"""

from __future__ import annotations

from collections.abc import Callable

import pika
import pika.exceptions
import pytest

from tests.support.registry import amqp_url_for, temp_vhost, unique_code
from vdx.broker import provision

pytestmark = pytest.mark.rabbitmq
ACCESS_REFUSED, PRECONDITION_FAILED = 403, 406


class World:
    def __init__(self, api: provision.ManagementApi, vhost: str) -> None:
        self.api, self.vhost = api, vhost
        # Accounts, named per vhost: the user_id the broker stamps on a node's messages.
        self.code_a, self.code_b = unique_code(), unique_code()
        self.a = provision.node_account(self.code_a, vhost)
        self.b = provision.node_account(self.code_b, vhost)
        self.passwords = {provision.node_account(code, vhost):
                          provision.provision_node(api, vhost, code).password
                          for code in (self.code_a, self.code_b)}
        self.connection = self.connect(self.a)
        self.hub = self.connect(api.settings.user, api.settings.password)

    def connect(self, user: str, password: str | None = None) -> pika.BlockingConnection:
        url = amqp_url_for(self.api, self.vhost, user, password or self.passwords[user])
        return pika.BlockingConnection(pika.URLParameters(url + "?connection_attempts=1"))

    def channel(self, connection: pika.BlockingConnection | None = None):
        channel = (connection or self.connection).channel()
        channel.confirm_delivery()
        return channel

    def close(self) -> None:
        for connection in (self.connection, self.hub):
            if connection.is_open:
                connection.close()


@pytest.fixture(scope="module")
def world():
    with temp_vhost() as (api, vhost):
        w = World(api, vhost)
        try:
            yield w
        finally:
            w.close()


def refusal(world: World, action: Callable[[object], object]) -> int:
    """Run ``action(channel)`` as node A on a fresh channel; the broker's reply code."""
    channel = world.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        action(channel)
    return info.value.reply_code


def as_user(user_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(user_id=user_id, delivery_mode=2)


# ---------------------------------------------------------------- what it may do


def test_a_node_submits_as_itself_and_the_hub_receives_it(world):
    channel = world.channel()
    channel.basic_publish("vdx.submit", world.code_a, b"<edXML/>", as_user(world.a))
    hub = world.hub.channel()
    method, props, body = hub.basic_get(f"vdx.hub.submit.{world.code_a}", auto_ack=True)
    assert (body, props.user_id) == (b"<edXML/>", world.a)


def test_a_node_publishes_only_with_its_own_routing_key(world):
    """The broker enforces it (topic permission): a node can fill no other node's submit
    queue, nor the shared one through a key no node's queue is bound to."""
    for key in (world.code_b, "document", "#", f"{world.code_a}.x", ""):
        code = refusal(world, lambda ch, k=key: ch.basic_publish("vdx.submit", k, b"x",
                                                                 as_user(world.a)))
        assert code == ACCESS_REFUSED, key


def test_cannot_consume_any_submit_queue(world):
    for queue in (f"vdx.hub.submit.{world.code_b}", f"vdx.hub.submit.{world.code_a}"):
        assert refusal(world, lambda ch, q=queue: ch.basic_get(q)) == ACCESS_REFUSED
        assert refusal(world, lambda ch, q=queue: ch.basic_consume(
            q, lambda *a: None)) == ACCESS_REFUSED


def test_a_nodes_account_has_connection_and_channel_caps(world):
    assert provision.user_limits(world.api, world.a) == {
        "max-connections": provision.NODE_MAX_CONNECTIONS,
        "max-channels": provision.NODE_MAX_CHANNELS}


def test_a_node_reads_its_own_inbox(world):
    hub = world.channel(world.hub)
    hub.basic_publish("vdx.deliver", world.code_a, b"for A", mandatory=True)
    method, _, body = world.channel().basic_get(f"vdx.node.{world.code_a}.inbox", auto_ack=False)
    assert body == b"for A"


def test_a_node_reads_its_own_receipts_queue(world):
    hub = world.channel(world.hub)
    hub.basic_publish("vdx.receipts", world.code_a, b"receipt for A", mandatory=True)
    _, _, body = world.channel().basic_get(f"vdx.node.{world.code_a}.receipts", auto_ack=True)
    assert body == b"receipt for A"
    # Nothing of it went to the inbox: a receipt's path is its own.
    assert world.channel().basic_get(inbox(world.code_a), auto_ack=False)[0] is None


# -------------------------------------------------------------- what it may not do


def test_cannot_consume_or_get_another_nodes_receipts_queue(world):
    other = f"vdx.node.{world.code_b}.receipts"
    assert refusal(world, lambda ch: ch.basic_get(other)) == ACCESS_REFUSED
    assert refusal(world, lambda ch: ch.basic_consume(other, lambda *a: None)) == ACCESS_REFUSED
    assert refusal(world, lambda ch: ch.queue_purge(other)) == ACCESS_REFUSED
    assert refusal(world, lambda ch: ch.queue_delete(f"vdx.node.{world.code_a}.receipts")) \
        == ACCESS_REFUSED


def test_cannot_consume_or_get_another_nodes_inbox(world):
    other = f"vdx.node.{world.code_b}.inbox"
    assert refusal(world, lambda ch: ch.basic_get(other)) == ACCESS_REFUSED
    assert refusal(world, lambda ch: ch.basic_consume(other, lambda *a: None)) == ACCESS_REFUSED
    assert refusal(world, lambda ch: ch.queue_purge(other)) == ACCESS_REFUSED


def test_cannot_read_the_hubs_queues(world):
    for queue in ("vdx.hub.submit", "vdx.hub.dead"):
        assert refusal(world, lambda ch, q=queue: ch.basic_get(q)) == ACCESS_REFUSED


def test_cannot_publish_to_deliver_or_the_dead_letter_exchange(world):
    for exchange in ("vdx.deliver", "vdx.receipts", "vdx.dlx", "amq.direct", "amq.topic"):
        code = refusal(world, lambda ch, ex=exchange: ch.basic_publish(
            ex, world.code_b, b"forged delivery", as_user(world.a)))
        assert code == ACCESS_REFUSED, exchange


def test_cannot_publish_through_the_default_exchange(world):
    for queue in (f"vdx.node.{world.code_b}.inbox", f"vdx.node.{world.code_a}.inbox",
                  "vdx.hub.submit"):
        code = refusal(world, lambda ch, q=queue: ch.basic_publish("", q, b"x", as_user(world.a)))
        assert code == ACCESS_REFUSED, queue


def test_cannot_publish_as_another_node(world):
    code = refusal(world, lambda ch: ch.basic_publish("vdx.submit", world.code_a, b"x",
                                                      as_user(world.b)))
    assert code == PRECONDITION_FAILED


def inbox(code: str) -> str:
    return f"vdx.node.{code}.inbox"


@pytest.mark.parametrize("name,action", [
    ("declare a queue", lambda ch, w: ch.queue_declare("sneaky", durable=True)),
    ("declare a server-named queue", lambda ch, w: ch.queue_declare("", exclusive=True)),
    ("declare an exchange", lambda ch, w: ch.exchange_declare("sneaky", "fanout")),
    ("redeclare vdx.submit",
     lambda ch, w: ch.exchange_declare("vdx.submit", "topic", durable=True)),
    ("delete its own inbox", lambda ch, w: ch.queue_delete(inbox(w.code_a))),
    ("delete another inbox", lambda ch, w: ch.queue_delete(inbox(w.code_b))),
    ("delete vdx.submit", lambda ch, w: ch.exchange_delete("vdx.submit")),
    ("bind its inbox to vdx.submit",
     lambda ch, w: ch.queue_bind(inbox(w.code_a), "vdx.submit", "#")),
    ("bind vdx.deliver into vdx.submit",
     lambda ch, w: ch.exchange_bind("vdx.submit", "vdx.deliver", "#")),
    ("unbind its inbox",
     lambda ch, w: ch.queue_unbind(inbox(w.code_a), "vdx.deliver", w.code_a)),
])
def test_cannot_declare_delete_or_bind_anything(world, name, action):
    assert refusal(world, lambda channel: action(channel, world)) == ACCESS_REFUSED, name
    assert world.api.get(f"queues/{world.vhost}/{inbox(world.code_a)}") is not None


def test_cannot_use_the_management_api(world):
    from vdx.errors import TransportError

    settings = world.api.settings
    api = provision.ManagementApi(provision.BrokerSettings(
        settings.api_url, world.a, world.passwords[world.a]), timeout=5)
    with pytest.raises(TransportError, match="401"):
        api.get("overview")


def test_a_closed_account_cannot_connect(world):
    code = unique_code()
    account = provision.node_account(code, world.vhost)
    password = provision.provision_node(world.api, world.vhost, code).password
    world.passwords[account] = password
    world.connect(account).close()
    provision.close_node_account(world.api, world.vhost, code)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        world.connect(account)


def test_nonstandard_codes_are_isolated_alike(world):
    """A code outside the official forms (vxp.saas.03) is a registered node's whole name:
    its account reads only its own inbox, not even that of a code it is a prefix of."""
    import secrets

    short = f"vxp.saas.t{secrets.token_hex(3)}"
    long = f"{short}.inbox"  # its queue is vdx.node.<short>.inbox.inbox
    for code in (short, long):
        world.passwords[provision.node_account(code, world.vhost)] = \
            provision.provision_node(world.api, world.vhost, code).password
    hub = world.channel(world.hub)
    for code in (short, long):
        hub.basic_publish("vdx.deliver", code, f"for {code}".encode(), mandatory=True)
    account = provision.node_account(short, world.vhost)
    connection = world.connect(account)
    try:
        channel = connection.channel()
        _, _, body = channel.basic_get(inbox(short), auto_ack=True)
        assert body == f"for {short}".encode()
        channel.confirm_delivery()
        channel.basic_publish("vdx.submit", short, b"<edXML/>", as_user(account))
        for other in (inbox(long), inbox(world.code_a)):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                connection.channel().basic_get(other)
            assert info.value.reply_code == ACCESS_REFUSED, other
    finally:
        connection.close()
    method, props, _ = world.hub.channel().basic_get(f"vdx.hub.submit.{short}", auto_ack=True)
    assert props.user_id == account


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("+")[0].split("-")[0].split(".")[:3])


def test_passive_declare_of_another_inbox_leaks_counts_before_rabbitmq_4_2_6(world):
    """A known broker limit, shown as it is (vdx.broker.provision, "Known limit").

    RabbitMQ before 4.2.6 / 4.3.0 checks no permission on a passive queue.declare, so
    node A reads B's inbox's message and consumer counts (nothing else). From those
    versions on (rabbitmq-server #16085, #16272) it is refused: this test then asserts the
    refusal, so an upgrade flips what it checks instead of hiding the change."""
    hub = world.channel(world.hub)
    hub.basic_publish("vdx.deliver", world.code_b, b"for B", mandatory=True)
    version = _version(world.api.get("overview")["rabbitmq_version"])
    for queue in (inbox(world.code_b), f"vdx.node.{world.code_b}.receipts"):
        if version < (4, 2, 6):
            ok = world.channel().queue_declare(queue, passive=True)
            assert ok.method.queue == queue
            if queue == inbox(world.code_b):
                assert ok.method.message_count >= 1  # B's traffic, seen by A
        else:
            assert refusal(world, lambda ch, q=queue: ch.queue_declare(q, passive=True)) \
                == ACCESS_REFUSED
