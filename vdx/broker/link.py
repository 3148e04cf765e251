"""The node client's broker connection: one I/O thread, reconnected with backoff.

:class:`Link` runs a :class:`vdx.broker.channel.AsyncChannel` (pika stays in that module) on a
background thread. It consumes the node's inbox and publishes with pipelined publisher
confirms; callers on other threads get thread-safe methods:

- :meth:`Link.publish` returns a :class:`Publication` at once; it completes when the
  broker confirms (or refuses) the message. A publication not yet confirmed when the
  connection drops is published again, with the same message id, once the link is back:
  the hub drops a second copy of a message id it already journaled.
- :meth:`Link.settle` acknowledges or rejects a consumed message. A message consumed on
  an earlier connection cannot be settled any more (the broker already gave it back to
  the queue and will deliver it again), so such calls are ignored.

``on_message(generation, incoming)`` runs on the I/O thread; ``generation`` numbers the
connection the message came on and is what :meth:`Link.settle` needs with its tag.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from vdx.broker.channel import AsyncChannel, Incoming, Outgoing
from vdx.errors import TransportError

log = logging.getLogger("vdx.client")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
# A connection that lived this long was healthy: the next failure starts the backoff over.
HEALTHY_AFTER = 10.0
# Failures that retrying cannot fix; reported at once by Link.start.
_FATAL = ("ACCESS_REFUSED", "ProbableAuthenticationError", "NOT_ALLOWED", "403")


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
    """The client's connection; see the module docstring."""

    def __init__(self, url: str, queue: str, prefetch: int,
                 on_message: Callable[[int, Incoming], None], name: str = "vdx-client") -> None:
        self._url = url
        self._queue = queue
        self._prefetch = prefetch
        self._on_message = on_message
        self._name = name
        self._lock = threading.Lock()
        self._pending: dict[str, Publication] = {}  # by message id, in publishing order
        self._channel: AsyncChannel | None = None
        self._generation = 0
        self._ready = threading.Event()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._attempts = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float) -> None:
        """Connect; raise :class:`TransportError` if not connected within ``timeout``
        seconds, or at once for a refusal that retrying cannot fix (bad password)."""
        if self._thread is not None:
            raise TransportError("transport.unavailable", "this client failed to connect "
                                 "before or was closed; create a new one")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            reason = self.last_error or ""
            if any(mark in reason for mark in _FATAL) or time.monotonic() > deadline:
                self.stop(0)
                reason = reason.removeprefix("cannot connect: ") or "timed out"
                raise TransportError("transport.unavailable",
                                     f"cannot connect to the broker: {reason}")

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
        delay = BACKOFF_START
        while not self._stopping:
            self._attempts += 1
            channel = AsyncChannel(
                self._url, (self._queue,), self._prefetch, on_ready=self._connected,
                on_message=self._received, on_confirm=self._confirmed,
                on_returned=self._returned, on_closed=self._closed)
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
            if self._stopping:
                break
            if time.monotonic() - started > HEALTHY_AFTER:
                delay = BACKOFF_START
            log.warning("reconnecting", extra={"event": "backoff", "seconds": delay,
                                               "reason": self.last_error})
            self._wake.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX)

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

    def settle(self, generation: int, tag: int, *, ack: bool, requeue: bool = False) -> None:
        """Ack (``ack=True``) or nack a message consumed on connection ``generation``."""
        channel = self._channel

        def settle_now() -> None:
            if self._generation != generation or self._channel is not channel:
                return  # consumed on a connection that is gone: the broker redelivers it
            try:
                if ack:
                    channel.ack(tag)
                else:
                    channel.nack(tag, requeue=requeue)
            except Exception as exc:  # noqa: BLE001 - a closing channel: same as above
                log.info("could not settle a message", extra={"event": "settle_failed",
                                                             "reason": str(exc)})

        if channel is not None:
            self._call(channel, settle_now)

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
        log.info("connected", extra={"event": "connected", "queue": self._queue,
                                     "generation": self._generation})
        with self._lock:
            channel = self._channel
            pending = list(self._pending.values())
            self._ready.set()
        for publication in pending:
            self._publish_now(channel, publication)

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
            # Callbacks first: once `unconfirmed` reads 0, what they queued (acks) is
            # already ahead of a close in the loop's queue.
            publication._finish(None if ok else "the broker refused the message "
                                                "(publisher nack)")
            with self._lock:
                self._pending.pop(publication.message.message_id, None)

    def _returned(self, message_id: object) -> None:
        log.error("the broker could not route a message", extra={
            "event": "returned", "message_id": str(message_id)})

    def _closed(self, reason: str) -> None:
        self._ready.clear()
        if reason != "closed":
            if reason.rstrip().endswith(":"):  # pika gave no text (connection refused)
                where = urlsplit(self._url)
                reason = f"{reason.rstrip()} no broker answers at {where.hostname}:" \
                         f"{where.port or 5672}"
            self.last_error = reason
            log.warning("broker connection lost", extra={"event": "closed", "reason": reason})
