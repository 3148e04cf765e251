"""An in-memory broker: the hub worker's channel without RabbitMQ, for unit tests.

:class:`MemoryBroker` holds what RabbitMQ would for one hub: the submission queue, the
inbox of every node bound to ``vdx.deliver`` and the dead letters.
:meth:`MemoryBroker.connect` opens a :class:`MemoryChannel`, which takes the callbacks
and keeps the promises of :class:`vdx.broker.channel.AsyncChannel` that the worker relies
on (:class:`vdx.hub.worker.Channel`):

- messages are delivered up to ``prefetch`` unacknowledged, tagged per channel; those
  still unacknowledged when the channel closes or its connection drops go back to the
  queue, marked redelivered; a rejected one without requeue is dead-lettered;
- publications are confirmed later, never inside :meth:`MemoryChannel.publish`, every
  pending one in one ``on_confirm`` as a ``multiple`` ack does; one that no bound inbox
  takes is returned first (publications are mandatory), then acked, as RabbitMQ does;
- callbacks and timers run on the thread in :meth:`MemoryChannel.run`, on real time;
  :meth:`MemoryChannel.add_callback` and :meth:`MemoryBroker.submit` are thread-safe.

Faults to test against: :meth:`MemoryBroker.drop_connection_at_next_ack` (the worker
committed but the broker never saw the ack), ``refuse_publications`` (the broker nacks
what is published). ``on_idle`` runs once, on the channel's loop, when there is nothing
left to do soon (no message, no callback, no confirm, no timer within ``idle_after``
seconds): a test stops its worker there.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from vdx.broker.wire import SUBMIT_QUEUE, Incoming, Outgoing


class MemoryBroker:
    """The queues of one hub; ``bound``: the routing keys (node codes) with an inbox."""

    def __init__(self, bound: Iterable[str] = (), *, idle_after: float = 0.2) -> None:
        self._lock = threading.Condition()
        self.queue: deque[Incoming] = deque()  # the submission queue, next first
        self.inboxes: dict[str, list[Outgoing]] = {code: [] for code in bound}
        self.acked: list[Incoming] = []
        self.dead: list[Incoming] = []
        self.on_ack: Callable[[Incoming], None] | None = None  # called as each ack arrives
        self.on_idle: Callable[[], None] | None = None
        self.idle_after = idle_after
        self.refuse_publications = False
        self._drop_at_ack = False

    def submit(self, body: bytes, *, user_id: str | None, message_id: str | None = None,
               headers: dict | None = None, type: str | None = None) -> str:
        """Publish ``body`` to the submission queue as ``user_id``; its message id."""
        message_id = message_id or str(uuid.uuid4())
        with self._lock:
            self.queue.append(Incoming(tag=0, body=body, user_id=user_id,
                                       message_id=message_id, redelivered=False,
                                       headers=dict(headers or {}), queue=SUBMIT_QUEUE,
                                       type=type))
            self._lock.notify_all()
        return message_id

    def drop_connection_at_next_ack(self) -> None:
        """The next ack is lost with the connection: its message (and every other one
        unacknowledged) is redelivered, and what is published after it never arrives."""
        self._drop_at_ack = True

    def received(self, code: str) -> list[Outgoing]:
        """What was delivered to node ``code``'s inbox."""
        return self.inboxes[code]

    def connect(self, *, on_ready: Callable[[], None],
                on_message: Callable[[Incoming], None],
                on_confirm: Callable[[list[object], bool], None],
                on_returned: Callable[[object], None],
                on_closed: Callable[[str], None],
                on_follow: Callable[[str, str | None], None] | None = None,
                prefetch: int = 200) -> MemoryChannel:
        """A new channel consuming the submission queue (what the worker's ``channel``
        argument is called with for each connection)."""
        return MemoryChannel(self, prefetch, on_ready=on_ready, on_message=on_message,
                             on_confirm=on_confirm, on_returned=on_returned,
                             on_closed=on_closed)


@dataclass
class _Timer:
    due: float
    fn: Callable[[], None]
    cancelled: bool = False


class MemoryChannel:
    """One connection and channel to a :class:`MemoryBroker` (see the module's notes)."""

    def __init__(self, broker: MemoryBroker, prefetch: int, *,
                 on_ready: Callable[[], None],
                 on_message: Callable[[Incoming], None],
                 on_confirm: Callable[[list[object], bool], None],
                 on_returned: Callable[[object], None],
                 on_closed: Callable[[str], None]) -> None:
        self._broker = broker
        self._lock = broker._lock
        self._prefetch = prefetch
        self._on_ready = on_ready
        self._on_message = on_message
        self._on_confirm = on_confirm
        self._on_returned = on_returned
        self._on_closed = on_closed
        self._calls: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._tags = itertools.count(1)
        self._unacked: dict[int, Incoming] = {}
        self._unconfirmed: list[object] = []
        self._returned: list[object] = []
        self._ok = True  # the broker's answer to the pending publications
        self._running = False
        self._consuming = False
        self._closing = False
        self._lost: str | None = None  # why the connection dropped

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Consume and run callbacks and timers until the channel closes."""
        with self._lock:
            self._running = self._consuming = True
            self._calls.append(self._on_ready)
        try:
            while (step := self._next()) is not None:
                step()
        finally:  # as the broker does when a channel goes, with or without a goodbye
            with self._lock:  # the unacknowledged go back, ahead of the others
                self._broker.queue.extendleft(replace(m, tag=0, redelivered=True)
                                              for m in reversed(self._unacked.values()))
                self._unacked.clear()
                self._unconfirmed.clear()
                self._lock.notify_all()
        self._on_closed("closed" if self._lost is None else self._lost)

    def call_later(self, delay: float, fn: Callable[[], None]) -> object:
        timer = _Timer(time.monotonic() + delay, fn)
        heapq.heappush(self._timers, (timer.due, next(self._order), timer))
        return timer

    def remove_timeout(self, handle: object) -> None:
        handle.cancelled = True  # type: ignore[attr-defined]

    def add_callback(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._running:  # as AsyncChannel's: dropped before the loop runs
                self._calls.append(fn)
                self._lock.notify_all()

    def stop_consuming(self, then: Callable[[], None]) -> None:
        self._consuming = False
        self._calls.append(then)

    def close(self) -> None:
        self._closing = True

    @property
    def is_open(self) -> bool:
        return not self._closing and self._lost is None

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    # -- operations ---------------------------------------------------------------------

    def follow(self, queue: str) -> None:
        """Nothing: this broker has the one submission queue, which every channel consumes."""

    def ack(self, tag: int, *, lane: int = 0) -> None:
        if not self.is_open:
            return
        if self._broker._drop_at_ack:
            self._broker._drop_at_ack = False
            self._lost = "connection lost"
            return
        message = self._take(tag)
        if message is None:
            return
        self._broker.acked.append(message)
        if self._broker.on_ack is not None:
            self._broker.on_ack(message)

    def nack(self, tag: int, requeue: bool, *, lane: int = 0) -> None:
        if not self.is_open:
            return
        message = self._take(tag)
        if message is None:
            return
        message = replace(message, tag=0, redelivered=True)
        with self._lock:
            if requeue:
                self._broker.queue.appendleft(message)
            else:  # to the dead-letter queue
                self._broker.dead.append(message)

    def publish(self, message: Outgoing, token: object) -> None:
        if not self.is_open:
            return  # the frames never reach the broker
        if self._broker.refuse_publications:
            self._ok = False
        elif message.routing_key in self._broker.inboxes:
            self._broker.inboxes[message.routing_key].append(message)
        else:
            self._returned.append(message.message_id)
        self._unconfirmed.append(token)

    # -- the loop -----------------------------------------------------------------------

    def _take(self, tag: int) -> Incoming | None:
        if tag not in self._unacked:  # RabbitMQ closes the channel for this
            self._lost = f"PRECONDITION_FAILED - unknown delivery tag {tag}"
            return None
        return self._unacked.pop(tag)

    def _next(self) -> Callable[[], None] | None:
        """What runs next, or None once closed; waits for a timer or another thread."""
        with self._lock:
            while not self._closing and self._lost is None:
                if self._calls:
                    return self._calls.popleft()
                if self._unconfirmed:
                    return self._confirm
                if (self._consuming and self._broker.queue
                        and len(self._unacked) < self._prefetch):
                    return self._deliver
                while self._timers and self._timers[0][2].cancelled:
                    heapq.heappop(self._timers)
                now = time.monotonic()
                due = self._timers[0][0] if self._timers else None
                if due is not None and due <= now:
                    return heapq.heappop(self._timers)[2].fn
                if self._broker.on_idle is not None and (
                        due is None or due - now > self._broker.idle_after):
                    idle, self._broker.on_idle = self._broker.on_idle, None
                    return idle
                self._lock.wait(None if due is None else due - now)
            return None

    def _deliver(self) -> None:
        with self._lock:
            if not self._broker.queue:
                return
            message = replace(self._broker.queue.popleft(), tag=next(self._tags))
        self._unacked[message.tag] = message
        self._on_message(message)

    def _confirm(self) -> None:
        returned, self._returned = self._returned, []
        tokens, self._unconfirmed = self._unconfirmed, []
        ok, self._ok = self._ok, True
        for message_id in returned:
            self._on_returned(message_id)
        self._on_confirm(tokens, ok)
