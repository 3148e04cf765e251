"""The hub ↔ node wire contract: where messages go, what they are, what they carry.

Nodes (the SDK, the folder bridge through it, the gateway for the nodes it serves) publish
**submissions**, signed edXML packages, to the exchange ``vdx.submit`` (routing key: the
sending node's code, the only one the broker lets its account use; the broker stamps the
publishing account as ``user_id``). Each node's submissions wait in a queue of their own,
``vdx.hub.submit.<code>``, so that the hub takes turns between senders; a routing key no
node's queue is bound to lands in the shared ``vdx.hub.submit``. The hub
sends a node two kinds of message, each on a path of its own (routing key: the node's
code), so that deliveries a node has not read never hold up its receipts:

- a **delivery**: a document or status package from another node, its bytes as signed,
  with the hub's trace in headers (its delivery id, who sent it, when the hub received it),
  through the exchange ``vdx.deliver`` into the node's inbox ``vdx.node.<code>.inbox``;
- a **receipt**: what the hub did with a package (accepted, rejected, duplicate,
  delivered, a recipient's status), signed by the hub, through the exchange
  ``vdx.receipts`` into the node's receipts queue ``vdx.node.<code>.receipts``. A node
  whose receipts queue is not provisioned yet (a registry before ``vdx init`` added it)
  gets its receipts in its inbox, as before: ``vdx.receipts``'s alternate exchange is
  ``vdx.deliver``. Nodes read both queues.

What a message *is* is its AMQP ``type`` (:data:`DOCUMENT`, :data:`STATUS`,
:data:`RECEIPT`), read by :func:`read_from_hub` on every receiving side; the ``x-vdx-*``
headers carry the trace, named here and nowhere else. The builders below make every
message the hub and the nodes exchange; bodies are never read or changed.

Pure: no pika, no I/O. The broker code sends an :class:`Outgoing` and hands out each
consumed message as an :class:`Incoming`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

# ----------------------------------------------------------------------- topology

SUBMIT_EXCHANGE = "vdx.submit"
DELIVER_EXCHANGE = "vdx.deliver"
RECEIPTS_EXCHANGE = "vdx.receipts"
SUBMIT_QUEUE = "vdx.hub.submit"  # the shared queue: what no node's own queue takes
DEAD_QUEUE = "vdx.hub.dead"
# Where vdx.submit sends what no binding takes (its alternate exchange): the shared queue.
UNROUTED_EXCHANGE = "vdx.submit.unrouted"

_SUBMIT_PREFIX = SUBMIT_QUEUE + "."


def submit_routing_key(code: str) -> str:
    """The routing key node ``code``'s packages are published with on ``vdx.submit``; the
    broker lets a node's account use no other (topic permissions)."""
    return code


def submit_key_node(routing_key: str) -> str:
    """The node a submission's routing key names (:func:`submit_routing_key` reversed)."""
    return routing_key


def submit_queue(code: str) -> str:
    """The queue that holds what node ``code`` submitted, until the hub takes it."""
    return f"{_SUBMIT_PREFIX}{code}"


def submit_node(queue: str) -> str | None:
    """The node whose submit queue is ``queue``; None for another queue (the shared one)."""
    if not queue.startswith(_SUBMIT_PREFIX):
        return None
    return queue[len(_SUBMIT_PREFIX):] or None


_INBOX_PREFIX, _INBOX_SUFFIX = "vdx.node.", ".inbox"


def inbox_queue(code: str) -> str:
    """The queue the hub fills for node ``code``."""
    return f"{_INBOX_PREFIX}{code}{_INBOX_SUFFIX}"


def inbox_node(queue: str) -> str | None:
    """The node whose inbox is ``queue``; None for another queue."""
    if queue.startswith(_INBOX_PREFIX) and queue.endswith(_INBOX_SUFFIX):
        return queue[len(_INBOX_PREFIX):-len(_INBOX_SUFFIX)] or None
    return None


_RECEIPTS_SUFFIX = ".receipts"


def receipts_queue(code: str) -> str:
    """The queue the hub puts node ``code``'s receipts in."""
    return f"{_INBOX_PREFIX}{code}{_RECEIPTS_SUFFIX}"


def receipts_node(queue: str) -> str | None:
    """The node whose receipts queue is ``queue``; None for another queue."""
    if queue.startswith(_INBOX_PREFIX) and queue.endswith(_RECEIPTS_SUFFIX):
        return queue[len(_INBOX_PREFIX):-len(_RECEIPTS_SUFFIX)] or None
    return None


def node_account(code: str, vhost: str) -> str:
    """The broker user of node ``code`` in a hub living in ``vhost``.

    The bare code in the default vhost (as the gateway's ``vdx.gateway``), ``CODE@VHOST``
    elsewhere. Agency codes never contain ``@``, so no two (code, vhost) pairs share a
    name, and none is the gateway's (``vdx.…`` is refused as a code).
    """
    return code if vhost == "/" else f"{code}@{vhost}"


# ------------------------------------------------------------------ message types

DOCUMENT = "edxml.document"
STATUS = "edxml.status"
PACKAGE = "edxml"  # a submission whose sender did not read its kind (bytes sent as they are)
RECEIPT = "vdx.receipt"

_KIND_OF_TYPE = {DOCUMENT: "document", STATUS: "status", RECEIPT: "receipt"}

# ------------------------------------------------------------------------ headers

HUB = "x-vdx-hub"  # the hub instance that published it
HOP = "x-vdx-hop"  # hubs it went through (1: straight from the hub that received it)
DELIVERY_ID = "x-vdx-delivery-id"  # also the delivery's message id
SENDER = "x-vdx-sender"  # the sending node, as the hub verified it
DOCUMENT_ID = "x-vdx-document-id"  # the package's DocumentId (a status: the document's)
KIND = "x-vdx-kind"  # "document" or "status"
RECEIVED_AT = "x-vdx-received-at"  # when the hub received the package (ISO 8601)
PUBLISHED_AT = "x-vdx-published-at"  # when the hub published this copy (ISO 8601)
RECEIPT_KIND = "x-vdx-receipt-kind"  # accepted, rejected, duplicate, delivered, status
CLIENT = "x-vdx-client"  # the node's software (``vdx-sdk/<version>``)
GATEWAY_SYSTEM = "x-vdx-gateway-system"  # the gateway's system that sent it
SIGNED_BY_GATEWAY = "x-vdx-signed-by-gateway"  # "true" when the gateway signed it


# ------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Incoming:
    """One consumed message. ``lane`` names the consumer channel it came on (0: the
    connection's main channel); an ack needs it with ``tag``."""

    tag: int
    body: bytes
    user_id: str | None
    message_id: str | None
    redelivered: bool
    headers: dict = field(default_factory=dict)
    queue: str = SUBMIT_QUEUE
    type: str | None = None
    lane: int = 0
    routing_key: str = ""


@dataclass(frozen=True)
class Outgoing:
    """One message to publish (persistent, mandatory, with a publisher confirm)."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    type: str
    headers: dict
    user_id: str | None = None


# ----------------------------------------------------------------------- builders


def package_type(kind: str | None) -> str:
    """The AMQP type of a package of ``kind`` (``"document"``, ``"status"``, or None when
    the sender did not read it)."""
    return {"document": DOCUMENT, "status": STATUS}.get(kind or "", PACKAGE)


def submission(node: str, body: bytes, message_id: str, *, kind: str | None,
               user_id: str, client: str) -> Outgoing:
    """A package a node's own software (``client``) sends to the hub."""
    return Outgoing(SUBMIT_EXCHANGE, submit_routing_key(node), body, message_id,
                    package_type(kind), {CLIENT: client}, user_id=user_id)


def gateway_submission(node: str, body: bytes, message_id: str, *, kind: str, user_id: str,
                       system: str, signed_by_gateway: bool) -> Outgoing:
    """A package the gateway sends for ``node`` on behalf of its ``system`` (under the
    gateway's own account ``user_id``); ``kind`` is ``"status"`` or a document's."""
    return Outgoing(SUBMIT_EXCHANGE, submit_routing_key(node), body, message_id,
                    STATUS if kind == "status" else DOCUMENT,
                    {GATEWAY_SYSTEM: system,
                     SIGNED_BY_GATEWAY: "true" if signed_by_gateway else "false"},
                    user_id=user_id)


def delivery(hub_id: str, delivery_id: str, recipient: str, body: bytes, *, kind: str,
             sender: str, document_id: str, received_at: datetime) -> Outgoing:
    """The hub's delivery of a ``kind`` package (``"document"`` or ``"status"``) to
    ``recipient``; its message id is the delivery id."""
    return Outgoing(DELIVER_EXCHANGE, recipient, body, delivery_id, package_type(kind), {
        HUB: hub_id, HOP: 1, DELIVERY_ID: delivery_id, SENDER: sender,
        DOCUMENT_ID: document_id, KIND: kind, RECEIVED_AT: received_at.isoformat()})


def receipt(hub_id: str, receipt_id: str, addressee: str, body: bytes, *, kind: str,
            document_id: str | None) -> Outgoing:
    """The hub's signed receipt ``body`` for ``addressee``, to its receipts queue; its
    message id is the receipt id."""
    return Outgoing(RECEIPTS_EXCHANGE, addressee, body, receipt_id, RECEIPT, {
        HUB: hub_id, HOP: 1, RECEIPT_KIND: kind, DOCUMENT_ID: document_id or ""})


def published(message: Outgoing, at: datetime) -> Outgoing:
    """``message`` stamped with the moment the hub publishes it (each copy its own)."""
    return replace(message, headers=message.headers | {PUBLISHED_AT: at.isoformat()})


# ------------------------------------------------------------------------ readers


@dataclass(frozen=True)
class FromHub:
    """What a message in a node's inbox or receipts queue is, read from its type and
    headers.

    ``kind`` is ``"document"``, ``"status"`` (deliveries), ``"receipt"``, or None for a
    message that is neither (no node should accept it). ``delivery_id`` is a delivery's
    id (its header, else its message id); the other fields are None when absent.
    """

    kind: str | None
    message_id: str | None
    delivery_id: str | None = None
    sender: str | None = None
    document_id: str | None = None
    received_at: str | None = None
    receipt_kind: str | None = None
    hub: str | None = None

    @property
    def is_delivery(self) -> bool:
        return self.kind in ("document", "status")

    @property
    def is_receipt(self) -> bool:
        return self.kind == "receipt"


def read_from_hub(type: str | None, message_id: str | None,
                  headers: Mapping[str, object] | None) -> FromHub:
    """Read a message the hub put in an inbox (its AMQP type, message id and headers)."""
    headers = headers or {}
    kind = _KIND_OF_TYPE.get(type or "")
    delivery_id = None
    if kind in ("document", "status"):
        delivery_id = _text(headers.get(DELIVERY_ID)) or message_id
    return FromHub(kind, message_id, delivery_id, _text(headers.get(SENDER)),
                   _text(headers.get(DOCUMENT_ID)), _text(headers.get(RECEIVED_AT)) or None,
                   _text(headers.get(RECEIPT_KIND)), _text(headers.get(HUB)))


@dataclass(frozen=True)
class Submitted:
    """What a submission's headers say about where it came from (for logs and audits;
    the hub trusts only the broker-stamped ``user_id`` and the signature)."""

    client: str | None = None
    gateway_system: str | None = None
    signed_by_gateway: bool = False


def read_submission(headers: Mapping[str, object] | None) -> Submitted:
    headers = headers or {}
    return Submitted(_text(headers.get(CLIENT)), _text(headers.get(GATEWAY_SYSTEM)),
                     _text(headers.get(SIGNED_BY_GATEWAY)) == "true")


def _text(value: object) -> str | None:
    """A header value as text: AMQP long strings that are not UTF-8 come as bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None if value is None else str(value)
