"""Broker provisioning through the RabbitMQ management HTTP API (the broker-admin edge).

**Topology** (:func:`hub_topology`, declared by ``vdx init``):

- ``vdx.submit``, a *topic* exchange. Each node's packages carry its code as the routing
  key (:func:`vdx.broker.wire.submit_routing_key`) and are bound to a queue of the node's
  own, ``vdx.hub.submit.<code>`` (:func:`node_topology`), so that the hub's workers, which
  consume every node's queue, take turns between senders: a node that floods fills its own
  queue, not everyone's. What no node's queue takes (a code whose queue is not provisioned
  yet, a client of an older hub) goes through the exchange's alternate exchange
  ``vdx.submit.unrouted`` (set by a policy, which applies to an exchange declared before)
  to the shared queue ``vdx.hub.submit``, which the workers consume too: nothing is
  returned unroutable.
- ``vdx.deliver``, a *direct* exchange: routing key = recipient code, one binding per
  node inbox, so a delivery reaches exactly that inbox.
- ``vdx.receipts``, a *direct* exchange: routing key = the node's code, one binding per
  node receipts queue ``vdx.node.<code>.receipts`` (:func:`node_topology`), so that a node
  whose inbox is full of unread deliveries still learns the fate of what it sent (a
  consumer's prefetch counts per queue). Its alternate exchange (a policy) is
  ``vdx.deliver``: a node whose receipts queue is not provisioned yet gets its receipts in
  its inbox, as before receipts had a queue of their own.
- ``vdx.dlx``, a *fanout* dead-letter exchange into ``vdx.hub.dead``: whatever is
  dead-lettered lands there whatever its routing key.
- Quorum queues, durable: the submit queues with ``x-delivery-limit`` (a message that
  keeps killing workers is dead-lettered instead of looping) and at-least-once
  dead-lettering, ``vdx.hub.dead``, and per node ``vdx.node.<code>.inbox`` and
  ``vdx.node.<code>.receipts``, which dead-letter what the node's adapter rejects (no
  delivery limit: a recipient's restarts must never turn a document into a dead letter).
- **Lengths** (:class:`QueueLimits`, from the environment): policies give the submit
  queues, the inboxes and the receipts queues ``max-length`` and ``max-length-bytes``
  with ``reject-publish`` overflow, so a full queue refuses (nacks) a publication, which
  its publisher sees, instead of growing without bound or dropping what it holds (a
  quorum queue takes the one publication that crosses the limit and refuses the next).
  Policies, because a queue's arguments cannot change once it exists, and a policy
  applies to existing queues too.

**Node accounts.** Each node has one broker user, named after its code and the hub's
vhost (:func:`node_account`: ``000.00.00.G22`` in the default vhost,
``000.00.00.G22@training`` in vhost ``training``), and the registry records that name.
RabbitMQ refuses a message whose ``user_id`` property differs from the authenticated user,
and the hub requires ``user_id`` == the sender's recorded account, so tying the name to
the node is what makes "no node can publish as another" hold. Broker users are global
while vhosts are not: the vhost in the name keeps two hubs on one broker (production and
training) from ever sharing, resetting or deleting each other's accounts, and an account
that already holds rights in another vhost is never taken over
(:func:`provision_node` refuses it; :func:`close_node_account` only withdraws this
vhost's rights from it). Permissions in the hub's vhost are exactly
(:func:`node_permissions`): configure ``^$`` (declare or delete nothing), write
``^vdx\\.submit$`` (not the default exchange, not ``vdx.deliver``), read its own inbox
and receipts queue; and on ``vdx.submit`` a topic permission that allows its own code as
routing key and no other (:func:`node_topic_permission`), so a node can fill no other
node's queue. No tags, so no management access; a cap on its connections and channels
(:data:`NODE_MAX_CONNECTIONS`, :data:`NODE_MAX_CHANNELS`). Passwords come from
:mod:`secrets`, are returned once in :class:`Credentials` and never stored by the hub;
RabbitMQ keeps only its salted hash.

**Known limit: passive declares.** RabbitMQ before 4.2.6 / 4.3.0 checks no permission on
a *passive* ``queue.declare``, so any node account can read the message and consumer
counts of a queue whose name it knows, another node's inbox included (names follow from
agency codes, which are public). Nothing is read, written or consumed that way, but the
traffic of an agency (how much waits for it, whether its software is connected) shows.
The broker closed it upstream (rabbitmq-server #16085, #16272: a passive declare needs
some permission on the queue); run such a version where that matters.
``tests/broker/test_isolation.py`` shows which behaviour the broker in use has.

Every ``ensure_*`` function is idempotent (PUT of the same definition, binding POSTs that
do not duplicate), so a run that failed halfway is repaired by running it again. A
definition that exists with different settings is refused with the way to fix it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from vdx.broker.channel import DEFAULT_AMQP_URL, addresses

# The names are the wire contract's: one definition for the hub, the nodes and this.
from vdx.broker.wire import (
    DEAD_QUEUE,
    DELIVER_EXCHANGE,
    RECEIPTS_EXCHANGE,
    SUBMIT_EXCHANGE,
    SUBMIT_QUEUE,
    UNROUTED_EXCHANGE,
    inbox_queue,
    node_account,
    receipts_queue,
    submit_queue,
    submit_routing_key,
)
from vdx.errors import RegistryError, TransportError

DEAD_LETTER_EXCHANGE = "vdx.dlx"
# Above the hub's own poison threshold (vdx.hub.worker.POISON_AFTER): the hub refuses a poison
# message itself, with a receipt; the broker's limit is the backstop for a message that
# kills the worker process before it can count.
SUBMIT_DELIVERY_LIMIT = 10
# A node's software needs one or two connections (the SDK's link, a folder bridge) with
# a channel or two each; the caps stop a runaway client from exhausting the broker.
NODE_MAX_CONNECTIONS = 16
NODE_MAX_CHANNELS = 64


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker and its management API are, and the vhost the hub lives in."""

    api_url: str
    user: str
    password: str = field(repr=False)
    vhost: str = "/"
    amqp_host: str = "127.0.0.1"
    amqp_port: int = 5672
    amqp_user: str = "guest"  # the hub's own AMQP login (the management login may differ)

    # The other AMQP addresses of a cluster, (host, port) after the first: given to nodes.
    more_amqp: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_env(cls) -> BrokerSettings:
        """From ``$VDX_AMQP_URL`` (credentials, host and vhost: the hub's own connection;
        of a list of addresses, the first; the others are handed to nodes too) and
        ``$VDX_MANAGEMENT_URL`` (default ``http://<amqp host>:15672`` for each AMQP
        address; several separated by commas, tried in turn; credentials in the first, if
        any, override those of the AMQP URL)."""
        urls = [urlsplit(u) for u in addresses(os.environ.get("VDX_AMQP_URL")
                                               or DEFAULT_AMQP_URL)]
        amqp = urls[0]
        user, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
        amqp_user = user
        host = amqp.hostname or "127.0.0.1"
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        hosts = list(dict.fromkeys(u.hostname or "127.0.0.1" for u in urls))
        apis = [urlsplit(a) for a in addresses(os.environ.get("VDX_MANAGEMENT_URL")
                                               or ",".join(f"http://{h}:15672" for h in hosts))]
        if apis[0].username:
            user, password = unquote(apis[0].username), unquote(apis[0].password or "")
        api_urls = []
        for api in apis:
            netloc = api.hostname or host
            if api.port:
                netloc += f":{api.port}"
            api_urls.append(f"{api.scheme}://{netloc}{api.path.rstrip('/')}")
        more = tuple((u.hostname or "127.0.0.1", u.port or 5672) for u in urls[1:])
        return cls(",".join(api_urls), user, password, vhost, host, amqp.port or 5672,
                   amqp_user, more)

    @property
    def api_urls(self) -> tuple[str, ...]:
        """The management endpoints (``api_url`` may hold several, comma-separated)."""
        return tuple(u.strip() for u in self.api_url.split(",") if u.strip())


@dataclass(frozen=True)
class Credentials:
    """A node's broker login, returned once when created or reset. Never stored by the hub."""

    username: str
    password: str = field(repr=False)
    vhost: str
    host: str
    port: int
    more: tuple[tuple[str, int], ...] = ()  # a cluster's other nodes

    @property
    def amqp_url(self) -> str:
        """The URL an adapter connects with (it contains the password); for a cluster,
        one URL per node separated by commas (:func:`vdx.broker.channel.addresses`)."""
        login = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        vhost = quote(self.vhost, safe="")
        return ",".join(f"amqp://{login}@{host}:{port}/{vhost}"
                        for host, port in ((self.host, self.port), *self.more))

    def to_dict(self) -> dict[str, str | int]:
        return {"username": self.username, "password": self.password, "vhost": self.vhost,
                "host": self.host, "port": self.port, "amqp_url": self.amqp_url}


def write_credentials(path: str | Path, credentials: Credentials) -> Path:
    """Write ``credentials`` as JSON to ``path``, mode 0600 from the first byte."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(credentials.to_dict(), f, indent=2)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ----------------------------------------------------------------------- the topology


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: str


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class BindingSpec:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True)
class PolicySpec:
    """A policy of the vhost: ``definition`` applied to the ``apply_to`` objects (``queues``
    or ``exchanges``) whose name matches ``pattern``."""

    name: str
    pattern: str
    apply_to: str
    definition: Mapping[str, Any]


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[BindingSpec, ...] = ()
    policies: tuple[PolicySpec, ...] = ()
    # Bindings of an earlier layout, removed once the rest is in place.
    retired: tuple[BindingSpec, ...] = ()


@dataclass(frozen=True)
class QueueLimits:
    """How much a submit queue, an inbox and a receipts queue may hold before the broker
    refuses publications to it (``reject-publish``): messages and bytes of bodies.

    A node's submit queue fills only when the hub is down or that node floods; an inbox
    or a receipts queue fills when its node stops reading. The defaults hold days of a
    busy agency's traffic while keeping one node from filling the broker's disk (a
    receipt is a few kilobytes).
    """

    submit_messages: int = 100_000
    submit_bytes: int = 2 * 1024**3
    inbox_messages: int = 200_000
    inbox_bytes: int = 4 * 1024**3
    receipts_messages: int = 400_000
    receipts_bytes: int = 1024**3

    @classmethod
    def from_env(cls) -> QueueLimits:
        """The defaults, or ``$VDX_SUBMIT_MAX_LENGTH``, ``$VDX_SUBMIT_MAX_BYTES``,
        ``$VDX_INBOX_MAX_LENGTH``, ``$VDX_INBOX_MAX_BYTES``, ``$VDX_RECEIPTS_MAX_LENGTH``,
        ``$VDX_RECEIPTS_MAX_BYTES`` where set."""
        default = cls()
        names = {"submit_messages": "VDX_SUBMIT_MAX_LENGTH",
                 "submit_bytes": "VDX_SUBMIT_MAX_BYTES",
                 "inbox_messages": "VDX_INBOX_MAX_LENGTH", "inbox_bytes": "VDX_INBOX_MAX_BYTES",
                 "receipts_messages": "VDX_RECEIPTS_MAX_LENGTH",
                 "receipts_bytes": "VDX_RECEIPTS_MAX_BYTES"}
        values = {}
        for attr, env in names.items():
            raw = os.environ.get(env, "").strip()
            if not raw:
                values[attr] = getattr(default, attr)
                continue
            try:
                values[attr] = int(raw.replace("_", ""))
            except ValueError:
                values[attr] = -1
            if values[attr] < 1:
                raise TransportError("transport.unavailable",
                                     f"{env}={raw!r} is not a positive whole number")
        return cls(**values)


SUBMIT_QUEUE_ARGUMENTS: Mapping[str, Any] = {
    "x-queue-type": "quorum",
    "x-delivery-limit": SUBMIT_DELIVERY_LIMIT,
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    # At-least-once: a dead letter is kept until vdx.hub.dead confirms it (RabbitMQ
    # 3.10+); that strategy requires reject-publish on overflow.
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}

SUBMIT_POLICY, INBOX_POLICY, UNROUTED_POLICY = "vdx-submit", "vdx-inbox", "vdx-submit-unrouted"
RECEIPTS_POLICY, RECEIPTS_FALLBACK_POLICY = "vdx-receipts", "vdx-receipts-fallback"


def hub_policies(limits: QueueLimits) -> tuple[PolicySpec, ...]:
    """The vhost's policies: queue lengths, and the alternate exchanges of ``vdx.submit``
    and ``vdx.receipts``."""
    return (
        PolicySpec(SUBMIT_POLICY, f"^{re.escape(SUBMIT_QUEUE)}(\\..+)?$", "queues",
                   {"max-length": limits.submit_messages,
                    "max-length-bytes": limits.submit_bytes, "overflow": "reject-publish"}),
        PolicySpec(INBOX_POLICY, f"^{re.escape(inbox_queue('X')).replace('X', '.+')}$",
                   "queues", {"max-length": limits.inbox_messages,
                              "max-length-bytes": limits.inbox_bytes,
                              "overflow": "reject-publish"}),
        PolicySpec(RECEIPTS_POLICY,
                   f"^{re.escape(receipts_queue('X')).replace('X', '.+')}$", "queues",
                   {"max-length": limits.receipts_messages,
                    "max-length-bytes": limits.receipts_bytes, "overflow": "reject-publish"}),
        PolicySpec(UNROUTED_POLICY, f"^{re.escape(SUBMIT_EXCHANGE)}$", "exchanges",
                   {"alternate-exchange": UNROUTED_EXCHANGE}),
        PolicySpec(RECEIPTS_FALLBACK_POLICY, f"^{re.escape(RECEIPTS_EXCHANGE)}$", "exchanges",
                   {"alternate-exchange": DELIVER_EXCHANGE}),
    )


def hub_topology(limits: QueueLimits | None = None) -> Topology:
    """The hub's exchanges, shared queues, bindings and policies (``limits``: default
    :meth:`QueueLimits.from_env`)."""
    return Topology(
        exchanges=(ExchangeSpec(SUBMIT_EXCHANGE, "topic"),
                   ExchangeSpec(DELIVER_EXCHANGE, "direct"),
                   ExchangeSpec(RECEIPTS_EXCHANGE, "direct"),
                   ExchangeSpec(DEAD_LETTER_EXCHANGE, "fanout"),
                   ExchangeSpec(UNROUTED_EXCHANGE, "fanout")),
        queues=(QueueSpec(SUBMIT_QUEUE, SUBMIT_QUEUE_ARGUMENTS),
                QueueSpec(DEAD_QUEUE, {"x-queue-type": "quorum"})),
        bindings=(BindingSpec(UNROUTED_EXCHANGE, SUBMIT_QUEUE, ""),
                  BindingSpec(DEAD_LETTER_EXCHANGE, DEAD_QUEUE, "")),
        policies=hub_policies(limits or QueueLimits.from_env()),
        # The layout before per-node queues: every submission into the shared queue.
        retired=(BindingSpec(SUBMIT_EXCHANGE, SUBMIT_QUEUE, "#"),),
    )


HUB_TOPOLOGY = hub_topology(QueueLimits())
# A node's inbox and receipts queue: what its adapter rejects is dead-lettered.
NODE_QUEUE_ARGUMENTS: Mapping[str, Any] = {"x-queue-type": "quorum",
                                           "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}


def node_topology(code: str) -> Topology:
    """The node's inbox, bound from ``vdx.deliver`` with its code as the routing key, its
    submit queue, bound from ``vdx.submit`` with its submit routing key, and its receipts
    queue, bound from ``vdx.receipts`` with its code (bindings in that order)."""
    inbox = inbox_queue(code)
    submit = submit_queue(code)
    receipts = receipts_queue(code)
    return Topology(
        queues=(QueueSpec(inbox, NODE_QUEUE_ARGUMENTS),
                QueueSpec(submit, SUBMIT_QUEUE_ARGUMENTS),
                QueueSpec(receipts, NODE_QUEUE_ARGUMENTS)),
        bindings=(BindingSpec(DELIVER_EXCHANGE, inbox, code),
                  BindingSpec(SUBMIT_EXCHANGE, submit, submit_routing_key(code)),
                  BindingSpec(RECEIPTS_EXCHANGE, receipts, code)),
    )


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


def node_permissions(code: str) -> Permissions:
    """Exactly what a node's account may touch in the hub's vhost (see the module doc)."""
    return Permissions(configure="^$", write=f"^{re.escape(SUBMIT_EXCHANGE)}$",
                       read=f"^({re.escape(inbox_queue(code))}|"
                            f"{re.escape(receipts_queue(code))})$")


def submit_key_pattern(codes: list[str] | tuple[str, ...]) -> str:
    """The routing keys on ``vdx.submit`` that publishing for ``codes`` needs, as a
    topic-permission pattern (``^$``, no key, for no code)."""
    keys = sorted({re.escape(submit_routing_key(code)) for code in codes})
    if not keys:
        return "^$"
    return f"^{keys[0]}$" if len(keys) == 1 else f"^({'|'.join(keys)})$"


def node_topic_permission(code: str) -> dict[str, str]:
    """The topic permission of node ``code``'s account on ``vdx.submit``: its own routing
    key only (reading topics is not used: nodes bind nothing)."""
    return {"exchange": SUBMIT_EXCHANGE, "write": submit_key_pattern([code]), "read": "^$"}


# ------------------------------------------------------------------ the HTTP client


class ManagementApi:
    """The handful of management API calls provisioning needs, over :mod:`urllib`.

    Every failure is a :class:`~vdx.errors.TransportError` (``transport.unavailable``)
    whose message says what the broker answered.
    """

    def __init__(self, settings: BrokerSettings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        token = b64encode(f"{settings.user}:{settings.password}".encode()).decode()
        self._auth = f"Basic {token}"
        self._current = 0  # the endpoint that answered last

    def request(self, method: str, path: str, body: Any = None, *,
                missing_ok: bool = False) -> Any:
        """``method`` ``/api/<path>``; the decoded JSON answer, ``None`` for an empty one
        (or for 404 when ``missing_ok``). Of several endpoints (a cluster), the one that
        answered last is asked first; one that cannot be reached passes to the next."""
        data = None if body is None else json.dumps(body).encode()
        endpoints = self.settings.api_urls
        unreachable = []
        for step in range(len(endpoints)):
            index = (self._current + step) % len(endpoints)
            req = urllib.request.Request(
                f"{endpoints[index]}/api/{path}", data=data, method=method, headers={
                    "Authorization": self._auth, "Content-Type": "application/json",
                    "X-Reason": "vdx provisioning"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 404 and missing_ok:
                    return None
                if exc.code == 503 and step + 1 < len(endpoints):
                    unreachable.append(f"{endpoints[index]} (503)")  # a node leaving
                    continue
                raise TransportError("transport.unavailable",
                                     self._refusal(method, path, exc)) from exc
            except (urllib.error.URLError, OSError) as exc:
                unreachable.append(f"{endpoints[index]} ({getattr(exc, 'reason', exc)})")
                continue
            self._current = index
            return json.loads(raw) if raw.strip() else None
        raise TransportError(
            "transport.unavailable",
            f"cannot reach the RabbitMQ management API at {', '.join(unreachable)}; is the "
            f"broker up and `rabbitmq-plugins enable rabbitmq_management` done? (set "
            f"VDX_MANAGEMENT_URL if it is elsewhere; several separated by commas)")

    def _refusal(self, method: str, path: str, exc: urllib.error.HTTPError) -> str:
        try:
            answer = json.loads(exc.read() or b"{}")
            reason = answer.get("reason") or answer.get("error") or exc.reason
        except (ValueError, AttributeError):
            reason = exc.reason
        if exc.code == 401:
            return (f"the management API refused user {self.settings.user!r} (401); give an "
                    f"administrator's credentials in VDX_AMQP_URL or VDX_MANAGEMENT_URL")
        return f"the broker refused {method} /api/{unquote(path)}: {exc.code} {reason}"

    # Small helpers so callers read as what they do.
    def get(self, path: str) -> Any:
        return self.request("GET", path, missing_ok=True)

    def put(self, path: str, body: Any) -> None:
        self.request("PUT", path, body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path, missing_ok=True)


def _q(name: str) -> str:
    return quote(name, safe="")


# ----------------------------------------------------------------------- provisioning


QUORUM_SIZE_ARGUMENT = "x-quorum-initial-group-size"
# Arguments that take effect when a queue is created only: an existing queue that differs
# in them is left as it is (its replicas are changed with `rabbitmq-queues grow|shrink`).
CREATION_ONLY = frozenset({QUORUM_SIZE_ARGUMENT})


def quorum_size() -> int | None:
    """``$VDX_QUORUM_SIZE``: how many broker nodes hold a replica of each queue the hub
    creates; unset, the broker's default (every node of a cluster up to five; one on a
    single broker)."""
    raw = os.environ.get("VDX_QUORUM_SIZE", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise TransportError("transport.unavailable",
                             f"VDX_QUORUM_SIZE={raw!r} is not a positive whole number")
    return int(raw)


def ensure_vhost(api: ManagementApi, vhost: str) -> bool:
    """Create ``vhost`` if missing and let the admin user (the hub) use it; True if created."""
    if api.get(f"vhosts/{_q(vhost)}") is not None:
        return False
    api.put(f"vhosts/{_q(vhost)}", {"description": "VDX hub"})
    api.put(f"permissions/{_q(vhost)}/{_q(api.settings.user)}",
            {"configure": ".*", "write": ".*", "read": ".*"})
    return True


def ensure_topology(api: ManagementApi, vhost: str, topology: Topology | None = None) -> None:
    """Declare ``topology`` (default the hub's, :func:`hub_topology`); idempotent."""
    topology = topology or hub_topology()
    v = _q(vhost)
    for ex in topology.exchanges:
        _refuse_mismatch(api.get(f"exchanges/{v}/{_q(ex.name)}"), "exchange", ex.name,
                         {"type": ex.type, "durable": True})
        api.put(f"exchanges/{v}/{_q(ex.name)}", {"type": ex.type, "durable": True,
                                                 "auto_delete": False, "internal": False,
                                                 "arguments": {}})
    group_size = quorum_size()
    for queue in topology.queues:
        found = api.get(f"queues/{v}/{_q(queue.name)}")
        if found is not None:
            kept = {k: a for k, a in (found.get("arguments") or {}).items()
                    if k not in CREATION_ONLY}
            _refuse_mismatch({**found, "arguments": kept}, "queue", queue.name,
                             {"durable": True, "arguments": dict(queue.arguments)})
            continue
        arguments = dict(queue.arguments)
        if group_size and arguments.get("x-queue-type") == "quorum":
            arguments[QUORUM_SIZE_ARGUMENT] = group_size
        api.put(f"queues/{v}/{_q(queue.name)}", {"durable": True, "auto_delete": False,
                                                 "arguments": arguments})
    for b in topology.bindings:
        if not has_binding(api, vhost, b):
            api.request("POST", f"bindings/{v}/e/{_q(b.exchange)}/q/{_q(b.queue)}",
                        {"routing_key": b.routing_key, "arguments": {}})
    for policy in topology.policies:
        ensure_policy(api, vhost, policy)
    if topology.retired:
        # What the retired bindings took must have somewhere to go first.
        _await_policies(api, vhost, topology.policies)
        for b in topology.retired:
            unbind(api, vhost, b)


def ensure_policy(api: ManagementApi, vhost: str, policy: PolicySpec) -> None:
    api.put(f"policies/{_q(vhost)}/{_q(policy.name)}", {
        "pattern": policy.pattern, "apply-to": policy.apply_to,
        "definition": dict(policy.definition), "priority": 0})


def _await_policies(api: ManagementApi, vhost: str, policies: tuple[PolicySpec, ...],
                    timeout: float = 10.0) -> None:
    """Wait until ``vdx.submit``'s alternate-exchange policy, if among ``policies``,
    applies to it (the broker applies a policy a moment after it is set)."""
    if not any(p.name == UNROUTED_POLICY for p in policies):
        return
    deadline = time.monotonic() + timeout
    path = f"exchanges/{_q(vhost)}/{_q(SUBMIT_EXCHANGE)}"
    while (api.get(path) or {}).get("policy") != UNROUTED_POLICY:
        if time.monotonic() > deadline:
            raise TransportError("transport.unavailable",
                                 f"policy {UNROUTED_POLICY} does not apply to exchange "
                                 f"{SUBMIT_EXCHANGE} (another policy of higher priority?); "
                                 f"see `rabbitmqctl list_policies`")
        time.sleep(0.05)


def unbind(api: ManagementApi, vhost: str, binding: BindingSpec) -> None:
    """Remove ``binding`` if it exists; idempotent."""
    path = f"bindings/{_q(vhost)}/e/{_q(binding.exchange)}/q/{_q(binding.queue)}"
    for found in api.get(path) or ():
        if found.get("routing_key") == binding.routing_key:
            api.delete(f"{path}/{_q(found['properties_key'])}")


def has_binding(api: ManagementApi, vhost: str, binding: BindingSpec) -> bool:
    found = api.get(f"bindings/{_q(vhost)}/e/{_q(binding.exchange)}/q/{_q(binding.queue)}")
    return any(b.get("routing_key") == binding.routing_key for b in found or ())


def _refuse_mismatch(actual: Mapping[str, Any] | None, kind: str, name: str,
                     expected: Mapping[str, Any]) -> None:
    # The broker would refuse the PUT with a bare "inequivalent arg"; say which and how.
    if actual is None:
        return
    differs = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    if differs:
        shown = "; ".join(f"{k} is {a!r}, expected {e!r}" for k, (a, e) in differs.items())
        raise TransportError(
            "transport.unavailable",
            f"{kind} {name} exists with other settings ({shown}); delete it (after draining "
            f"it) with `rabbitmqctl delete_{kind} {name}` and run `vdx init` again")


def provision_node(api: ManagementApi, vhost: str, code: str, *, account: str | None = None,
                   new_password: bool = False, create_user: bool = True) -> Credentials | None:
    """Give node ``code`` its inbox and its broker user ``account`` (default
    :func:`node_account`); idempotent.

    Returns fresh :class:`Credentials` when the account had to be created or when
    ``new_password`` (a new registration, or a reset) asks for one; otherwise ``None`` and
    the existing password stays valid. With ``create_user=False`` a missing account is
    left missing (repairs that must not mint passwords nobody asked for). An account that
    holds rights in another vhost belongs to another hub: refused with
    ``registry.account_taken`` before anything is changed.
    """
    account = account or node_account(code, vhost)
    exists = account_exists(api, account)
    if exists:
        refuse_foreign_account(api, vhost, account)
    ensure_topology(api, vhost, node_topology(code))
    if not exists and not create_user:
        return None
    credentials = None
    if new_password or not exists:
        password = secrets.token_urlsafe(24)  # 192 bits
        api.put(f"users/{_q(account)}", {"password": password, "tags": ""})
        credentials = Credentials(account, password, vhost, api.settings.amqp_host,
                                  api.settings.amqp_port, api.settings.more_amqp)
    perms = node_permissions(code)
    api.put(f"permissions/{_q(vhost)}/{_q(account)}",
            {"configure": perms.configure, "write": perms.write, "read": perms.read})
    api.put(f"topic-permissions/{_q(vhost)}/{_q(account)}", node_topic_permission(code))
    set_user_limits(api, account, max_connections=NODE_MAX_CONNECTIONS,
                    max_channels=NODE_MAX_CHANNELS)
    if credentials is not None and exists:
        close_connections(api, account)  # sessions opened with the old password end now
    return credentials


def set_user_limits(api: ManagementApi, user: str, *, max_connections: int,
                    max_channels: int) -> None:
    """Cap ``user``'s connections and channels (all vhosts; RabbitMQ 3.10+)."""
    for limit, value in (("max-connections", max_connections), ("max-channels", max_channels)):
        api.put(f"user-limits/{_q(user)}/{limit}", {"value": value})


def user_limits(api: ManagementApi, user: str) -> dict[str, int]:
    found = api.get(f"user-limits/{_q(user)}") or ()
    return next((dict(entry.get("value") or {}) for entry in found), {})


def account_exists(api: ManagementApi, user: str) -> bool:
    return api.get(f"users/{_q(user)}") is not None


def other_vhosts(api: ManagementApi, vhost: str, user: str) -> tuple[str, ...]:
    """The vhosts other than ``vhost`` in which ``user`` holds rights."""
    found = api.get(f"users/{_q(user)}/permissions") or ()
    return tuple(sorted({p["vhost"] for p in found if p.get("vhost") != vhost}))


def refuse_foreign_account(api: ManagementApi, vhost: str, user: str) -> None:
    """Refuse to set a password on, or give rights to, another hub's account."""
    foreign = other_vhosts(api, vhost, user)
    if foreign:
        raise RegistryError(
            "registry.account_taken",
            f"broker user {user} holds rights in vhost {', '.join(foreign)}: it belongs to "
            f"another hub on this broker and is left untouched; register the node in that "
            f"hub, or give this hub a vhost of its own (VDX_AMQP_URL), where its accounts "
            f"are named CODE@VHOST")


def reset_password(api: ManagementApi, vhost: str, code: str, *,
                   account: str | None = None) -> Credentials:
    """A new password for node ``code``'s ``account`` (its inbox and rights are repaired
    on the way)."""
    credentials = provision_node(api, vhost, code, account=account, new_password=True)
    assert credentials is not None
    return credentials


def close_node_account(api: ManagementApi, vhost: str, code: str, *,
                       account: str | None = None) -> None:
    """Close node ``code``'s broker user in this vhost and unbind its inbox and receipts
    queue; idempotent.

    The user is deleted, unless it also holds rights in another vhost (another hub's
    account of the same name, from before accounts were named per vhost): then only this
    vhost's rights are withdrawn, and the other hub keeps its node. The inbox queue itself
    is kept, with whatever was not yet consumed, for an admin to inspect; nothing new
    reaches it. The node's submit queue is unbound too: the workers drain it (refusing
    its packages: the node is revoked) and ``vdx init`` deletes it once empty
    (:func:`drop_submit_queue_if_empty`).
    """
    account = account or node_account(code, vhost)
    if account_exists(api, account):
        if other_vhosts(api, vhost, account):
            api.delete(f"permissions/{_q(vhost)}/{_q(account)}")
            api.delete(f"topic-permissions/{_q(vhost)}/{_q(account)}")
        else:
            api.delete(f"users/{_q(account)}")
    # The connections of this vhost only: another hub's sessions on the same name stay.
    for connection in api.get(f"connections/username/{_q(account)}") or ():
        if connection.get("vhost") == vhost and connection.get("name"):
            api.delete(f"connections/{_q(connection['name'])}")
    for binding in node_topology(code).bindings:
        unbind(api, vhost, binding)


def drop_submit_queue_if_empty(api: ManagementApi, vhost: str, code: str) -> bool:
    """Delete revoked node ``code``'s submit queue if the broker reports it empty (the
    hub's workers drain it meanwhile); True if it is gone. The report lags by the
    statistics interval, so this runs at ``vdx init``, never right after a revocation."""
    path = f"queues/{_q(vhost)}/{_q(submit_queue(code))}"
    found = api.get(path)
    if found is None:
        return True
    if found.get("messages") != 0 or found.get("messages_unacknowledged", 0) != 0:
        return False
    api.delete(path)
    return True


def close_connections(api: ManagementApi, user: str) -> None:
    """Close every connection authenticated as ``user``.

    Uses the broker's connection tracking (``/api/connections/username/…``), which sees a
    connection the moment it opens; the general connection list lags by the statistics
    interval (5 s) and would miss one opened just before a password reset.
    """
    api.delete(f"connections/username/{_q(user)}")


# ------------------------------------------------------------------ the VXP gateway


def gateway_permissions(codes: list[str] | tuple[str, ...]) -> Permissions:
    """The VXP gateway's account: write ``vdx.submit``, read the inboxes and receipts
    queues of the nodes its connected systems serve (``codes``), declare nothing. With no
    node it reads nothing. Its topic permission on ``vdx.submit`` allows the routing keys
    of ``codes`` only."""
    queues = "|".join(re.escape(queue(code)) for code in sorted(set(codes))
                      for queue in (inbox_queue, receipts_queue))
    return Permissions(configure="^$", write=f"^{re.escape(SUBMIT_EXCHANGE)}$",
                       read=f"^({queues})$" if queues else "^$")


def provision_gateway(api: ManagementApi, vhost: str, user: str, codes: list[str] | tuple[str, ...],
                      *, new_password: bool = False) -> Credentials | None:
    """Give the gateway account ``user`` exactly :func:`gateway_permissions` for ``codes``;
    idempotent. Returns fresh :class:`Credentials` when the account had to be created or
    ``new_password`` asks for one (the old password stops working), else ``None``.

    The hub accepts this account's packages only for nodes a connected system serves
    (:func:`vdx.registry.delegates.serves`), so the name must be the one
    :func:`vdx.registry.delegates.gateway_user` gives for ``vhost``.
    """
    exists = account_exists(api, user)
    credentials = None
    if new_password or not exists:
        password = secrets.token_urlsafe(24)
        api.put(f"users/{_q(user)}", {"password": password, "tags": ""})
        credentials = Credentials(user, password, vhost, api.settings.amqp_host,
                                  api.settings.amqp_port, api.settings.more_amqp)
    perms = gateway_permissions(codes)
    api.put(f"permissions/{_q(vhost)}/{_q(user)}",
            {"configure": perms.configure, "write": perms.write, "read": perms.read})
    api.put(f"topic-permissions/{_q(vhost)}/{_q(user)}",
            {"exchange": SUBMIT_EXCHANGE, "write": submit_key_pattern(codes), "read": "^$"})
    if credentials is not None and exists:
        close_connections(api, user)
    return credentials
