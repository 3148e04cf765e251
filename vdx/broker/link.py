"""A program's broker connection: one I/O thread, reconnected with one backoff.

:class:`Link` runs a :class:`vdx.broker.channel.AsyncChannel` (pika stays in that module) on a
background thread, for every program but the hub worker (which drives its channel on its
own loop, with the same :class:`Backoff`): the SDK (and the folder bridge through it) and
the gateway. It consumes fixed queues (a node's inbox) and any set of queues given to
:meth:`Link.follow` (the inboxes the gateway serves), and publishes with pipelined
publisher confirms; callers on other threads get thread-safe methods:

- :meth:`Link.publish` returns a :class:`Publication` at once; it completes when the
  broker confirms the message, or refuses it (a publisher nack, or a message it could not
  route, which it returns before confirming). A publication not yet confirmed when the
  connection drops is published again, with the same message id, once the link is back:
  the hub drops a second copy of a message id it already journaled.
- :meth:`Link.settle` acknowledges or rejects a consumed message. A message consumed on
  an earlier connection (or a lane closed since) cannot be settled any more (the broker
  already gave it back to the queue and will deliver it again), so such calls are ignored.

The broker's address is a list (comma-separated URLs, :func:`vdx.broker.channel.addresses`):
each connection tries them in turn, starting with the one that worked last, and the link
waits :class:`Backoff` only when none answered.

``on_message(generation, incoming)`` runs on the I/O thread; ``generation`` numbers the
connection the message came on and is what :meth:`Link.settle` needs with its tag (and
its ``lane``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from vdx.broker.channel import AsyncChannel, addresses
from vdx.broker.wire import Incoming, Outgoing
from vdx.errors import TransportError

log = logging.getLogger("vdx.client")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
# A connection that lived this long was healthy: the next failure starts the backoff over.
HEALTHY_AFTER = 10.0
# Failures that retrying cannot fix; reported at once by Link.start.
_FATAL = ("ACCESS_REFUSED", "ProbableAuthenticationError", "NOT_ALLOWED", "403")


class Backoff:
    """How long to wait before the next connection attempt: :data:`BACKOFF_START`,
    doubled after each failure up to :data:`BACKOFF_MAX`, and from the start again after
    a connection that lived :data:`HEALTHY_AFTER` seconds."""

    def __init__(self, start: float = BACKOFF_START, maximum: float = BACKOFF_MAX,
                 healthy_after: float = HEALTHY_AFTER) -> None:
        self.start, self.maximum, self.healthy_after = start, maximum, healthy_after
        self._delay = start

    def ran(self, seconds: float) -> None:
        """A connection (or a serving loop) ended after ``seconds``."""
        if seconds > self.healthy_after:
            self._delay = self.start

    def next(self) -> float:
        """The delay to wait now; the following one is longer."""
        delay = self._delay
        self._delay = min(delay * 2, self.maximum)
        return delay


def fatal(reason: str | None) -> bool:
    """Whether a connection failure is one retrying cannot fix (a refused login)."""
    return any(mark in (reason or "") for mark in _FATAL)


class Publication:
    """One message handed to the link; :meth:`wait` until the broker has it."""

    def __init__(self, message: Outgoing) -> None:
        self.message = message
        self.error: str | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[Publication], None]] = []
        self._sent_on = 0  # the connection generation it was last published on

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ok(self) -> bool:
        """True once the broker confirmed it (it is then durably queued)."""
        return self._done.is_set() and self.error is None

    def wait(self, timeout: float | None) -> bool:
        """True once confirmed or refused (see :attr:`error`); False on timeout."""
        return self._done.wait(timeout)

    def add_done_callback(self, fn: Callable[[Publication], None]) -> None:
        """Call ``fn(self)`` when done: on the I/O thread, or now if already done."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def _finish(self, error: str | None) -> None:
        with self._lock:
            self.error = error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # a caller's callback must not kill the I/O loop
                log.exception("publication callback failed")


class Link:
    """A program's connection; see the module docstring.

    ``urls``: the broker's address(es); ``queues``: consumed on every connection;
    ``prefetch``: unacknowledged messages per consumer channel.
    """

    def __init__(self, urls: str | Sequence[str], *, queues: tuple[str, ...] = (),
                 prefetch: int = 64,
                 on_message: Callable[[int, Incoming], None] | None = None,
                 name: str = "vdx-client") -> None:
        self._urls = addresses(urls)
        self._queues = queues
        self._prefetch = prefetch
        self._on_message = on_message or _refuse_messages
        self._name = name
        self._lock = threading.Lock()
        self._pending: dict[str, Publication] = {}  # by message id, in publishing order
        self._returned: set[object] = set()  # message ids the broker could not route
        self._channel: AsyncChannel | None = None
        self._generation = 0
        self._address = 0  # where to start: the address that worked last
        self._ready = threading.Event()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._followed: frozenset[str] = frozenset()
        self._following: dict[str, str | None] = {}  # queue -> None (consumed) or refusal
        self.last_error: str | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float) -> None:
        """Connect; raise :class:`TransportError` if not connected within ``timeout``
        seconds, or at once for a refusal that retrying cannot fix (bad password)."""
        if self._thread is not None:
            raise TransportError("transport.unavailable", "this client failed to connect "
                                 "before or was closed; create a new one")
        self.open()
        if not self.wait_connected(timeout):
            reason = self.last_error or ""
            self.stop(0)
            reason = reason.removeprefix("cannot connect: ") or "timed out"
            raise TransportError("transport.unavailable",
                                 f"cannot connect to the broker: {reason}")

    def open(self) -> Link:
        """Start connecting in the background (and reconnecting, until :meth:`stop`)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name,
                                                daemon=True)
                self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """True once connected; False after ``timeout`` seconds, or as soon as the broker
        refused the login (:attr:`last_error` says why)."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if fatal(self.last_error) or time.monotonic() > deadline or self._stopping:
                return self._ready.is_set()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection (unacknowledged messages go back to the queue)."""
        self._stopping = True
        self._wake.set()
        channel = self._channel
        if channel is not None:
            try:
                channel.add_callback(channel.close)
            except Exception:  # noqa: BLE001 - the loop is already gone
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def unconfirmed(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            channel = AsyncChannel(
                self._urls, self._queues, self._prefetch, on_ready=self._connected,
                on_message=self._received, on_confirm=self._confirmed,
                on_returned=self._on_returned, on_closed=self._closed,
                on_follow=self._follow_result, start_at=self._address)
            with self._lock:
                self._channel = channel
            started = time.monotonic()
            try:
                channel.run()
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("broker connection failed", extra={"event": "link_error",
                                                               "reason": self.last_error})
            with self._lock:
                self._channel = None
                self._ready.clear()
                self._following.clear()
            if self._stopping:
                break
            backoff.ran(time.monotonic() - started)
            delay = backoff.next()
            log.warning("reconnecting", extra={"event": "backoff", "seconds": delay,
                                               "reason": self.last_error})
            self._wake.wait(delay)

    # ----------------------------------------------------------------- operations

    def publish(self, message: Outgoing) -> Publication:
        """Publish ``message`` (persistent, confirmed); returns without waiting."""
        publication = Publication(message)
        with self._lock:
            if self._stopping:
                raise TransportError("transport.unavailable", "the client is closed")
            self._pending[message.message_id] = publication
            channel = self._channel if self._ready.is_set() else None
        if channel is not None:
            self._call(channel, lambda: self._publish_now(channel, publication))
        # Otherwise the next _connected publishes everything pending.
        return publication

    def settle(self, generation: int, tag: int, *, ack: bool, requeue: bool = False,
               lane: int = 0) -> None:
        """Ack (``ack=True``) or nack a message consumed on connection ``generation``
        (and ``lane``, :attr:`Incoming.lane`)."""
        channel = self._channel

        def settle_now() -> None:
            if self._generation != generation or self._channel is not channel:
                return  # consumed on a connection that is gone: the broker redelivers it
            try:
                if ack:
                    channel.ack(tag, lane=lane)
                else:
                    channel.nack(tag, requeue=requeue, lane=lane)
            except Exception as exc:  # noqa: BLE001 - a closing channel: same as above
                log.info("could not settle a message", extra={"event": "settle_failed",
                                                             "reason": str(exc)})

        if channel is not None:
            self._call(channel, settle_now)

    def follow(self, queues: Iterable[str]) -> None:
        """Consume exactly ``queues`` besides the fixed ones, now and after every
        reconnection; a queue the broker refused is tried again at the next call."""
        with self._lock:
            self._followed = frozenset(queues)
            channel = self._channel if self._ready.is_set() else None
        if channel is not None:
            self._call(channel, lambda: self._follow_now(channel))

    def following(self) -> dict[str, str | None]:
        """The followed queues the broker answered for on this connection: None for
        one consumed, the broker's reason for one refused."""
        with self._lock:
            return {q: r for q, r in self._following.items() if q in self._followed}

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the I/O thread if connected (dropped otherwise)."""
        channel = self._channel
        if channel is not None:
            self._call(channel, fn)

    # ----------------------------------------------------------------- I/O thread

    @staticmethod
    def _call(channel: AsyncChannel, fn: Callable[[], None]) -> None:
        try:
            channel.add_callback(fn)
        except Exception:  # noqa: BLE001 - the loop stopped: reconnection handles it
            pass

    def _connected(self) -> None:
        self._generation += 1
        self.last_error = None
        with self._lock:
            channel = self._channel
            pending = list(self._pending.values())
            self._ready.set()
        if channel is not None and channel.address is not None:
            self._address = channel.address
        log.info("connected", extra={"event": "connected", "queues": list(self._queues),
                                     "generation": self._generation,
                                     "address": self._address})
        for publication in pending:
            self._publish_now(channel, publication)
        self._follow_now(channel)

    def _follow_now(self, channel: AsyncChannel | None) -> None:
        if channel is None or channel is not self._channel:
            return
        with self._lock:
            wanted = self._followed
            for queue in [q for q in self._following if q not in wanted]:
                del self._following[queue]
        for queue in channel.lanes - wanted:
            channel.unfollow(queue)
        # A refused queue has no lane any more: it is tried again (its refusal stays
        # in `following` until the broker answers again).
        for queue in wanted - channel.lanes:
            channel.follow(queue)

    def _follow_result(self, queue: str, refusal: str | None) -> None:
        with self._lock:
            self._following[queue] = refusal

    def _publish_now(self, channel: AsyncChannel | None, publication: Publication) -> None:
        if (channel is None or channel is not self._channel or publication.done
                or publication._sent_on == self._generation):
            return
        try:
            channel.publish(publication.message, publication)
        except Exception as exc:  # noqa: BLE001 - the channel is closing; we will retry
            log.info("publish deferred", extra={"event": "publish_deferred", "reason": str(exc)})
            return
        publication._sent_on = self._generation

    def _received(self, incoming: Incoming) -> None:
        self._on_message(self._generation, incoming)

    def _confirmed(self, tokens: list[object], ok: bool) -> None:
        for token in tokens:
            publication: Publication = token  # type: ignore[assignment]
            message_id = publication.message.message_id
            if not ok:
                error: str | None = "the broker refused the message (publisher nack)"
            elif message_id in self._returned:
                # The broker acks an unroutable mandatory message right after returning it.
                self._returned.discard(message_id)
                error = (f"the broker could not route the message (no queue bound to "
                         f"{publication.message.exchange} for "
                         f"{publication.message.routing_key!r})")
            else:
                error = None
            # Callbacks first: once `unconfirmed` reads 0, what they queued (acks) is
            # already ahead of a close in the loop's queue.
            publication._finish(error)
            with self._lock:
                if self._pending.get(message_id) is publication:
                    del self._pending[message_id]

    def _on_returned(self, message_id: object) -> None:
        log.error("the broker could not route a message", extra={
            "event": "returned", "message_id": str(message_id)})
        self._returned.add(message_id)

    def _closed(self, reason: str) -> None:
        self._ready.clear()
        self._returned.clear()
        if reason != "closed":
            self.last_error = reason
            log.warning("broker connection lost", extra={"event": "closed", "reason": reason})


def _refuse_messages(generation: int, incoming: Incoming) -> None:
    raise RuntimeError("a link without on_message consumes nothing")
