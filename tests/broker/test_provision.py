"""vdx.provision on the real RabbitMQ (a vhost of its own): topology, node accounts, their
passwords and their closing. Settings parsing runs without a broker."""

from __future__ import annotations

import json
import stat
from urllib.parse import quote

import pika
import pika.exceptions
import pytest

from tests.support.registry import amqp_url_for, temp_vhost, unique_code
from vdx.broker import provision
from vdx.broker.provision import BrokerSettings, ManagementApi
from vdx.errors import TransportError

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def broker():
    with temp_vhost() as (api, vhost):
        yield api, vhost


def connect(api: ManagementApi, vhost: str, user: str, password: str):
    return pika.BlockingConnection(pika.URLParameters(
        amqp_url_for(api, vhost, user, password) + "?connection_attempts=1&socket_timeout=5"))


# -------------------------------------------------------------------------- topology


def test_the_hub_topology_is_declared_as_designed(broker):
    api, vhost = broker
    provision.ensure_topology(api, vhost)  # a second time: idempotent
    types = {e.name: api.get(f"exchanges/{vhost}/{e.name}")["type"]
             for e in provision.HUB_TOPOLOGY.exchanges}
    assert types == {"vdx.submit": "topic", "vdx.deliver": "direct", "vdx.receipts": "direct",
                     "vdx.dlx": "fanout", "vdx.submit.unrouted": "fanout"}
    submit = api.get(f"queues/{vhost}/vdx.hub.submit")
    assert submit["durable"] and submit["type"] == "quorum"
    assert submit["arguments"]["x-delivery-limit"] == provision.SUBMIT_DELIVERY_LIMIT
    assert submit["arguments"]["x-dead-letter-exchange"] == "vdx.dlx"
    assert api.get(f"queues/{vhost}/vdx.hub.dead")["type"] == "quorum"
    for binding in provision.HUB_TOPOLOGY.bindings:
        assert provision.has_binding(api, vhost, binding)
    # Each node's packages go to its own queue; the shared one gets what no node's takes.
    assert api.get(f"bindings/{vhost}/e/vdx.submit/q/vdx.hub.submit") == []
    bindings = api.get(f"bindings/{vhost}/e/vdx.submit.unrouted/q/vdx.hub.submit")
    assert len(bindings) == 1  # re-running does not duplicate bindings
    assert api.get(f"exchanges/{vhost}/vdx.submit")["policy"] == "vdx-submit-unrouted"
    # A node without a receipts queue yet gets its receipts in its inbox.
    assert api.get(f"exchanges/{vhost}/vdx.receipts")["policy"] == "vdx-receipts-fallback"


def test_a_definition_with_other_settings_is_refused_with_the_fix(broker):
    api, vhost = broker
    changed = provision.Topology(queues=(provision.QueueSpec("vdx.hub.dead", {
        "x-queue-type": "quorum", "x-delivery-limit": 3}),))
    with pytest.raises(TransportError) as info:
        provision.ensure_topology(api, vhost, changed)
    assert "rabbitmqctl delete_queue vdx.hub.dead" in info.value.message
    assert "vdx init" in info.value.message


# ---------------------------------------------------------------------- node accounts


def test_a_node_gets_an_inbox_and_an_account_with_exactly_its_rights(broker):
    api, vhost = broker
    code = unique_code()
    user = provision.node_account(code, vhost)
    credentials = provision.provision_node(api, vhost, code)
    assert credentials is not None and credentials.username == user == f"{code}@{vhost}"
    assert len(credentials.password) >= 32 and code not in repr(credentials.password)
    assert "password" not in repr(credentials)
    assert api.get(f"users/{quote(user, safe='')}")["tags"] in ("", [])
    perms = api.get(f"permissions/{vhost}/{quote(user, safe='')}")
    escaped = code.replace('.', chr(92) + '.')
    assert (perms["configure"], perms["write"], perms["read"]) == (
        "^$", r"^vdx\.submit$",
        rf"^(vdx\.node\.{escaped}\.inbox|vdx\.node\.{escaped}\.receipts)$")
    for queue in (f"vdx.node.{code}.inbox", f"vdx.node.{code}.receipts"):
        found = api.get(f"queues/{vhost}/{queue}")
        assert found["type"] == "quorum" and found["durable"]
        assert found["arguments"]["x-dead-letter-exchange"] == "vdx.dlx"
    inbox, submit, receipts = provision.node_topology(code).bindings
    assert (receipts.exchange, receipts.queue, receipts.routing_key) == (
        "vdx.receipts", f"vdx.node.{code}.receipts", code)
    for binding in (inbox, submit, receipts):
        assert provision.has_binding(api, vhost, binding)
    connect(api, vhost, user, credentials.password).close()


def test_provisioning_again_keeps_the_password_unless_asked(broker):
    api, vhost = broker
    code = unique_code()
    user = provision.node_account(code, vhost)
    first = provision.provision_node(api, vhost, code)
    assert provision.provision_node(api, vhost, code) is None
    assert provision.provision_node(api, vhost, code, create_user=False) is None
    connect(api, vhost, user, first.password).close()
    open_connection = connect(api, vhost, user, first.password)
    second = provision.reset_password(api, vhost, code)
    assert second.password != first.password
    connect(api, vhost, user, second.password).close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(api, vhost, user, first.password)
    # The connection opened with the old password was closed by the reset.
    with pytest.raises(pika.exceptions.AMQPError):
        for _ in range(50):
            open_connection.process_data_events(time_limit=0.1)
    assert not open_connection.is_open


def test_repair_without_an_account_creates_none(broker):
    api, vhost = broker
    code = unique_code()
    assert provision.provision_node(api, vhost, code, create_user=False) is None
    assert not provision.account_exists(api, provision.node_account(code, vhost))
    assert api.get(f"queues/{vhost}/vdx.node.{code}.inbox") is not None


def test_closing_an_account_keeps_the_inbox_but_nothing_reaches_it(broker):
    api, vhost = broker
    code = unique_code()
    credentials = provision.provision_node(api, vhost, code)
    hub = connect(api, vhost, api.settings.user, api.settings.password)
    channel = hub.channel()
    channel.confirm_delivery()
    channel.basic_publish("vdx.deliver", code, b"undelivered", mandatory=True)
    provision.close_node_account(api, vhost, code)
    provision.close_node_account(api, vhost, code)  # idempotent
    assert not provision.account_exists(api, credentials.username)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(api, vhost, credentials.username, credentials.password)
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish("vdx.deliver", code, b"too late", mandatory=True)
    method, _, body = channel.basic_get(f"vdx.node.{code}.inbox", auto_ack=True)
    assert body == b"undelivered"
    hub.close()


def test_credentials_files_are_private(tmp_path):
    credentials = provision.Credentials("H41.T1", "s3cr3t/+", "/", "127.0.0.1", 5672)
    path = provision.write_credentials(tmp_path / "h41.json", credentials)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["amqp_url"] == "amqp://H41.T1:s3cr3t%2F%2B@127.0.0.1:5672/%2F"


# --------------------------------------------------------------- settings and failures


@pytest.mark.parametrize("env,expected", [
    ({}, ("http://127.0.0.1:15672", "guest", "guest", "/", "127.0.0.1", 5672)),
    ({"VDX_AMQP_URL": "amqp://hub:p%40ss@mq.local:5673/vdx"},
     ("http://mq.local:15672", "hub", "p@ss", "vdx", "mq.local", 5673)),
    ({"VDX_AMQP_URL": "amqp://hub:x@mq/%2F",
      "VDX_MANAGEMENT_URL": "https://admin:y@mgmt:443/rabbit/"},
     ("https://mgmt:443/rabbit", "admin", "y", "/", "mq", 5672)),
    # A cluster: a management endpoint per node unless given.
    ({"VDX_AMQP_URL": "amqp://hub:x@mq1:5701/vdx, amqp://hub:x@mq2:5702/vdx"},
     ("http://mq1:15672,http://mq2:15672", "hub", "x", "vdx", "mq1", 5701)),
    ({"VDX_AMQP_URL": "amqp://hub:x@mq1/vdx,amqp://hub:x@mq2/vdx",
      "VDX_MANAGEMENT_URL": "http://a:b@m1:15701,http://m2:15702"},
     ("http://m1:15701,http://m2:15702", "a", "b", "vdx", "mq1", 5672)),
])
def test_settings_come_from_the_amqp_and_management_urls(monkeypatch, env, expected):
    monkeypatch.delenv("VDX_AMQP_URL", raising=False)
    monkeypatch.delenv("VDX_MANAGEMENT_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = BrokerSettings.from_env()
    assert (s.api_url, s.user, s.password, s.vhost, s.amqp_host, s.amqp_port) == expected


def test_an_unreachable_api_says_what_to_check():
    api = ManagementApi(BrokerSettings("http://127.0.0.1:1", "guest", "guest"), timeout=2)
    with pytest.raises(TransportError) as info:
        api.get("overview")
    assert info.value.code == "transport.unavailable"
    assert "rabbitmq_management" in info.value.message


def test_provisioning_passes_over_a_dead_management_endpoint(broker):
    api, vhost = broker
    dead_first = ManagementApi(BrokerSettings(
        f"http://127.0.0.1:1,{api.settings.api_url}", api.settings.user,
        api.settings.password, vhost), timeout=2)
    assert dead_first.get(f"vhosts/{quote(vhost, safe='')}")["name"] == vhost
    assert dead_first._current == 1  # the live one is asked first from now on
    none_alive = ManagementApi(BrokerSettings("http://127.0.0.1:1,http://127.0.0.1:2",
                                              "guest", "guest"), timeout=2)
    with pytest.raises(TransportError) as info:
        none_alive.get("overview")
    assert "127.0.0.1:1" in info.value.message and "127.0.0.1:2" in info.value.message


def test_a_cluster_node_account_gets_every_node_address(monkeypatch):
    monkeypatch.setenv("VDX_AMQP_URL", "amqp://hub:x@mq1:5701/vdx,amqp://hub:x@mq2:5702/vdx")
    monkeypatch.delenv("VDX_MANAGEMENT_URL", raising=False)
    s = BrokerSettings.from_env()
    creds = provision.Credentials("H41.vdx", "pw", s.vhost, s.amqp_host, s.amqp_port,
                                  s.more_amqp)
    assert creds.amqp_url == ("amqp://H41.vdx:pw@mq1:5701/vdx,"
                              "amqp://H41.vdx:pw@mq2:5702/vdx")


def test_the_quorum_group_size_applies_when_a_queue_is_created(broker, monkeypatch):
    api, vhost = broker
    monkeypatch.setenv("VDX_QUORUM_SIZE", "1")
    code = unique_code()
    provision.ensure_topology(api, vhost, provision.node_topology(code))
    inbox = api.get(f"queues/{vhost}/vdx.node.{code}.inbox")
    assert inbox["arguments"]["x-quorum-initial-group-size"] == 1
    # An existing queue keeps its replicas: another size is no mismatch.
    monkeypatch.setenv("VDX_QUORUM_SIZE", "3")
    provision.ensure_topology(api, vhost, provision.node_topology(code))
    monkeypatch.setenv("VDX_QUORUM_SIZE", "three")
    with pytest.raises(TransportError) as info:
        provision.ensure_topology(api, vhost, provision.node_topology(code))
    assert "VDX_QUORUM_SIZE='three'" in info.value.message


def test_wrong_admin_credentials_say_so(broker):
    api, _ = broker
    wrong = ManagementApi(BrokerSettings(api.settings.api_url, "guest", "wrong"), timeout=5)
    with pytest.raises(TransportError) as info:
        wrong.get("overview")
    assert "refused user 'guest' (401)" in info.value.message
