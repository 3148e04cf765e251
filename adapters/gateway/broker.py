"""The gateway's broker edge: a confirmed publisher and the inbox drainer.

Both use the gateway's own broker account (``vdx.gateway``): the broker stamps and checks
``user_id``, and the hub accepts that account's packages only for nodes a connected
system serves. Both run on :class:`vdx.broker.link.Link`, the SDK's connection (one
reconnection with backoff, the broker's addresses tried in turn, one publisher-confirm
handling), each on a connection of its own, so that a slow mailbox commit never holds up
the confirm ``sendEdoc`` waits for.

:class:`InboxDrainer` follows the inbox ``vdx.node.<code>.inbox`` and the receipts queue
``vdx.node.<code>.receipts`` of every node some connected system serves, each on a lane of
its own, so that receipts never wait behind deliveries (the set is read again every few
seconds, so adding or removing a system needs no restart; a queue the broker refuses, not
provisioned or not readable yet, is tried again at each reading), hands each message to
``store`` (which commits it to the mailbox) on a thread of its own and acknowledges it
only after ``store`` returned. A message ``store`` cannot keep goes back to the queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vdx.broker.channel import broker_user
from vdx.broker.link import Link, fatal
from vdx.broker.wire import (
    Incoming,
    Outgoing,
    inbox_node,
    inbox_queue,
    receipts_node,
    receipts_queue,
)
from vdx.errors import TransportError

log = logging.getLogger("vdx.gateway")


@dataclass(frozen=True)
class InboxMessage:
    """One message from a node's inbox, as the gateway sees it."""

    node_code: str
    body: bytes
    type: str | None
    message_id: str | None
    headers: dict


class Publisher:
    """Publishes to ``vdx.submit`` with publisher confirms; safe to share across threads.

    The connection opens on first use and comes back by itself after a failure; each
    :meth:`publish` waits for its confirm (the gateway answers ``sendEdoc`` only once the
    broker took the package, so a retry after any failure is safe).
    """

    def __init__(self, amqp_url: str, *, connect_timeout: float = 10.0,
                 confirm_timeout: float = 30.0) -> None:
        self.amqp_url = amqp_url
        self.user = broker_user(amqp_url)
        self.connect_timeout = connect_timeout
        self.confirm_timeout = confirm_timeout
        self._lock = threading.Lock()
        self._link: Link | None = None

    def publish(self, message: Outgoing) -> None:
        """Raise ``transport.unavailable`` unless the broker confirmed ``message``."""
        link = self._open()
        if not link.wait_connected(self.connect_timeout):
            raise TransportError("transport.unavailable",
                                 f"cannot publish to the broker as {self.user}: "
                                 f"{link.last_error or 'not connected'}")
        publication = link.publish(message)
        # Unconfirmed, it stays with the link, which publishes it again once connected:
        # the hub keeps one copy of a message id.
        if not publication.wait(self.confirm_timeout):
            raise TransportError("transport.unavailable",
                                 f"the broker did not confirm the package within "
                                 f"{self.confirm_timeout:g} s ({link.last_error or 'no answer'})")
        if publication.error:
            raise TransportError("transport.unavailable",
                                 f"the broker did not take the package ({publication.error})")

    def close(self) -> None:
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.stop()

    def _open(self) -> Link:
        with self._lock:
            if self._link is None or fatal(self._link.last_error):
                if self._link is not None:  # a refused login: try afresh (a reset password)
                    self._link.stop(0)
                self._link = Link(self.amqp_url, name="vdx-gateway-publisher").open()
            return self._link


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
        self._link: Link | None = None
        self._arrived: queue.Queue[tuple[int, Incoming]] = queue.Queue()
        self._wanted: dict[str, str] = {}  # inbox or receipts queue -> node, as last read
        self.ready = threading.Event()  # set once every served queue is consumed or refused

    def start(self) -> None:
        """Start (or, after :meth:`stop`, start again) on a thread of its own."""
        self._stop.clear()
        self._arrived = queue.Queue()
        self._wanted = {}
        self._link = Link(self.amqp_url, prefetch=self._prefetch, on_message=self._on_message,
                          name="vdx-gateway-drainer").open()
        self._thread = threading.Thread(target=self._run, args=(self._link, self._arrived),
                                        name="vdx-gateway-drainer-store", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._link is not None:
            self._link.stop(timeout)  # what was not acknowledged goes back to the queues
        self.ready.clear()

    @property
    def refused(self) -> dict[str, str]:
        """Served nodes whose inbox or receipts queue the broker refused to this
        connection, and why (not provisioned, or no right to read it yet); tried again at
        each reading. (A node without a receipts queue yet gets its receipts in its inbox.)"""
        link = self._link
        if link is None:
            return {}
        refused: dict[str, str] = {}
        for q, why in sorted(link.following().items()):
            if why is not None:
                node = self._wanted.get(q, q)
                refused[node] = f"{refused[node]}; {q}: {why}" if node in refused \
                    else f"{q}: {why}"
        return refused

    def _on_message(self, generation: int, incoming: Incoming) -> None:
        self._arrived.put((generation, incoming))  # I/O thread: the commit waits elsewhere

    def _run(self, link: Link, arrived: queue.Queue[tuple[int, Incoming]]) -> None:
        next_refresh = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_refresh:
                self._follow(link)
                next_refresh = time.monotonic() + self._refresh
            self._check_ready(link)
            try:
                generation, incoming = arrived.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._keep(link, generation, incoming)
            except Exception:  # never let the thread die: the broker redelivers it
                log.exception("inbox drainer failed on a message", extra={"event": "crash"})

    def _follow(self, link: Link) -> None:
        """Consume exactly the inboxes and receipts queues of the nodes served now."""
        try:
            nodes = self._nodes()
        except Exception:  # a database outage, say: never let the thread die
            log.exception("cannot read the served nodes; keeping the inboxes followed")
            return
        refused = self.refused
        if refused:
            log.warning("cannot consume some inboxes; retrying",
                        extra={"event": "inbox_missing", "nodes": refused})
        self._wanted = {queue(node): node for node in nodes
                        for queue in (inbox_queue, receipts_queue)}
        link.follow(self._wanted)

    def _check_ready(self, link: Link) -> None:
        if not link.connected:
            self.ready.clear()
        elif set(self._wanted) <= set(link.following()):
            self.ready.set()

    def _keep(self, link: Link, generation: int, incoming: Incoming) -> None:
        node = (self._wanted.get(incoming.queue) or inbox_node(incoming.queue)
                or receipts_node(incoming.queue) or "")
        message = InboxMessage(node, incoming.body, incoming.type, incoming.message_id,
                               incoming.headers)
        try:
            self._store(message)
        except Exception:
            log.exception("could not keep a delivery; it goes back to the queue",
                          extra={"event": "store_failed", "node": node})
            link.settle(generation, incoming.tag, ack=False, requeue=True, lane=incoming.lane)
            self._stop.wait(0.5)  # do not spin on a database that is down
            return
        link.settle(generation, incoming.tag, ack=True, lane=incoming.lane)

