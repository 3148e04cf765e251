"""The RabbitMQ edge: the one module that imports pika, for every program.

:class:`AsyncChannel` runs one pika ``SelectConnection`` with one main channel that both
consumes (manual acks, prefetch) and publishes in confirm mode, and, on request, one more
channel (a *lane*) per queue it follows (:meth:`AsyncChannel.follow`): the broker closes a
channel whose consume it refuses (a queue that does not exist, no right to read it), and a
lane of its own keeps that from stopping the others. Publisher confirms are pipelined:
:meth:`AsyncChannel.publish` returns at once and the ``on_confirm`` callback later
receives the tokens of every message the broker took responsibility for (an ack with
``multiple`` confirms a whole range at once). Never one awaited confirm per message.

Where the broker is comes as a list of addresses, comma-separated AMQP URLs
(:func:`addresses`): :meth:`AsyncChannel.run` tries each in turn, once, and reports the
connection lost only when none answered; the caller backs off (:class:`vdx.broker.link.
Backoff`) and runs a new channel. The hub worker drives one directly;
:class:`vdx.broker.link.Link` does for every other program.

Callers get plain callbacks and values (:mod:`vdx.broker.wire`), never pika frames.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pika
from pika.adapters.select_connection import IOLoop, SelectConnection
from pika.spec import Basic, BasicProperties

from vdx import malloc
from vdx.broker.wire import (
    DEAD_QUEUE,
    DELIVER_EXCHANGE,
    SUBMIT_EXCHANGE,
    SUBMIT_QUEUE,
    Incoming,
    Outgoing,
    inbox_queue,
    node_account,
)

# The topology's names and the message values live in the wire module; they stay
# importable from here for the hub's code.
__all__ = [
    "DEAD_QUEUE", "DEFAULT_AMQP_URL", "DELIVER_EXCHANGE", "SUBMIT_EXCHANGE", "SUBMIT_QUEUE",
    "AsyncChannel", "Incoming", "Outgoing", "addresses", "amqp_url", "broker_user",
    "inbox_queue", "node_account", "vhost_of",
]

log = logging.getLogger(__name__)

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
HEARTBEAT = 30  # seconds


def amqp_url() -> str:
    """``$VDX_AMQP_URL``: the hub's broker address(es), see :func:`addresses`."""
    return os.environ.get("VDX_AMQP_URL", DEFAULT_AMQP_URL)


def addresses(urls: str | Sequence[str]) -> tuple[str, ...]:
    """The broker addresses in ``urls``: one AMQP URL, several separated by commas (the
    nodes of a cluster, tried in turn), or a sequence of URLs. A comma inside a URL's
    password is written ``%2C``, as every other reserved character."""
    items = urls.split(",") if isinstance(urls, str) else urls
    found = tuple(u.strip() for u in items if u.strip())
    if not found:
        raise ValueError("no broker address: give an AMQP URL (several separated by commas)")
    return found


def broker_user(urls: str | Sequence[str]) -> str:
    """The login of the (first) address; every address of one program logs in alike."""
    return unquote(urlsplit(addresses(urls)[0]).username or "guest")


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


# Bodies from this size on were received in more frames than the heap gives back by
# itself (vdx.malloc.trim); vdx.malloc.tune maps blocks this large apart.
TRIM_AFTER = 4 << 20


@dataclass
class _Lane:
    """The channel that consumes one followed queue."""

    id: int
    queue: str
    channel: object | None = None
    closing: bool = False  # closed by us: not a refusal
    cancelled: bool = False  # the broker cancelled the consumer (the queue was deleted)


class AsyncChannel:
    """One connection, a main channel: consume ``queues``, publish with pipelined confirms;
    a lane per followed queue.

    ``urls``: the broker's addresses (:func:`addresses`), tried in turn from the one at
    ``start_at``. Callbacks run on the connection's I/O loop thread:
    ``on_ready()``, ``on_message(Incoming)``, ``on_confirm(tokens, ok)``,
    ``on_returned(message_id)``, ``on_closed(reason)`` (``"closed"`` after :meth:`close`),
    and ``on_follow(queue, refusal)`` once a followed queue is consumed (``refusal`` None)
    or its consume was refused (the broker's reason). A lane's prefetch is
    ``lane_prefetch`` (default ``prefetch``).
    """

    def __init__(
        self, urls: str | Sequence[str], queues: tuple[str, ...], prefetch: int, *,
        on_ready: Callable[[], None],
        on_message: Callable[[Incoming], None],
        on_confirm: Callable[[list[object], bool], None],
        on_returned: Callable[[object], None],
        on_closed: Callable[[str], None],
        on_follow: Callable[[str, str | None], None] | None = None,
        start_at: int = 0,
        lane_prefetch: int | None = None,
    ) -> None:
        self._params = []
        for url in addresses(urls):
            params = pika.URLParameters(url)
            params.heartbeat = HEARTBEAT
            self._params.append(params)
        self._start_at = start_at % len(self._params)
        self._queues = queues
        self._prefetch = prefetch
        self._lane_prefetch = lane_prefetch or prefetch
        self._on_ready = on_ready
        self._on_message = on_message
        self._on_confirm = on_confirm
        self._on_returned = on_returned
        self._on_closed = on_closed
        self._on_follow = on_follow
        # Made now, so that what add_callback queues before run() is not lost (a stop).
        self._ioloop = IOLoop()
        self._connection: SelectConnection | None = None
        self._channel = None
        self._seq = 0
        self._unconfirmed: OrderedDict[int, object] = OrderedDict()
        self._consumer_tags: list[str] = []
        self._lanes: dict[str, _Lane] = {}
        self._lane_seq = 0
        self._closing = False
        self._tried: list[str] = []  # why each address failed, this run
        self.address: int | None = None  # the index of the address connected to

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Connect (each address in turn) and run the I/O loop until the connection
        closes or no address answered."""
        if self._closing:  # closed before it ran
            return
        self._tried = []
        self._connect(self._start_at)
        self._ioloop.start()

    def _connect(self, index: int) -> None:
        self._connection = SelectConnection(
            self._params[index],
            on_open_callback=lambda c: self._connection_open(index, c),
            on_open_error_callback=lambda _c, err: self._open_failed(index, err),
            on_close_callback=lambda _c, reason: self._lost(str(reason)),
            custom_ioloop=self._ioloop,
        )

    def _open_failed(self, index: int, error: BaseException) -> None:
        params = self._params[index]
        self._tried.append(f"{params.host}:{params.port}: {error!r}")
        following = (index + 1) % len(self._params)
        if following != self._start_at and not self._closing:
            log.info("broker address unavailable; trying the next",
                     extra={"event": "address_failed", "address": f"{params.host}:"
                            f"{params.port}", "reason": repr(error)})
            self._connect(following)
            return
        self._lost("cannot connect: " + "; ".join(self._tried))

    def call_later(self, delay: float, fn: Callable[[], None]) -> object:
        return self._ioloop.call_later(delay, fn)

    def remove_timeout(self, handle: object) -> None:
        self._ioloop.remove_timeout(handle)

    def add_callback(self, fn: Callable[[], None]) -> None:
        """Thread-safe: run ``fn`` on the I/O loop (used by signal handlers); queued
        until :meth:`run` if called before."""
        self._ioloop.add_callback_threadsafe(fn)

    def stop_consuming(self, then: Callable[[], None]) -> None:
        """Ask the broker to stop deliveries; ``then`` runs once it agreed."""
        pending = list(self._consumer_tags)
        self._consumer_tags.clear()
        for queue in list(self._lanes):
            self.unfollow(queue)
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
            self._ioloop.stop()

    @property
    def is_open(self) -> bool:
        """The channel can take acks and publications (False after :meth:`close`)."""
        return not self._closing and self._channel is not None and self._channel.is_open

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    @property
    def lanes(self) -> frozenset[str]:
        """The followed queues consumed or being opened."""
        return frozenset(self._lanes)

    # -- operations ---------------------------------------------------------------------

    def ack(self, tag: int, multiple: bool = False, *, lane: int = 0) -> None:
        """Acknowledge ``tag`` on the main channel (``lane`` 0) or a followed queue's
        lane. A lane closed since has given its messages back: nothing is done."""
        channel = self._channel if lane == 0 else self._lane_channel(lane)
        if channel is not None:
            channel.basic_ack(tag, multiple=multiple)

    def nack(self, tag: int, requeue: bool, *, lane: int = 0) -> None:
        channel = self._channel if lane == 0 else self._lane_channel(lane)
        if channel is not None:
            channel.basic_nack(tag, requeue=requeue)

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

    def follow(self, queue: str) -> None:
        """Consume ``queue`` too, on a lane of its own (``on_follow`` tells how it went)."""
        if queue in self._lanes or self._connection is None or not self._connection.is_open:
            return
        self._lane_seq += 1
        lane = self._lanes[queue] = _Lane(self._lane_seq, queue)
        self._connection.channel(on_open_callback=lambda ch: self._lane_open(lane, ch))

    def unfollow(self, queue: str) -> None:
        """Stop consuming ``queue``; its unacknowledged messages go back to it."""
        lane = self._lanes.pop(queue, None)
        if lane is not None and lane.channel is not None and lane.channel.is_open:
            lane.closing = True
            lane.channel.close()

    # -- pika callbacks -----------------------------------------------------------------

    def _connection_open(self, index: int, connection) -> None:
        self.address = index
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
                self._channel.basic_consume(queue, functools.partial(self._delivered, queue, 0),
                                            auto_ack=False)
            )
        self._on_ready()

    def _lane_open(self, lane: _Lane, channel) -> None:
        lane.channel = channel
        channel.add_on_close_callback(lambda _ch, reason: self._lane_closed(lane, reason))
        channel.add_on_cancel_callback(lambda _frame: self._lane_cancelled(lane))
        if self._lanes.get(lane.queue) is not lane:  # unfollowed while opening
            lane.closing = True
            channel.close()
            return
        consume = functools.partial(
            channel.basic_consume, lane.queue,
            functools.partial(self._delivered, lane.queue, lane.id), auto_ack=False,
            callback=lambda _f: self._followed(lane, None))
        channel.basic_qos(prefetch_count=self._lane_prefetch, callback=lambda _f: consume())

    def _lane_cancelled(self, lane: _Lane) -> None:
        lane.cancelled = True
        if lane.channel is not None and lane.channel.is_open:
            lane.channel.close()

    def _lane_closed(self, lane: _Lane, reason) -> None:
        if self._lanes.get(lane.queue) is lane:
            del self._lanes[lane.queue]
        connection = self._connection
        if not lane.closing and connection is not None and connection.is_open:
            why = ("the broker cancelled the consumer (queue deleted?)" if lane.cancelled
                   else str(getattr(reason, "reply_text", "") or reason))
            self._followed(lane, why)

    def _followed(self, lane: _Lane, refusal: str | None) -> None:
        if self._on_follow is not None:
            self._on_follow(lane.queue, refusal)

    def _lane_channel(self, lane_id: int):
        for lane in self._lanes.values():
            if lane.id == lane_id:
                channel = lane.channel
                return channel if channel is not None and channel.is_open else None
        return None

    def _delivered(self, queue: str, lane: int, _channel, method: Basic.Deliver,
                   props: BasicProperties, body: bytes) -> None:
        if len(body) >= TRIM_AFTER:
            # pika joined the body from its frames and freed them: their pages go back
            # now, not after the package was parsed and written (vdx.malloc.trim)
            malloc.trim()
        self._on_message(Incoming(
            tag=method.delivery_tag, body=body, user_id=props.user_id,
            message_id=props.message_id, redelivered=bool(method.redelivered),
            headers=dict(props.headers or {}), queue=queue, type=props.type, lane=lane,
            routing_key=method.routing_key or "",
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
        self._lanes.clear()
        self._ioloop.stop()
        if reason.rstrip().endswith(":") and self.address is not None:
            params = self._params[self.address]  # pika gave no text
            reason = f"{reason.rstrip()} no broker answers at {params.host}:{params.port}"
        self._on_closed("closed" if self._closing else reason)
