"""The hub worker: consume submissions, admit them, journal them, publish, acknowledge.

One worker process owns one broker connection (:class:`vdx.broker.AsyncChannel`) and runs
this loop on its I/O thread:

1. messages arrive (up to ``prefetch`` unacknowledged) and are gathered into a batch;
2. each is run through :func:`vdx.pipeline.admit` (size, parse, schema, signature,
   authorise) against a read-only view of the registry;
3. ONE transaction writes, for the whole batch, every document, delivery, receipt, outbox
   row and ledger entry (deduplicating on sender, DocumentId and recipient);
4. only then are the messages acknowledged, and the outbox rows published with
   pipelined confirms;
5. confirmed deliveries get their ``delivered`` receipt in the next transaction.

A crash anywhere loses nothing: before the commit the broker redelivers the messages;
after it, the outbox is published again on restart (the same delivery id, so adapters
drop the copy). A message that keeps killing the worker is refused with
``transport.poison`` and dead-lettered after :data:`POISON_AFTER` attempts.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import journal, metrics
from .broker import DELIVER_EXCHANGE, SUBMIT_QUEUE, AsyncChannel, Incoming, Outgoing
from .errors import TransportError, VdxError
from .journal import DeliveryRow, DocumentRow, OutboxRow, ReceiptRow, utcnow
from .model import DocumentPackage, StatusPackage
from .pipeline import Admitted, admit
from .receipts import Receipt
from .verify import claimed_sender
from .xmlsafe import ParseLimits, parse_untrusted

log = logging.getLogger("vdx.hub")

POISON_AFTER = 5  # isolated attempts that failed; the next one refuses it as poison
RELAY_AFTER = 30.0  # seconds before another worker's unconfirmed outbox rows are relayed
BACKOFF_MAX = 30.0


@dataclass(frozen=True)
class WorkerConfig:
    hub_id: str
    amqp_url: str
    prefetch: int = 200
    batch_max: int = 100
    batch_wait: float = 0.005
    limits: ParseLimits = field(default_factory=ParseLimits)


@dataclass(frozen=True)
class HubServices:
    """Everything the worker needs that is not the broker or the database.

    ``view(session)`` gives the registry as the pipeline needs it (``Directory`` and the
    signature check bound to that session); ``make_receipt`` signs a receipt;
    ``sign_hash`` signs ledger entry hashes.
    """

    view: Callable[[Session], object]
    make_receipt: Callable[[Receipt], bytes]
    sign_hash: Callable[[bytes], bytes]


@dataclass(frozen=True)
class _Published:
    """What a publisher confirm refers to."""

    outbox_id: int
    delivery_id: str | None
    message_id: str


@dataclass(frozen=True)
class _Seen:
    """Recorded before (a redelivery after a crash)."""


@dataclass(frozen=True)
class _Refused:
    error: VdxError
    addressee: str | None
    key: str


@dataclass(frozen=True)
class _Accepted:
    admitted: Admitted
    key: str


class HubWorker:
    def __init__(self, config: WorkerConfig, sessions: sessionmaker, services: HubServices,
                 ) -> None:
        self.config = config
        self.sessions = sessions
        self.services = services
        self._channel: AsyncChannel | None = None
        self._batch: list[Incoming] = []
        self._flush_timer: object | None = None
        self._confirmed: list[_Published] = []
        self._confirm_timer: object | None = None
        self._stopping = False
        self._relay_timer: object | None = None
        self._returned: set[object] = set()
        self._ledger_pending: list[dict] = []

    # ------------------------------------------------------------------ running

    def run_forever(self) -> None:
        """Connect, serve, and reconnect with backoff until :meth:`request_stop`."""
        delay = 0.5
        while not self._stopping:
            if not self._database_up():
                delay = self._sleep(delay, "database unavailable")
                continue
            self._channel = AsyncChannel(
                self.config.amqp_url, (SUBMIT_QUEUE,), self.config.prefetch,
                on_ready=self._ready, on_message=self._received,
                on_confirm=self._on_confirm, on_returned=self._on_returned,
                on_closed=self._closed,
            )
            started = time.monotonic()
            try:
                self._channel.run()
            except Exception:  # a bug in a callback must not end the worker: reconnect
                log.exception("worker loop failed; reconnecting", extra={"event": "loop_error"})
                self._channel.close()
            if time.monotonic() - started > 10:
                delay = 0.5
            if not self._stopping:
                delay = self._sleep(delay, "broker connection lost")

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

    def _sleep(self, delay: float, why: str) -> float:
        log.warning("waiting before reconnecting", extra={"event": "backoff", "reason": why,
                                                          "seconds": round(delay, 2)})
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self._stopping:
            time.sleep(0.1)
        return min(delay * 2, BACKOFF_MAX)

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
        self._relay_outbox()

    def _relay_periodically(self) -> None:
        """Another worker may have died after its commit: pick up its stale outbox rows."""
        self._relay_outbox(older_than=RELAY_AFTER)
        self._relay_timer = self._channel.call_later(RELAY_AFTER, self._relay_periodically)

    def _closed(self, reason: str) -> None:
        self._batch.clear()  # unacknowledged: the broker redelivers them
        self._confirmed.clear()  # unconfirmed: the outbox still holds them
        self._flush_timer = self._confirm_timer = self._relay_timer = None
        if reason != "closed":
            log.warning("broker connection closed", extra={"event": "closed", "reason": reason})

    def _drain(self) -> None:
        self._flush()
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
        self._batch.append(message)
        if len(self._batch) >= self.config.batch_max:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = self._channel.call_later(self.config.batch_wait, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._channel.remove_timeout(self._flush_timer)
            self._flush_timer = None
        batch, self._batch = self._batch, []
        # A redelivered message may be the one that killed a worker: it goes alone, after
        # its attempt is recorded, so a poison message cannot take a batch down with it.
        fresh = [m for m in batch if not m.redelivered]
        if fresh:
            self._journal(fresh)
        for message in batch:
            if message.redelivered and self._channel.is_open:
                self._journal([message], attempt=self._count_attempt(message))

    def _journal(self, batch: list[Incoming], attempt: int = 0, retry: bool = True) -> None:
        """Decide on ``batch`` (no writes), record it in ONE short transaction, then ack,
        then publish. The write transaction holds the ledger lock only while it writes."""
        if not self._channel.is_open:
            return  # closed after a database error: the broker redelivers these
        started = time.perf_counter()
        poisoned = attempt > POISON_AFTER
        try:
            with self.sessions() as reading:
                decided = [(m, self._decide(reading, m, poisoned)) for m in batch]
            with self.sessions.begin() as session:
                self._ledger_pending = []
                rows = [row for m, outcome in decided for row in self._record(session, m, outcome)]
                self._append_ledger(session)
                new_rows = self._outbox_rows(session, rows)
        except IntegrityError:
            # Another worker recorded the same document (or the first ledger head) between
            # our check and our insert: one message at a time, the check now sees it.
            if retry:
                for message in batch:
                    self._journal([message], attempt, retry=False)
                return
            log.exception("conflict persists; the message goes back to the queue",
                          extra={"event": "conflict"})
            self._channel.nack(batch[0].tag, requeue=True)
            return
        except SQLAlchemyError as exc:
            log.error("database error; closing to get the batch redelivered",
                      extra={"event": "db_error", "error": type(exc).__name__})
            self._channel.close()
            return
        except Exception:
            if len(batch) > 1:  # find the culprit: the others must not pay for it
                for message in batch:
                    self._journal([message], attempt)
                return
            log.exception("unexpected failure; the message goes back to the queue",
                          extra={"event": "crash"})
            self._channel.nack(batch[0].tag, requeue=True)
            return
        for message in batch:
            if poisoned:
                self._channel.nack(message.tag, requeue=False)  # to the dead-letter queue
            else:
                self._channel.ack(message.tag)
        for row, message in new_rows:
            self._publish(row, message)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _count_attempt(self, message: Incoming) -> int:
        try:
            with self.sessions.begin() as session:
                return journal.count_attempt(session, _sha256(message.body), message.user_id)
        except SQLAlchemyError:
            return 0

    def _decide(self, session: Session, message: Incoming, poisoned: bool):
        """What to do with one message: read-only (registry, signature, earlier records)."""
        key = journal.inbound_key(message.user_id, message.message_id, _sha256(message.body))
        if journal.seen_inbound(session, key):
            metrics.DOCUMENTS.labels("redelivered", "").inc()
            return _Seen()  # recorded before a crash; the outbox has the rest
        view = self.services.view(session)
        if poisoned:
            error = TransportError("transport.poison",
                                   f"the package failed processing {POISON_AFTER} times")
            metrics.DOCUMENTS.labels("rejected", error.code).inc()
            return _Refused(error, self._addressee(view, message), key)
        started = time.perf_counter()
        try:
            admitted = admit(message.body, message.user_id, limits=self.config.limits,
                             verify=view.verify, directory=view)
        except VdxError as exc:
            metrics.DOCUMENTS.labels("rejected", exc.code).inc()
            return _Refused(exc, self._addressee(view, message), key)
        finally:
            metrics.PIPELINE_SECONDS.observe(time.perf_counter() - started)
        return _Accepted(admitted, key)

    def _record(self, session: Session, message: Incoming, outcome) -> list[OutboxRow]:
        if isinstance(outcome, _Seen):
            return []
        journal.record_inbound(session, outcome.key, _sha256(message.body),
                               "refused" if isinstance(outcome, _Refused) else "admitted")
        if isinstance(outcome, _Refused):
            return self._reject(session, message, outcome)
        return self._accept(session, message, outcome.admitted)

    # ------------------------------------------------------------------ journaling

    def _accept(self, session: Session, message: Incoming, a: Admitted) -> list[OutboxRow]:
        r = a.route
        package = a.package
        is_status = isinstance(package, StatusPackage)
        keys = {rcpt: _dedup_key(r.kind, r.sender, r.document_id, rcpt, a.sha256)
                for rcpt in r.recipients}
        seen = journal.existing_dedup_keys(session, list(keys.values()))
        fresh = [rcpt for rcpt in r.recipients if keys[rcpt] not in seen]
        now = utcnow()
        if not fresh:
            metrics.DOCUMENTS.labels("duplicate", "").inc()
            log.info("duplicate", extra={"event": "duplicate", "sender": r.sender,
                                         "document_id": r.document_id})
            return [self._receipt(session, Receipt.duplicate(
                self.config.hub_id, r.sender, r.document_id, a.sha256))]
        doc = DocumentRow(
            kind=r.kind, sender=r.sender, document_id=r.document_id,
            status_code=package.status_code if is_status else None,
            business_type=(package.business.doc_type
                           if isinstance(package, DocumentPackage) and package.business
                           else None),
            refers_to=r.refers_to.document_id if r.refers_to else None,
            sha256=a.sha256, size=a.size, received_at=now,
            message_id=message.message_id if len(message.message_id or "") <= 128 else None,
            body=message.body,
        )
        session.add(doc)
        session.flush()
        rows = []
        for rcpt in fresh:
            delivery = DeliveryRow(id=journal.new_id(), document_pk=doc.id, dedup_key=keys[rcpt],
                                   kind=r.kind, sender=r.sender, document_id=r.document_id,
                                   recipient=rcpt, created_at=now)
            session.add(delivery)
            rows.append(OutboxRow(delivery_id=delivery.id, routing_key=rcpt, created_at=now))
        rows.append(self._receipt(session, Receipt.accepted(
            self.config.hub_id, r.sender, r.document_id, a.sha256,
            status_code=package.status_code if is_status else None)))
        metrics.DOCUMENTS.labels("accepted", "").inc()
        log.info("accepted", extra={"event": "accepted", "kind": r.kind, "sender": r.sender,
                                    "document_id": r.document_id, "recipients": len(fresh)})
        return rows

    def _reject(self, session: Session, message: Incoming, refused: _Refused) -> list[OutboxRow]:
        log.info("rejected", extra={"event": "rejected", "code": refused.error.code,
                                    "user": message.user_id})
        if refused.addressee is None:
            return []  # no registered node to tell
        return [self._receipt(session, Receipt.rejected(
            self.config.hub_id, refused.addressee, refused.error, _sha256(message.body)))]

    def _addressee(self, view, message: Incoming) -> str | None:
        """Who is told of a refusal: the publishing node, or, when a trusted adapter (the
        gateway) published for a node it serves, that node."""
        user = message.user_id
        if not user:
            return None
        if view.node_status(user) is not None:
            return user
        try:
            sender = claimed_sender(parse_untrusted(message.body, self.config.limits))
        except VdxError:
            return None
        return sender if sender and view.may_publish_for(user, sender) else None

    def _receipt(self, session: Session, receipt: Receipt) -> OutboxRow:
        body = self.services.make_receipt(receipt)
        session.add(ReceiptRow(
            id=receipt.receipt_id, kind=receipt.kind, addressee=receipt.addressee,
            document_id=receipt.document_id, recipient=receipt.recipient,
            delivery_id=receipt.delivery_id, error_code=receipt.error_code,
            status_code=receipt.status_code, created_at=utcnow(), body=body,
        ))
        self._ledger_pending.append(receipt.ledger_fields(body))
        return OutboxRow(receipt_id=receipt.receipt_id, routing_key=receipt.addressee,
                         created_at=utcnow())

    def _append_ledger(self, session: Session) -> None:
        """Lock the head once per transaction, as late as possible, and append."""
        pending, self._ledger_pending = self._ledger_pending, []
        if pending:
            head = journal.lock_ledger_head(session)
            journal.append_ledger(session, head, pending, self.services.sign_hash)

    # ------------------------------------------------------------------ publishing

    def _outbox_rows(self, session: Session, rows: list[OutboxRow]):
        """Insert the outbox rows after what they refer to (the tables have no ORM
        relationships to order the inserts), and pair each with its message."""
        session.flush()
        session.add_all(rows)
        session.flush()
        return [(row, self._outgoing(session, row)) for row in rows]

    def _outgoing(self, session: Session, row: OutboxRow) -> Outgoing:
        headers = {"x-vdx-hub": self.config.hub_id, "x-vdx-hop": 1,
                   "x-vdx-published-at": utcnow().isoformat()}
        if row.delivery_id is not None:
            delivery = session.get(DeliveryRow, row.delivery_id)
            doc = session.get(DocumentRow, delivery.document_pk)
            headers |= {"x-vdx-delivery-id": delivery.id, "x-vdx-sender": delivery.sender,
                        "x-vdx-document-id": delivery.document_id, "x-vdx-kind": delivery.kind,
                        "x-vdx-received-at": doc.received_at.isoformat()}
            return Outgoing(DELIVER_EXCHANGE, row.routing_key, doc.body, delivery.id,
                            f"edxml.{delivery.kind}", headers)
        receipt = session.get(ReceiptRow, row.receipt_id)
        headers |= {"x-vdx-receipt-kind": receipt.kind,
                    "x-vdx-document-id": receipt.document_id or ""}
        return Outgoing(DELIVER_EXCHANGE, row.routing_key, receipt.body, receipt.id,
                        "vdx.receipt", headers)

    def _publish(self, row: OutboxRow, message: Outgoing) -> None:
        token = _Published(row.id, row.delivery_id, message.message_id)
        self._channel.publish(message, token)

    def _relay_outbox(self, older_than: float = 0.0) -> None:
        """Publish what was committed but never confirmed (after a crash or a restart)."""
        after = 0
        if self._relay_timer is None:
            self._relay_timer = self._channel.call_later(RELAY_AFTER, self._relay_periodically)
        while True:
            try:
                with self.sessions() as session:
                    rows = journal.unpublished(session, after=after, older_than=older_than)
                    batch = [(row, self._outgoing(session, row)) for row in rows]
            except SQLAlchemyError:
                log.warning("cannot read the outbox now; will retry",
                            extra={"event": "relay_error"})
                return
            if not batch:
                return
            for row, message in batch:
                self._publish(row, message)
            after = batch[-1][0].id
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
            self._confirm_timer = self._channel.call_later(self.config.batch_wait,
                                                           self._flush_confirmed)

    def _on_returned(self, message_id: object) -> None:
        metrics.RETURNED.inc()
        self._returned.add(message_id)

    def _flush_confirmed(self) -> None:
        if self._confirm_timer is not None:
            self._channel.remove_timeout(self._confirm_timer)
            self._confirm_timer = None
        confirmed, self._confirmed = self._confirmed, []
        if not confirmed:
            return
        now = utcnow()
        self._ledger_pending = []
        try:
            with self.sessions.begin() as session:
                journal.mark_published(session, [p.outbox_id for p in confirmed], now)
                receipts = []
                for p in confirmed:
                    if p.delivery_id is None:
                        continue
                    delivery = journal.claim_confirmation(session, p.delivery_id, now)
                    if delivery is None:
                        continue  # a relayed copy: its receipt exists already
                    doc = session.get(DocumentRow, delivery.document_pk)
                    receipts.append(self._receipt(session, Receipt.delivered(
                        self.config.hub_id, delivery.sender, delivery.document_id,
                        delivery.recipient, delivery.id, doc.sha256,
                        status_code=doc.status_code)))
                self._append_ledger(session)
                new_rows = self._outbox_rows(session, receipts)
        except SQLAlchemyError:
            log.exception("database error while recording confirms; closing")
            self._channel.close()
            return
        for row, message in new_rows:
            self._publish(row, message)
        metrics.PENDING.set(self._channel.unconfirmed)


def _dedup_key(kind: str, sender: str, document_id: str, recipient: str, sha256: str) -> str:
    # Documents: one per (sender, DocumentId, recipient), the regulation's identity.
    # Statuses have no id of their own: the same bytes twice are the same status.
    if kind == "document":
        return f"document|{sender}|{document_id}|{recipient}"
    return f"status|{sender}|{sha256}|{recipient}"


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
