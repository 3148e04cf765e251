"""The gateway's broker edge: a confirmed publisher and the inbox drainer (pika).

Both use the gateway's own broker account (``vdx.gateway``): the broker stamps and checks
``user_id``, and the hub accepts that account's packages only for nodes a connected
system serves.

:class:`InboxDrainer` runs on its own thread with its own connection. It consumes the
inbox ``vdx.node.<code>.inbox`` of every node some connected system serves (the set is
read again every few seconds, so adding or removing a system needs no restart), hands
each message to ``store`` (which commits it to the mailbox) and acknowledges it only
after ``store`` returned. A message ``store`` cannot keep goes back to the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions

from vdx.broker.channel import SUBMIT_EXCHANGE, inbox_queue
from vdx.errors import TransportError

log = logging.getLogger("vdx.gateway")

_AMQP_ERRORS = (pika.exceptions.AMQPError, OSError)


@dataclass(frozen=True)
class InboxMessage:
    """One message from a node's inbox, as the gateway sees it."""

    node_code: str
    body: bytes
    type: str | None
    message_id: str | None
    headers: dict


def broker_user(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).username or "guest")


class Publisher:
    """Publishes to ``vdx.submit`` with publisher confirms; safe to share across threads.

    One connection, opened on first use and again after a failure; each publish waits
    for its confirm (the gateway answers ``sendEdoc`` only once the broker took the
    package, so a retry after any failure is safe).
    """

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.user = broker_user(amqp_url)
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def publish(self, body: bytes, *, routing_key: str, message_id: str, type: str,
                headers: dict) -> None:
        """Raise ``transport.unavailable`` unless the broker confirmed the message."""
        properties = pika.BasicProperties(delivery_mode=2, user_id=self.user,
                                          message_id=message_id, type=type, headers=headers)
        with self._lock:
            for attempt in (1, 2):  # a connection that died while idle gets one retry
                try:
                    channel = self._open()
                    channel.basic_publish(SUBMIT_EXCHANGE, routing_key, body, properties,
                                          mandatory=True)
                    return
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    raise TransportError("transport.unavailable",
                                         f"the broker did not take the package ({exc!r})") \
                        from exc
                except _AMQP_ERRORS as exc:
                    self._reset()
                    if attempt == 2:
                        raise TransportError(
                            "transport.unavailable",
                            f"cannot publish to the broker as {self.user}: "
                            f"{type_name(exc)}") from exc

    def close(self) -> None:
        with self._lock:
            self._reset()

    def _open(self):
        if self._connection is None or self._connection.is_closed:
            params = pika.URLParameters(self.amqp_url)
            params.connection_attempts = 1
            params.socket_timeout = 10
            self._connection = pika.BlockingConnection(params)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except _AMQP_ERRORS:
                pass


class InboxDrainer:
    """Drains served nodes' inboxes into the mailbox (see the module docstring)."""

    def __init__(self, amqp_url: str, nodes: Callable[[], tuple[str, ...]],
                 store: Callable[[InboxMessage], None], *, refresh: float = 5.0,
                 prefetch: int = 50) -> None:
        self.amqp_url = amqp_url
        self._nodes = nodes
        self._store = store
        self._refresh = refresh
        self._prefetch = prefetch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consuming: dict[str, str] = {}  # node -> consumer tag
        self.ready = threading.Event()  # set once every served inbox is consumed

    def start(self) -> None:
        """Start (or, after :meth:`stop`, start again) on a thread of its own."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vdx-gateway-drainer",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._serve()
            except _AMQP_ERRORS as exc:
                log.warning("inbox drainer lost the broker; reconnecting",
                            extra={"event": "drainer_backoff", "reason": type_name(exc)})
            except Exception:  # a database outage, say: never let the thread die
                log.exception("inbox drainer failed; restarting it")
            self.ready.clear()
            self._consuming.clear()
            if time.monotonic() - started > 10:
                delay = 0.5
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _serve(self) -> None:
        params = pika.URLParameters(self.amqp_url)
        params.heartbeat = 30
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self._prefetch)
            next_refresh = 0.0
            while not self._stop.is_set():
                if time.monotonic() >= next_refresh:
                    channel = self._follow(connection, channel)
                    next_refresh = time.monotonic() + self._refresh
                connection.process_data_events(time_limit=0.2)
        finally:
            if connection.is_open:
                connection.close()

    def _follow(self, connection, channel):
        """Consume exactly the inboxes of the nodes served now; returns the channel."""
        wanted = set(self._nodes())
        for node in set(self._consuming) - wanted:
            channel.basic_cancel(self._consuming.pop(node))
        skipped: dict[str, str] = {}
        while True:
            node = ""
            try:
                for node in sorted(wanted - set(self._consuming) - set(skipped)):
                    self._consuming[node] = channel.basic_consume(inbox_queue(node),
                                                                  self._callback(node))
                break
            except pika.exceptions.ChannelClosedByBroker as exc:
                # No inbox (never provisioned) or no right to read it yet: the broker
                # closed the channel, and every consumer on it; start again without it.
                skipped[node] = exc.reply_text
                self._consuming.clear()
                channel = connection.channel()
                channel.basic_qos(prefetch_count=self._prefetch)
        if skipped:
            log.warning("cannot consume some inboxes; retrying later",
                        extra={"event": "inbox_missing", "nodes": skipped})
        self.ready.set()
        return channel

    def _callback(self, node: str):
        def on_message(channel, method, properties, body: bytes) -> None:
            message = InboxMessage(node, body, properties.type, properties.message_id,
                                   dict(properties.headers or {}))
            try:
                self._store(message)
            except Exception:
                log.exception("could not keep a delivery; it goes back to the queue",
                              extra={"event": "store_failed", "node": node})
                channel.basic_nack(method.delivery_tag, requeue=True)
                time.sleep(0.5)  # do not spin on a database that is down
                return
            channel.basic_ack(method.delivery_tag)
        return on_message


def type_name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
