"""The hub worker: consume submissions, admit them, journal them, publish, acknowledge.

One worker process owns one broker connection (a :class:`Channel`: RabbitMQ's
:class:`vdx.broker.channel.AsyncChannel`, or :class:`vdx.broker.memory.MemoryChannel` in
unit tests) and runs this loop on its I/O thread:

1. messages arrive from every node's submit queue ``vdx.hub.submit.<code>`` (up to
   ``node_prefetch`` unacknowledged each; the registry is read again every
   ``discover_every`` seconds, so a node registered since is served without a restart)
   and from the shared ``vdx.hub.submit`` (``prefetch``); they wait per queue, and a
   batch takes one from each queue in turn (closed as soon as the loop has read what
   the socket holds, or at ``batch_max`` messages or ``batch_bytes`` of bodies), so a
   node that floods gets its turn like any other instead of the whole hub;
   a package beyond its node's limits (:mod:`vdx.hub.limits`) is refused there,
   before any parse or signature check;
2. each is run through :func:`vdx.hub.pipeline.admit` (size, parse, schema, signature,
   authorise) against one read-only view of the registry for the batch; the batch's
   redeliveries and duplicates are found with one query each, and its receipts are
   signed, all before any write (:class:`vdx.hub.plan.Planner`, no I/O of its own);
3. ONE short transaction inserts, for the whole batch, every document, delivery,
   receipt, outbox row and ledger entry, a few multi-row INSERTs (:meth:`HubWorker._write`;
   on PostgreSQL prepared INSERTs sent in one pipeline, :func:`vdx.hub.journal.pipelined`);
4. only then are the messages acknowledged, and the outbox rows published with
   pipelined confirms (built from the values in hand, not read back);
5. what the broker confirmed is recorded in the next batch's transaction, before its
   rows: the outbox rows marked published, the deliveries claimed, and each claimed
   delivery's ``delivered`` receipt (signed before the transaction) with its ledger
   entry, so a steady stream costs one commit per batch. Confirmations get a
   transaction of their own only when no batch comes within ``confirm_wait``, on
   draining, or when the batch carrying them fails (before it is retried or given
   back to the broker).

A crash anywhere loses nothing: before the commit the broker redelivers the messages;
after it, the outbox is published again on restart (the same delivery id, so adapters
drop the copy). A message that keeps killing the worker is refused with
``transport.poison`` and dead-lettered after :data:`POISON_AFTER` attempts.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import signal
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vdx import metrics, store
from vdx.broker import wire
from vdx.broker.channel import AsyncChannel
from vdx.broker.link import Backoff
from vdx.broker.wire import SUBMIT_QUEUE, Incoming, Outgoing, submit_key_node, submit_queue
from vdx.core.receipts import Receipt
from vdx.core.xmlsafe import ParseLimits
from vdx.errors import VdxError
from vdx.hub import journal
from vdx.hub import limits as node_limits
from vdx.hub.journal import (
    DeliveryRow,
    DocumentRow,
    InboundRow,
    OutboxRow,
    ReceiptRow,
    utcnow,
)
from vdx.hub.pipeline import admit
from vdx.hub.plan import POISON_AFTER, BatchDirectory, Delivery, Plan, Planner, message_key
from vdx.registry import nodes as registry

log = logging.getLogger("vdx.hub")

RELAY_AFTER = 30.0  # seconds before another worker's unconfirmed outbox rows are relayed
REFOLLOW_AFTER = 60.0  # seconds before a submit queue the broker refused is tried again
# One node's packages a worker holds at once, and how many of them one batch takes: a
# flooding node's batches stay short, so another node's package waits at most about one
# such batch. The window is a few batches deep, so the broker refills it while a batch is
# worked on (10 kept a node sending alone at batches of 10 and the broker's round trip
# between them: 30 measured +20-37 % documents/s at 10 KB, the same loaded p99 for
# another node). Counted in messages, not bytes (RabbitMQ has no byte prefetch): with
# packages of tens of MiB, a smaller VDX_NODE_PREFETCH bounds what a worker holds.
NODE_PREFETCH = 30
NODE_BATCH = 3
ACTIVE_WINDOW = 2.0  # seconds: a node that sent within this long is taking turns


class Channel(Protocol):
    """What the worker uses of its broker channel, one per connection.

    Everything runs on the channel's loop, in :meth:`run`, except :meth:`add_callback`,
    which any thread may call. Consumed messages arrive through ``on_message`` and are
    settled with :meth:`ack` or :meth:`nack`; publications are persistent and mandatory,
    and their ``token`` comes back through ``on_confirm`` once the broker took them (or
    refused them), after ``on_returned`` for one no queue was bound to.
    """

    def run(self) -> None:
        """Connect, consume, and run callbacks and timers until the connection closes;
        ``on_closed`` is called before it returns."""

    def close(self) -> None: ...

    @property
    def is_open(self) -> bool:
        """Acks and publications can be taken (False once closing)."""

    @property
    def unconfirmed(self) -> int:
        """Publications the broker has not confirmed yet."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> object: ...

    def remove_timeout(self, handle: object) -> None: ...

    def add_callback(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop, from any thread."""

    def stop_consuming(self, then: Callable[[], None]) -> None:
        """No more deliveries; ``then`` runs once the broker agreed."""

    def ack(self, tag: int, *, lane: int = 0) -> None: ...

    def nack(self, tag: int, requeue: bool, *, lane: int = 0) -> None: ...

    def publish(self, message: Outgoing, token: object) -> None: ...

    def follow(self, queue: str) -> None:
        """Consume ``queue`` too (on a lane of its own; ``on_follow`` tells how it went);
        nothing if it is consumed already."""


class OpenChannel(Protocol):
    """Opens the worker's channel for one connection: the submission queue, consumed with
    its prefetch, and the callbacks it calls on its loop."""

    def __call__(self, *, on_ready: Callable[[], None],
                 on_message: Callable[[Incoming], None],
                 on_confirm: Callable[[list[object], bool], None],
                 on_returned: Callable[[object], None],
                 on_closed: Callable[[str], None],
                 on_follow: Callable[[str, str | None], None]) -> Channel: ...


@dataclass(frozen=True)
class WorkerConfig:
    hub_id: str
    amqp_url: str
    prefetch: int = 200  # the shared queue's unacknowledged messages
    node_prefetch: int = NODE_PREFETCH  # each node's submit queue's
    node_batch: int = NODE_BATCH  # at most this many of one node's packages per batch
    discover_every: float = 2.0  # seconds between readings of the registry's nodes
    batch_max: int = 100
    batch_bytes: int = 4 * 1024 * 1024  # a batch closes at this many bytes of packages
    confirm_wait: float = 0.005  # how long confirmations wait for a batch to carry them
    limits: ParseLimits = field(default_factory=ParseLimits)


@dataclass(frozen=True)
class HubServices:
    """Everything the worker needs that is not the broker or the database.

    ``view(session)`` gives the registry as the pipeline needs it (``Directory`` and the
    signature check bound to that session); ``make_receipt`` signs a receipt;
    ``sign_hash`` signs ledger entry hashes.
    """

    view: Callable[[Session], BatchDirectory]
    make_receipt: Callable[[Receipt], bytes]
    sign_hash: Callable[[bytes], bytes]


@dataclass(frozen=True)
class _Published:
    """What a publisher confirm refers to."""

    outbox_id: int
    delivery: Delivery | None
    message_id: str


@dataclass(frozen=True)
class _Confirmations:
    """Publications the broker confirmed, for the next transaction: their outbox rows,
    and the signed ``delivered`` receipt of each delivery among them."""

    outbox_ids: list[int]
    delivered: dict[str, tuple[Receipt, bytes]]  # delivery id -> receipt, signed


class HubWorker:
    """The loop above, for one process (or one thread: tests and the demo).

    ``channel`` opens the broker channel for each connection; by default RabbitMQ's, on
    ``config.amqp_url``, consuming ``vdx.hub.submit`` with ``config.prefetch`` and each
    node's submit queue with ``config.node_prefetch``.
    """

    def __init__(self, config: WorkerConfig, sessions: sessionmaker, services: HubServices,
                 channel: OpenChannel | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.services = services
        self._open_channel = channel or functools.partial(
            AsyncChannel, config.amqp_url, (SUBMIT_QUEUE,), config.prefetch,
            lane_prefetch=config.node_prefetch)
        self._planner = Planner(config.hub_id, config.limits, services.make_receipt, utcnow)
        self._writer = store.WriterLock(sessions.kw["bind"])
        self._channel: Channel | None = None
        self._waiting: OrderedDict[str, deque[Incoming]] = OrderedDict()  # per queue
        self._waiting_count = 0
        self._waiting_bytes = 0
        self._seen: dict[str, float] = {}  # queue -> when a message last came from it
        self._flush_timer: object | None = None
        self._discover_timer: object | None = None
        self._refused_at: dict[str, float] = {}  # submit queue -> when the broker refused it
        self._accounts: dict[str, str] = {}  # broker user -> node code
        self._limited: frozenset[str] = frozenset()  # nodes with limits
        self._confirmed: list[_Published] = []
        self._confirm_timer: object | None = None
        self._stopping = False
        self._relay_timer: object | None = None
        self._returned: set[object] = set()

    # ------------------------------------------------------------------ running

    def run_forever(self) -> None:
        """Connect, serve, and reconnect with backoff until :meth:`request_stop`."""
        backoff = Backoff()
        while not self._stopping:
            if not self._database_up():
                self._sleep(backoff, "database unavailable")
                continue
            self._channel = self._open_channel(
                on_ready=self._ready, on_message=self._received,
                on_confirm=self._on_confirm, on_returned=self._on_returned,
                on_closed=self._closed, on_follow=self._followed,
            )
            started = time.monotonic()
            try:
                self._channel.run()
            except Exception:  # a bug in a callback must not end the worker: reconnect
                log.exception("worker loop failed; reconnecting", extra={"event": "loop_error"})
                self._channel.close()
            backoff.ran(time.monotonic() - started)
            if not self._stopping:
                self._sleep(backoff, "broker connection lost")
        self._writer.close()

    def request_stop(self) -> None:
        """Finish the batch in hand, wait for confirms, then close (SIGTERM)."""
        if self._stopping:
            return
        self._stopping = True
        channel = self._channel
        if channel is not None:
            channel.add_callback(lambda: channel.stop_consuming(self._drain))

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())

    def _sleep(self, backoff: Backoff, why: str) -> None:
        delay = backoff.next()
        log.warning("waiting before reconnecting", extra={"event": "backoff", "reason": why,
                                                          "seconds": round(delay, 2)})
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self._stopping:
            time.sleep(0.1)

    def _database_up(self) -> bool:
        try:
            with self.sessions() as session:
                session.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def _ready(self) -> None:
        if self._stopping:  # asked to stop while connecting
            self._channel.stop_consuming(self._drain)
            return
        log.info("consuming", extra={"event": "ready", "queue": SUBMIT_QUEUE})
        self._discover()
        self._relay_outbox()

    def _discover(self) -> None:
        """Consume the submit queue of every registered node (read again every
        ``discover_every`` seconds); remember whose account is whose and who is limited."""
        if self._stopping or not self._channel.is_open:
            return
        self._discover_timer = self._channel.call_later(self.config.discover_every,
                                                        self._discover)
        try:
            with self.sessions() as session:
                nodes = registry.node_accounts(session)
        except SQLAlchemyError:
            return  # the next reading
        self._accounts = {user: code for code, user, _ in nodes}
        self._limited = frozenset(code for code, _, limited in nodes if limited)
        now = time.monotonic()
        for code, _, _ in nodes:
            queue = submit_queue(code)
            refused = self._refused_at.get(queue)
            if refused is None or now - refused >= REFOLLOW_AFTER:
                self._channel.follow(queue)

    def _followed(self, queue: str, refusal: str | None) -> None:
        if refusal is None:
            self._refused_at.pop(queue, None)
            log.debug("consuming", extra={"event": "follow", "queue": queue})
            return
        # Not provisioned yet (`vdx init` makes it), or deleted with a revoked node.
        self._refused_at[queue] = time.monotonic()
        log.info("cannot consume a submit queue; trying later",
                 extra={"event": "follow_refused", "queue": queue, "reason": refusal})

    def _relay_periodically(self) -> None:
        """Another worker may have died after its commit: pick up its stale outbox rows."""
        self._relay_outbox(older_than=RELAY_AFTER)
        self._relay_timer = self._channel.call_later(RELAY_AFTER, self._relay_periodically)

    def _closed(self, reason: str) -> None:
        self._waiting.clear()  # unacknowledged: the broker redelivers them
        self._waiting_count = self._waiting_bytes = 0
        self._confirmed.clear()  # unconfirmed: the outbox still holds them
        self._refused_at.clear()
        self._flush_timer = self._confirm_timer = self._relay_timer = None
        self._discover_timer = None
        if reason != "closed":
            log.warning("broker connection closed", extra={"event": "closed", "reason": reason})

    def _drain(self) -> None:
        # The nodes' queues were let go, and what this worker held of them went back to
        # them: only the shared queue's messages (the main channel's) are finished here.
        for queue in list(self._waiting):
            kept = deque(m for m in self._waiting[queue] if m.lane == 0)
            self._waiting_count -= len(self._waiting[queue]) - len(kept)
            self._waiting_bytes -= sum(len(m.body) for m in self._waiting[queue] if m.lane)
            if kept:
                self._waiting[queue] = kept
            else:
                del self._waiting[queue]
        while self._waiting_count and self._channel.is_open:
            self._flush(again=False)
        self._wait_for_confirms(deadline=time.monotonic() + 10)

    def _wait_for_confirms(self, deadline: float) -> None:
        channel = self._channel
        if channel is None:
            return
        if (channel.unconfirmed or self._confirmed) and time.monotonic() < deadline:
            self._flush_confirmed()
            channel.call_later(0.05, lambda: self._wait_for_confirms(deadline))
            return
        self._flush_confirmed()
        channel.close()

    # ------------------------------------------------------------------ consuming

    def _received(self, message: Incoming) -> None:
        self._waiting.setdefault(message.queue, deque()).append(message)
        self._seen[message.queue] = time.monotonic()
        self._waiting_count += 1
        self._waiting_bytes += len(message.body)
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Close the batch as soon as the loop has read what the socket holds: never
        inline, so the frames already read are all gathered first (a node's lone package
        that came behind another node's burst is in the next batch), and never on a
        timer, so a lone package does not wait for company that is not coming."""
        if self._flush_timer is None:
            self._flush_timer = self._channel.call_later(0.0, self._flush)

    def _flush(self, again: bool = True) -> None:
        if self._flush_timer is not None:
            self._channel.remove_timeout(self._flush_timer)
            self._flush_timer = None
        self._journal_batch(self._take_batch())
        if again and self._waiting_count:
            self._flush_soon()  # the rest, once what arrived meanwhile is read

    def _take_batch(self) -> list[Incoming]:
        """Up to ``batch_max`` messages (and ``batch_bytes``), one from each queue in
        turn, from the queue served longest ago. While other nodes are sending too, at
        most ``node_batch`` of one node's (one each when several wait): a flood takes
        turns with the others in short batches, so their packages never wait behind a
        long one, while the rest of its window waits here. A node sending alone gets
        full batches. Large packages go alone: a batch holds its bodies (and one parsed
        tree at a time) in memory until its transaction commits."""
        batch: list[Incoming] = []
        size = 0
        taken: dict[str, int] = {}
        share = self.config.batch_max
        if self._senders_lately() > 1:
            share = max(1, self.config.node_batch // max(1, len(self._waiting)))
        while (self._waiting and len(batch) < self.config.batch_max
               and size < self.config.batch_bytes):
            queue, waiting = next(iter(self._waiting.items()))
            if queue != SUBMIT_QUEUE and taken.get(queue, 0) >= share:
                break  # the longest-waiting queue had its share: so had every other
            taken[queue] = taken.get(queue, 0) + 1
            message = waiting.popleft()
            if waiting:
                self._waiting.move_to_end(queue)
            else:
                del self._waiting[queue]
            batch.append(message)
            size += len(message.body)
        self._waiting_count -= len(batch)
        self._waiting_bytes -= size
        return batch

    def _senders_lately(self) -> int:
        """How many node queues sent within :data:`ACTIVE_WINDOW` seconds."""
        since = time.monotonic() - ACTIVE_WINDOW
        for queue in [q for q, at in self._seen.items() if at < since]:
            del self._seen[queue]
        return sum(1 for queue in self._seen if queue != SUBMIT_QUEUE)

    def _journal_batch(self, batch: list[Incoming]) -> None:
        # A redelivered message may be the one that killed a worker: it goes alone, after
        # its attempt is recorded, so a poison message cannot take a batch down with it.
        fresh = [m for m in batch if not m.redelivered]
        if fresh:
            self._journal(fresh)
        for message in batch:
            if message.redelivered and self._channel.is_open:
                self._journal([message], attempt=self._count_attempt(message))

    def _journal(self, batch: list[Incoming], attempt: int = 0, retry: bool = True,
                 refused: dict[tuple[int, int], VdxError] | None = None) -> None:
        """Charge the senders' limits, decide on ``batch`` and sign its receipts (no
        writes), record it with the confirmations waiting in ONE short transaction, then
        ack, then publish."""
        if not self._channel.is_open:
            return  # closed after a database error: the broker redelivers these
        started = time.perf_counter()
        poisoned = attempt > POISON_AFTER
        carried = self._take_confirmations()
        try:
            if refused is None:
                refused = {} if poisoned else self._limit(batch)
            plan = self._plan(batch, poisoned, refused)
            published = self._commit(plan, carried)
        except IntegrityError:
            self._record_apart(carried)
            # Another worker recorded the same document (or the first ledger head) between
            # our check and our insert: one message at a time, the check now sees it.
            if retry:
                for message in batch:
                    self._journal([message], attempt, retry=False, refused=refused)
                return
            log.exception("conflict persists; the message goes back to the queue",
                          extra={"event": "conflict"})
            self._channel.nack(batch[0].tag, requeue=True, lane=batch[0].lane)
            return
        except SQLAlchemyError as exc:
            self._record_apart(carried)
            log.error("database error; closing to get the batch redelivered",
                      extra={"event": "db_error", "error": type(exc).__name__})
            self._channel.close()
            return
        except Exception:
            self._record_apart(carried)
            if len(batch) > 1:  # find the culprit: the others must not pay for it
                for message in batch:
                    self._journal([message], attempt, refused=refused)
                return
            log.exception("unexpected failure; the message goes back to the queue",
                          extra={"event": "crash"})
            self._channel.nack(batch[0].tag, requeue=True, lane=batch[0].lane)
            return
        for message in batch:
            if poisoned:
                # to the dead-letter queue
                self._channel.nack(message.tag, requeue=False, lane=message.lane)
            else:
                self._channel.ack(message.tag, lane=message.lane)
        if max(len(m.body) for m in batch) >= self.config.batch_bytes:
            # Database drivers keep buffers as large as the largest message they sent or
            # read (libpq's never shrink): after a large package, start afresh, before
            # pika's frames of it are made. Not after a batch of smaller ones: a new
            # PostgreSQL backend costs a fork and its catalog caches, more than buffers
            # of a few MiB are worth.
            self.sessions.kw["bind"].dispose()
        self._publish_all(published)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        if carried is not None:
            metrics.PENDING.set(self._channel.unconfirmed)

    def _count_attempt(self, message: Incoming) -> int:
        try:
            with self._writer, self.sessions.begin() as session:
                return journal.count_attempt(session, hashlib.sha256(message.body).hexdigest(),
                                             message.user_id)
        except SQLAlchemyError:
            return 0

    # ------------------------------------------------------------------ deciding

    def _plan(self, batch: list[Incoming], poisoned: bool,
              refused: dict[tuple[int, int], VdxError]) -> Plan:
        """Read-only: what the batch's transaction will write. One registry view for the
        whole batch, closed before the receipts are signed, so the write transaction (and
        the ledger lock) is only the inserts."""
        with self._reading() as reading:
            decisions = self._planner.decide(batch, self.services.view(reading),
                                             poisoned=poisoned, admit=admit, refused=refused)
        return self._planner.plan(decisions)

    def _reading(self) -> Session:
        """A session for reads only, outside any transaction: on PostgreSQL no ``BEGIN``
        and no ``ROLLBACK``, two round trips a batch. Each query sees what is committed
        when it runs, as it would in a READ COMMITTED transaction; what changes between
        a read and the batch's write is caught by the write's constraints."""
        session = self.sessions()
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return session

    def _limit(self, batch: list[Incoming]) -> dict[tuple[int, int], VdxError]:
        """The messages of ``batch`` beyond their node's limits, each with its refusal;
        no database work unless a limited node sent some (:mod:`vdx.hub.limits`)."""
        candidates = {}
        for message in batch:
            node = self._accounts.get(message.user_id or "")
            if node is None and message.routing_key:  # a delegate: the node it sends for
                node = submit_key_node(message.routing_key)
            if node in self._limited:
                candidates[message_key(message)] = node
        if not candidates:
            return {}
        with self._reading() as reading:
            directory = self.services.view(reading)
            senders = {key: node for key, node in candidates.items()
                       if self._sends_for(directory, batch, key, node)}
            limits = node_limits.read_limits(reading, list(set(senders.values())))
        demands: dict[str, list[Incoming]] = {}
        for message in batch:
            node = senders.get(message_key(message))
            if node in limits:
                demands.setdefault(node, []).append(message)
        if not demands:
            return {}
        with self._writer, self.sessions.begin() as session:
            fits = node_limits.charge(session, {node: [len(m.body) for m in messages]
                                                for node, messages in demands.items()},
                                      limits, utcnow())
        refused = {}
        for node, messages in demands.items():
            for message, ok in zip(messages, fits[node], strict=True):
                if not ok:
                    refused[message_key(message)] = node_limits.refusal(node, limits[node])
        return refused

    def _sends_for(self, directory: BatchDirectory, batch: list[Incoming],
                   key: tuple[int, int], node: str) -> bool:
        """Whether the message ``key`` of ``batch`` comes from ``node``'s account, or from
        a delegate (the gateway) that may publish for ``node``."""
        message = next(m for m in batch if message_key(m) == key)
        user = message.user_id or ""
        return self._accounts.get(user) == node or directory.may_publish_for(user, node)

    # ------------------------------------------------------------------ journaling

    def _commit(self, plan: Plan, carried: _Confirmations | None = None,
                ) -> list[tuple[_Published, Outgoing]]:
        """Write ``plan`` in ONE transaction, after recording the confirmations it
        ``carried`` (their receipts and ledger entries first); return the publications."""
        with self._writer, self.sessions.begin() as session, journal.pipelined(session):
            if carried is not None:
                plan = self._record_confirmations(session, carried).then(plan)
            return self._write(session, plan)

    def _write(self, session: Session, plan: Plan) -> list[tuple[_Published, Outgoing]]:
        """Insert ``plan`` (a few multi-row INSERTs, the ledger last so its lock is held
        the shortest); return each outbox row's publication."""
        journal.insert_rows(session, InboundRow, plan.inbound)
        pks = journal.insert_documents(session, [document for document, _ in plan.documents])
        journal.insert_rows(session, DeliveryRow, [
            delivery | {"document_pk": pk}
            for pk, (_, deliveries) in zip(pks, plan.documents, strict=True)
            for delivery in deliveries])
        journal.insert_rows(session, ReceiptRow, plan.receipts)
        outbox_ids = journal.insert_returning_ids(session, OutboxRow,
                                                  [row for row, _, _ in plan.outbox])
        if plan.ledger:
            journal.append_ledger(session, journal.lock_ledger_head(session), plan.ledger,
                                  self.services.sign_hash)
        return [(_Published(outbox_id, delivery, message.message_id), message)
                for outbox_id, (_, message, delivery) in zip(outbox_ids, plan.outbox,
                                                              strict=True)]

    # ------------------------------------------------------------------ publishing

    def _outgoing(self, session: Session, row: OutboxRow) -> tuple[_Published, Outgoing]:
        """An outbox row committed earlier (a relay), read back as its publication."""
        if row.delivery_id is not None:
            delivery = session.get(DeliveryRow, row.delivery_id)
            doc = session.get(DocumentRow, delivery.document_pk)
            carried = Delivery(delivery.id, delivery.sender, delivery.document_id,
                               delivery.recipient, doc.sha256, doc.status_code)
            message = self._planner.delivery_message(carried, delivery.kind, doc.body,
                                                     doc.received_at)
            return _Published(row.id, carried, message.message_id), message
        receipt = session.get(ReceiptRow, row.receipt_id)
        message = self._planner.receipt_message(receipt.id, row.routing_key, receipt.kind,
                                                receipt.document_id, receipt.body)
        return _Published(row.id, None, message.message_id), message

    def _publish_all(self, published: list[tuple[_Published, Outgoing]]) -> None:
        now = utcnow()
        for token, message in published:
            self._channel.publish(wire.published(message, now), token)

    def _relay_outbox(self, older_than: float = 0.0) -> None:
        """Publish what was committed but never confirmed (after a crash or a restart)."""
        after = 0
        if self._relay_timer is None:
            self._relay_timer = self._channel.call_later(RELAY_AFTER, self._relay_periodically)
        while True:
            try:
                with self.sessions() as session:
                    rows = journal.unpublished(session, after=after, older_than=older_than)
                    batch = [self._outgoing(session, row) for row in rows]
            except SQLAlchemyError:
                log.warning("cannot read the outbox now; will retry",
                            extra={"event": "relay_error"})
                return
            if not batch:
                return
            self._publish_all(batch)
            after = batch[-1][0].outbox_id
            log.info("relayed outbox", extra={"event": "relay", "count": len(batch)})

    def _on_confirm(self, tokens: list[object], ok: bool) -> None:
        if not ok:
            log.error("broker refused publications; they stay in the outbox",
                      extra={"event": "nack", "count": len(tokens)})
            return
        # The broker acks an unroutable mandatory message right after returning it: that
        # is not a delivery. It stays in the outbox (relayed later) and gets no receipt.
        routed = [t for t in tokens if t.message_id not in self._returned]  # type: ignore[attr-defined]
        for t in tokens:
            if t.message_id in self._returned:  # type: ignore[attr-defined]
                self._returned.discard(t.message_id)  # type: ignore[attr-defined]
                log.error("unroutable: the recipient's inbox is not bound; kept in the outbox",
                          extra={"event": "returned", "message_id": t.message_id})
        self._confirmed.extend(routed)  # type: ignore[arg-type]
        if self._confirm_timer is None:
            self._confirm_timer = self._channel.call_later(self.config.confirm_wait,
                                                           self._confirms_due)

    def _on_returned(self, message_id: object) -> None:
        metrics.RETURNED.inc()
        self._returned.add(message_id)

    # ------------------------------------------------------------------ confirming

    def _confirms_due(self) -> None:
        """``confirm_wait`` after a confirm: record the confirmations on their own, unless
        a batch is about to carry them (then look again after another ``confirm_wait``)."""
        self._confirm_timer = None
        if self._flush_timer is not None:
            self._confirm_timer = self._channel.call_later(self.config.confirm_wait,
                                                           self._confirms_due)
            return
        self._flush_confirmed()

    def _flush_confirmed(self) -> None:
        """Record what the broker confirmed in a transaction of its own (idle, draining)."""
        confirmations = self._take_confirmations()
        if confirmations is not None:
            self._commit_confirmations(confirmations)

    def _record_apart(self, carried: _Confirmations | None) -> None:
        """The batch carrying ``carried`` failed: record them in their own transaction
        before the batch is retried or given back."""
        if carried is not None:
            self._commit_confirmations(carried)

    def _take_confirmations(self) -> _Confirmations | None:
        """What the broker confirmed since the last transaction (None if nothing), each
        delivery's ``delivered`` receipt signed: before the transaction, to keep it
        short (a relayed copy's receipt, dropped at the claim, is signed for nothing)."""
        if self._confirm_timer is not None:
            self._channel.remove_timeout(self._confirm_timer)
            self._confirm_timer = None
        confirmed, self._confirmed = self._confirmed, []
        if not confirmed:
            return None
        signed = {}
        for p in confirmed:
            if (d := p.delivery) is not None:
                receipt = Receipt.delivered(self.config.hub_id, d.sender, d.document_id,
                                            d.recipient, d.delivery_id, d.sha256,
                                            status_code=d.status_code)
                signed[d.delivery_id] = (receipt, self.services.make_receipt(receipt))
        return _Confirmations([p.outbox_id for p in confirmed], signed)

    def _record_confirmations(self, session: Session, confirmations: _Confirmations) -> Plan:
        """Mark the confirmed outbox rows published and claim their deliveries; return
        the plan of the ``delivered`` receipts of the deliveries this call claimed (a
        relayed copy of one confirmed before gets none)."""
        now = utcnow()
        journal.mark_published(session, confirmations.outbox_ids, now)
        claimed = journal.claim_confirmations(session, list(confirmations.delivered), now)
        plan = Plan()
        for delivery_id, (receipt, body) in confirmations.delivered.items():
            if delivery_id in claimed:
                self._planner.plan_receipt(plan, receipt, body)
        return plan

    def _commit_confirmations(self, confirmations: _Confirmations) -> None:
        """Record ``confirmations`` in a transaction of their own, then publish the
        ``delivered`` receipts."""
        try:
            published = self._commit(Plan(), confirmations)
        except SQLAlchemyError:
            log.exception("database error while recording confirms; closing")
            self._channel.close()
            return
        self._publish_all(published)
        metrics.PENDING.set(self._channel.unconfirmed)
