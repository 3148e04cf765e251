"""The RabbitMQ edge: the only module of the hub's runtime that imports pika.

:class:`AsyncChannel` runs one pika ``SelectConnection`` with one channel that both
consumes (manual acks, prefetch) and publishes in confirm mode. Publisher confirms are
pipelined: :meth:`AsyncChannel.publish` returns at once and the ``on_confirm`` callback
later receives the tokens of every message the broker took responsibility for (an ack with
``multiple`` confirms a whole range at once). Never one awaited confirm per message.

The caller (the hub worker) gets plain callbacks and never sees pika frames.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import pika
from pika.adapters.select_connection import SelectConnection
from pika.spec import Basic, BasicProperties

log = logging.getLogger(__name__)

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
SUBMIT_EXCHANGE = "vdx.submit"
DELIVER_EXCHANGE = "vdx.deliver"
SUBMIT_QUEUE = "vdx.hub.submit"
DEAD_QUEUE = "vdx.hub.dead"


def amqp_url() -> str:
    return os.environ.get("VDX_AMQP_URL", DEFAULT_AMQP_URL)


def inbox_queue(code: str) -> str:
    return f"vdx.node.{code}.inbox"


def node_account(code: str, vhost: str) -> str:
    """The broker user of node ``code`` in a hub living in ``vhost``.

    The bare code in the default vhost (as the gateway's ``vdx.gateway``), ``CODE@VHOST``
    elsewhere. Agency codes never contain ``@``, so no two (code, vhost) pairs share a
    name, and none is the gateway's (``vdx.…`` is refused as a code).
    """
    return code if vhost == "/" else f"{code}@{vhost}"


@dataclass(frozen=True)
class Incoming:
    """One consumed message, as the worker sees it."""

    tag: int
    body: bytes
    user_id: str | None
    message_id: str | None
    redelivered: bool
    headers: dict = field(default_factory=dict)
    queue: str = SUBMIT_QUEUE


@dataclass(frozen=True)
class Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    type: str
    headers: dict
    user_id: str | None = None


class AsyncChannel:
    """One connection, one channel: consume ``queues``, publish with pipelined confirms.

    Callbacks run on the connection's I/O loop thread:
    ``on_ready()``, ``on_message(Incoming)``, ``on_confirm(tokens, ok)``,
    ``on_returned(token)``, ``on_closed(reason)``.
    """

    def __init__(
        self, url: str, queues: tuple[str, ...], prefetch: int, *,
        on_ready: Callable[[], None],
        on_message: Callable[[Incoming], None],
        on_confirm: Callable[[list[object], bool], None],
        on_returned: Callable[[object], None],
        on_closed: Callable[[str], None],
    ) -> None:
        self._params = pika.URLParameters(url)
        self._params.heartbeat = 30
        self._queues = queues
        self._prefetch = prefetch
        self._on_ready = on_ready
        self._on_message = on_message
        self._on_confirm = on_confirm
        self._on_returned = on_returned
        self._on_closed = on_closed
        self._connection: SelectConnection | None = None
        self._channel = None
        self._seq = 0
        self._unconfirmed: OrderedDict[int, object] = OrderedDict()
        self._consumer_tags: list[str] = []
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Connect and run the I/O loop until the connection closes."""
        self._connection = SelectConnection(
            self._params,
            on_open_callback=self._connection_open,
            on_open_error_callback=lambda _c, err: self._lost(f"cannot connect: {err!r}"),
            on_close_callback=lambda _c, reason: self._lost(str(reason)),
        )
        self._connection.ioloop.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> object:
        assert self._connection is not None
        return self._connection.ioloop.call_later(delay, fn)

    def remove_timeout(self, handle: object) -> None:
        if self._connection is not None:
            self._connection.ioloop.remove_timeout(handle)

    def add_callback(self, fn: Callable[[], None]) -> None:
        """Thread-safe: run ``fn`` on the I/O loop (used by signal handlers)."""
        if self._connection is not None:
            self._connection.ioloop.add_callback_threadsafe(fn)

    def stop_consuming(self, then: Callable[[], None]) -> None:
        """Ask the broker to stop deliveries; ``then`` runs once it agreed."""
        pending = list(self._consumer_tags)
        self._consumer_tags.clear()
        if not pending or self._channel is None or not self._channel.is_open:
            then()
            return
        remaining = {"n": len(pending)}

        def cancelled(_frame) -> None:
            remaining["n"] -= 1
            if remaining["n"] == 0:
                then()

        for tag in pending:
            self._channel.basic_cancel(tag, callback=cancelled)

    def close(self) -> None:
        """Close the connection (or give up connecting); :meth:`run` then returns."""
        self._closing = True
        connection = self._connection
        if connection is None or connection.is_closing or connection.is_closed:
            return
        if connection.is_open:
            connection.close()
        else:  # still opening: pika cannot close it politely yet
            connection.ioloop.stop()

    @property
    def is_open(self) -> bool:
        """The channel can take acks and publications (False after :meth:`close`)."""
        return not self._closing and self._channel is not None and self._channel.is_open

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    # -- operations ---------------------------------------------------------------------

    def ack(self, tag: int, multiple: bool = False) -> None:
        self._channel.basic_ack(tag, multiple=multiple)

    def nack(self, tag: int, requeue: bool) -> None:
        self._channel.basic_nack(tag, requeue=requeue)

    def publish(self, message: Outgoing, token: object) -> None:
        """Publish persistent and mandatory; ``token`` comes back through ``on_confirm``."""
        self._channel.basic_publish(
            message.exchange, message.routing_key, message.body,
            BasicProperties(
                delivery_mode=2, message_id=message.message_id, type=message.type,
                headers=message.headers, user_id=message.user_id,
                content_type="application/xml",
            ),
            mandatory=True,
        )
        self._seq += 1
        self._unconfirmed[self._seq] = token

    # -- pika callbacks -----------------------------------------------------------------

    def _connection_open(self, connection) -> None:
        connection.channel(on_open_callback=self._channel_open)

    def _channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(lambda _ch, reason: self._channel_closed(reason))
        channel.add_on_return_callback(self._returned)
        channel.confirm_delivery(ack_nack_callback=self._confirmed,
                                 callback=lambda _f: channel.basic_qos(
                                     prefetch_count=self._prefetch, callback=self._qos_ok))

    def _qos_ok(self, _frame) -> None:
        for queue in self._queues:
            self._consumer_tags.append(
                self._channel.basic_consume(queue, functools.partial(self._delivered, queue),
                                            auto_ack=False)
            )
        self._on_ready()

    def _delivered(self, queue: str, _channel, method: Basic.Deliver,
                   props: BasicProperties, body: bytes) -> None:
        self._on_message(Incoming(
            tag=method.delivery_tag, body=body, user_id=props.user_id,
            message_id=props.message_id, redelivered=bool(method.redelivered),
            headers=dict(props.headers or {}), queue=queue,
        ))

    def _confirmed(self, frame) -> None:
        method = frame.method
        ok = isinstance(method, Basic.Ack)
        if method.multiple:
            tags = [t for t in self._unconfirmed if t <= method.delivery_tag]
        else:
            tags = [method.delivery_tag] if method.delivery_tag in self._unconfirmed else []
        tokens = [self._unconfirmed.pop(t) for t in tags]
        if tokens:
            self._on_confirm(tokens, ok)

    def _returned(self, _channel, method, props: BasicProperties, _body) -> None:
        log.error("broker returned %s to %s: %s", props.message_id, method.routing_key,
                  method.reply_text)
        self._on_returned(props.message_id)

    def _channel_closed(self, reason) -> None:
        if not self._closing:
            log.warning("channel closed: %s", reason)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _lost(self, reason: str) -> None:
        self._unconfirmed.clear()
        if self._connection is not None:
            self._connection.ioloop.stop()
        self._on_closed("closed" if self._closing else reason)

