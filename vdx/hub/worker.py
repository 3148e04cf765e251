"""The hub worker: consume submissions, admit them, journal them, publish, acknowledge.

One worker process owns one broker connection (:class:`vdx.broker.channel.AsyncChannel`) and runs
this loop on its I/O thread:

1. messages arrive (up to ``prefetch`` unacknowledged) and are gathered into a batch
   (closed after ``batch_wait``, ``batch_max`` messages or ``batch_bytes`` of bodies);
2. each is run through :func:`vdx.hub.pipeline.admit` (size, parse, schema, signature,
   authorise) against one read-only view of the registry for the batch; the batch's
   redeliveries and duplicates are found with one query each, and its receipts are
   signed, all before any write (:meth:`HubWorker._plan`);
3. ONE short transaction inserts, for the whole batch, every document, delivery,
   receipt, outbox row and ledger entry, a few multi-row INSERTs (:meth:`HubWorker._write`);
4. only then are the messages acknowledged, and the outbox rows published with
   pipelined confirms (built from the values in hand, not read back);
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
from dataclasses import dataclass, field, replace

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vdx import metrics, store
from vdx.broker.channel import DELIVER_EXCHANGE, SUBMIT_QUEUE, AsyncChannel, Incoming, Outgoing
from vdx.core.ledger import LedgerEntry
from vdx.core.model import DocumentPackage, StatusPackage
from vdx.core.receipts import Receipt
from vdx.core.xmlsafe import ParseLimits, parse_untrusted
from vdx.errors import TransportError, VdxError
from vdx.hub import journal
from vdx.hub.journal import (
    DeliveryRow,
    DocumentRow,
    InboundRow,
    OutboxRow,
    ReceiptRow,
    utcnow,
)
from vdx.hub.pipeline import Admitted, admit
from vdx.xmldsig.verify import claimed_sender

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
    batch_bytes: int = 4 * 1024 * 1024  # a batch closes at this many bytes of packages
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
class _Delivery:
    """What a delivery's ``delivered`` receipt needs, carried with its publication so the
    broker's confirm can be answered without reading the delivery back."""

    delivery_id: str
    sender: str
    document_id: str
    recipient: str
    sha256: str
    status_code: str | None


@dataclass(frozen=True)
class _Published:
    """What a publisher confirm refers to."""

    outbox_id: int
    delivery: _Delivery | None
    message_id: str


@dataclass(frozen=True)
class _Refused:
    error: VdxError
    addressee: str | None


@dataclass
class _Plan:
    """Every row one write transaction inserts, decided and signed before it begins, and
    the message each outbox row becomes once committed."""

    dedup_keys: set[str] = field(default_factory=set)  # recorded, or taken by this batch
    inbound: list[dict] = field(default_factory=list)
    documents: list[tuple[dict, list[dict]]] = field(default_factory=list)  # + deliveries
    receipts: list[dict] = field(default_factory=list)
    ledger: list[dict] = field(default_factory=list)
    outbox: list[tuple[dict, Outgoing, _Delivery | None]] = field(default_factory=list)


class HubWorker:
    def __init__(self, config: WorkerConfig, sessions: sessionmaker, services: HubServices,
                 ) -> None:
        self.config = config
        self.sessions = sessions
        self.services = services
        self._writer = store.WriterLock(sessions.kw["bind"])
        self._last_entry: LedgerEntry | None = None  # the last ledger entry this worker wrote
        self._channel: AsyncChannel | None = None
        self._batch: list[Incoming] = []
        self._batch_size = 0  # bytes
        self._flush_timer: object | None = None
        self._confirmed: list[_Published] = []
        self._confirm_timer: object | None = None
        self._stopping = False
        self._relay_timer: object | None = None
        self._returned: set[object] = set()

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
        self._batch_size = 0
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
        self._batch_size += len(message.body)
        # Large packages go alone: a batch holds its bodies (and one parsed tree at a
        # time) in memory until its transaction commits.
        if (len(self._batch) >= self.config.batch_max
                or self._batch_size >= self.config.batch_bytes):
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = self._channel.call_later(self.config.batch_wait, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._channel.remove_timeout(self._flush_timer)
            self._flush_timer = None
        batch, large = self._batch, self._batch_size >= self.config.batch_bytes
        self._batch, self._batch_size = [], 0
        self._journal_batch(batch)
        if large:
            # Database drivers keep buffers as large as the largest message they sent or
            # read (libpq's never shrink): after large packages, start afresh.
            self.sessions.kw["bind"].dispose()

    def _journal_batch(self, batch: list[Incoming]) -> None:
        # A redelivered message may be the one that killed a worker: it goes alone, after
        # its attempt is recorded, so a poison message cannot take a batch down with it.
        fresh = [m for m in batch if not m.redelivered]
        if fresh:
            self._journal(fresh)
        for message in batch:
            if message.redelivered and self._channel.is_open:
                self._journal([message], attempt=self._count_attempt(message))

    def _journal(self, batch: list[Incoming], attempt: int = 0, retry: bool = True) -> None:
        """Decide on ``batch`` and sign its receipts (no writes), record it in ONE short
        transaction, then ack, then publish."""
        if not self._channel.is_open:
            return  # closed after a database error: the broker redelivers these
        started = time.perf_counter()
        poisoned = attempt > POISON_AFTER
        try:
            plan = self._plan(batch, poisoned)
            with self._writer, self.sessions.begin() as session:
                published = self._write(session, plan)
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
        self._publish_all(published)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _count_attempt(self, message: Incoming) -> int:
        try:
            with self._writer, self.sessions.begin() as session:
                return journal.count_attempt(session, _sha256(message.body), message.user_id)
        except SQLAlchemyError:
            return 0

    # ------------------------------------------------------------------ deciding

    def _plan(self, batch: list[Incoming], poisoned: bool) -> _Plan:
        """Read-only: what the batch's transaction will write. One registry view, one
        inbound query and one dedup query for the whole batch; receipts signed here, so
        the write transaction (and the ledger lock) is only the inserts."""
        digests = [_sha256(m.body) for m in batch]
        keys = [journal.inbound_key(m.user_id, m.message_id, d)
                for m, d in zip(batch, digests, strict=True)]
        with self.sessions() as reading:
            view = self.services.view(reading)
            seen = journal.seen_inbound_keys(reading, keys)
            outcomes: list[Admitted | _Refused | None] = []
            for message, digest, key in zip(batch, digests, keys, strict=True):
                if key in seen:  # recorded before a crash (the outbox has the rest), or a
                    metrics.DOCUMENTS.labels("redelivered", "").inc()  # copy in this batch
                    outcomes.append(None)
                    continue
                seen.add(key)
                outcomes.append(self._decide(view, message, digest, poisoned))
            plan = _Plan(dedup_keys=journal.existing_dedup_keys(reading, [
                k for o in outcomes if isinstance(o, Admitted) for k in _dedup_keys(o)]))
        now = utcnow()
        for message, digest, key, outcome in zip(batch, digests, keys, outcomes, strict=True):
            if outcome is None:
                continue
            refused = isinstance(outcome, _Refused)
            plan.inbound.append({"key": key, "sha256": digest, "at": now,
                                 "outcome": "refused" if refused else "admitted"})
            if refused:
                self._plan_reject(plan, message, outcome, digest)
            else:
                self._plan_accept(plan, message, outcome)
        return plan

    def _decide(self, view, message: Incoming, digest: str,
                poisoned: bool) -> Admitted | _Refused:
        """What to do with one message: the pipeline's verdict, or why it is refused."""
        if poisoned:
            error = TransportError("transport.poison",
                                   f"the package failed processing {POISON_AFTER} times")
            metrics.DOCUMENTS.labels("rejected", error.code).inc()
            return _Refused(error, self._addressee(view, message))
        started = time.perf_counter()
        try:
            return admit(message.body, message.user_id, limits=self.config.limits,
                         verify=view.verify, directory=view, sha256=digest)
        except VdxError as exc:
            metrics.DOCUMENTS.labels("rejected", exc.code).inc()
            return _Refused(exc, self._addressee(view, message))
        finally:
            metrics.PIPELINE_SECONDS.observe(time.perf_counter() - started)

    def _plan_accept(self, plan: _Plan, message: Incoming, a: Admitted) -> None:
        r = a.route
        package = a.package
        status_code = package.status_code if isinstance(package, StatusPackage) else None
        keys = dict(zip(r.recipients, _dedup_keys(a), strict=True))
        fresh = [rcpt for rcpt in r.recipients if keys[rcpt] not in plan.dedup_keys]
        if not fresh:
            metrics.DOCUMENTS.labels("duplicate", "").inc()
            log.info("duplicate", extra={"event": "duplicate", "sender": r.sender,
                                         "document_id": r.document_id})
            self._plan_receipt(plan, Receipt.duplicate(
                self.config.hub_id, r.sender, r.document_id, a.sha256))
            return
        plan.dedup_keys.update(keys[rcpt] for rcpt in fresh)
        now = utcnow()
        document = {
            "kind": r.kind, "sender": r.sender, "document_id": r.document_id,
            "status_code": status_code,
            "business_type": (package.business.doc_type
                              if isinstance(package, DocumentPackage) and package.business
                              else None),
            "refers_to": r.refers_to.document_id if r.refers_to else None,
            "sha256": a.sha256, "size": a.size, "received_at": now,
            "message_id": message.message_id if len(message.message_id or "") <= 128 else None,
            "body": message.body,
        }
        deliveries = []
        for rcpt in fresh:
            delivery = _Delivery(journal.new_id(), r.sender, r.document_id, rcpt, a.sha256,
                                 status_code)
            deliveries.append({
                "id": delivery.delivery_id, "dedup_key": keys[rcpt], "kind": r.kind,
                "sender": r.sender, "document_id": r.document_id, "recipient": rcpt,
                "created_at": now, "confirmed_at": None})
            plan.outbox.append((_outbox_row(now, delivery_id=delivery.delivery_id,
                                            routing_key=rcpt),
                                self._delivery_message(delivery, r.kind, message.body, now),
                                delivery))
        plan.documents.append((document, deliveries))
        self._plan_receipt(plan, Receipt.accepted(self.config.hub_id, r.sender, r.document_id,
                                                  a.sha256, status_code=status_code))
        metrics.DOCUMENTS.labels("accepted", "").inc()
        log.info("accepted", extra={"event": "accepted", "kind": r.kind, "sender": r.sender,
                                    "document_id": r.document_id, "recipients": len(fresh)})

    def _plan_reject(self, plan: _Plan, message: Incoming, refused: _Refused,
                     digest: str) -> None:
        log.info("rejected", extra={"event": "rejected", "code": refused.error.code,
                                    "user": message.user_id})
        if refused.addressee is not None:  # else: no registered node to tell
            self._plan_receipt(plan, Receipt.rejected(
                self.config.hub_id, refused.addressee, refused.error, digest))

    def _addressee(self, view, message: Incoming) -> str | None:
        """Who is told of a refusal: the publishing node, or, when a trusted adapter (the
        gateway) published for a node it serves, that node."""
        user = message.user_id
        if not user:
            return None
        node = view.node_of_account(user)
        if node is not None:
            return node
        try:
            sender = claimed_sender(parse_untrusted(message.body, self.config.limits))
        except VdxError:
            return None
        return sender if sender and view.may_publish_for(user, sender) else None

    def _plan_receipt(self, plan: _Plan, receipt: Receipt, body: bytes | None = None) -> None:
        """Sign ``receipt`` (unless ``body`` is its signed form already) and plan its row,
        its ledger entry and its outbox row."""
        if body is None:
            body = self.services.make_receipt(receipt)
        now = utcnow()
        plan.receipts.append({
            "id": receipt.receipt_id, "kind": receipt.kind, "addressee": receipt.addressee,
            "document_id": receipt.document_id, "recipient": receipt.recipient,
            "delivery_id": receipt.delivery_id, "error_code": receipt.error_code,
            "status_code": receipt.status_code, "created_at": now, "body": body})
        plan.ledger.append(receipt.ledger_fields(body))
        plan.outbox.append((_outbox_row(now, receipt_id=receipt.receipt_id,
                                        routing_key=receipt.addressee),
                            self._receipt_message(receipt.receipt_id, receipt.addressee,
                                                  receipt.kind, receipt.document_id, body),
                            None))

    # ------------------------------------------------------------------ journaling

    def _write(self, session: Session, plan: _Plan) -> list[tuple[_Published, Outgoing]]:
        """Insert ``plan`` (a few multi-row INSERTs, the ledger last so its lock is held
        the shortest); return each outbox row's publication."""
        journal.insert_rows(session, InboundRow, plan.inbound)
        pks = journal.insert_returning_ids(session, DocumentRow,
                                           [document for document, _ in plan.documents])
        journal.insert_rows(session, DeliveryRow, [
            delivery | {"document_pk": pk}
            for pk, (_, deliveries) in zip(pks, plan.documents, strict=True)
            for delivery in deliveries])
        journal.insert_rows(session, ReceiptRow, plan.receipts)
        outbox_ids = journal.insert_returning_ids(session, OutboxRow,
                                                  [row for row, _, _ in plan.outbox])
        if plan.ledger:
            head = journal.lock_ledger_head(session)
            # Remembered even if this transaction rolls back: the head then will not match.
            self._last_entry = journal.append_ledger(session, head, plan.ledger,
                                                     self.services.sign_hash,
                                                     self._last_entry)[-1]
        return [(_Published(outbox_id, delivery, message.message_id), message)
                for outbox_id, (_, message, delivery) in zip(outbox_ids, plan.outbox,
                                                              strict=True)]

    # ------------------------------------------------------------------ publishing

    def _delivery_message(self, delivery: _Delivery, kind: str, body: bytes,
                          received_at) -> Outgoing:
        return Outgoing(DELIVER_EXCHANGE, delivery.recipient, body, delivery.delivery_id,
                        f"edxml.{kind}", {
                            "x-vdx-hub": self.config.hub_id, "x-vdx-hop": 1,
                            "x-vdx-delivery-id": delivery.delivery_id,
                            "x-vdx-sender": delivery.sender,
                            "x-vdx-document-id": delivery.document_id, "x-vdx-kind": kind,
                            "x-vdx-received-at": received_at.isoformat()})

    def _receipt_message(self, receipt_id: str, addressee: str, kind: str,
                         document_id: str | None, body: bytes) -> Outgoing:
        return Outgoing(DELIVER_EXCHANGE, addressee, body, receipt_id, "vdx.receipt", {
            "x-vdx-hub": self.config.hub_id, "x-vdx-hop": 1, "x-vdx-receipt-kind": kind,
            "x-vdx-document-id": document_id or ""})

    def _outgoing(self, session: Session, row: OutboxRow) -> tuple[_Published, Outgoing]:
        """An outbox row committed earlier (a relay), read back as its publication."""
        if row.delivery_id is not None:
            delivery = session.get(DeliveryRow, row.delivery_id)
            doc = session.get(DocumentRow, delivery.document_pk)
            carried = _Delivery(delivery.id, delivery.sender, delivery.document_id,
                                delivery.recipient, doc.sha256, doc.status_code)
            message = self._delivery_message(carried, delivery.kind, doc.body, doc.received_at)
            return _Published(row.id, carried, message.message_id), message
        receipt = session.get(ReceiptRow, row.receipt_id)
        message = self._receipt_message(receipt.id, row.routing_key, receipt.kind,
                                        receipt.document_id, receipt.body)
        return _Published(row.id, None, message.message_id), message

    def _publish_all(self, published: list[tuple[_Published, Outgoing]]) -> None:
        stamp = {"x-vdx-published-at": utcnow().isoformat()}
        for token, message in published:
            self._channel.publish(replace(message, headers=message.headers | stamp), token)

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
            self._confirm_timer = self._channel.call_later(self.config.batch_wait,
                                                           self._flush_confirmed)

    def _on_returned(self, message_id: object) -> None:
        metrics.RETURNED.inc()
        self._returned.add(message_id)

    def _flush_confirmed(self) -> None:
        """Record what the broker confirmed; answer each delivery with its signed
        ``delivered`` receipt (signed before the transaction; a relayed copy whose
        delivery was confirmed before gets none)."""
        if self._confirm_timer is not None:
            self._channel.remove_timeout(self._confirm_timer)
            self._confirm_timer = None
        confirmed, self._confirmed = self._confirmed, []
        if not confirmed:
            return
        signed = {}  # before the claim, to keep the transaction short: a relayed copy's
        for p in confirmed:  # receipt (claimed before, so dropped) is signed for nothing
            if (d := p.delivery) is not None:
                receipt = Receipt.delivered(self.config.hub_id, d.sender, d.document_id,
                                            d.recipient, d.delivery_id, d.sha256,
                                            status_code=d.status_code)
                signed[d.delivery_id] = (receipt, self.services.make_receipt(receipt))
        now = utcnow()
        try:
            with self._writer, self.sessions.begin() as session:
                journal.mark_published(session, [p.outbox_id for p in confirmed], now)
                claimed = journal.claim_confirmations(session, list(signed), now)
                plan = _Plan()
                for delivery_id, (receipt, body) in signed.items():
                    if delivery_id in claimed:
                        self._plan_receipt(plan, receipt, body)
                published = self._write(session, plan)
        except SQLAlchemyError:
            log.exception("database error while recording confirms; closing")
            self._channel.close()
            return
        self._publish_all(published)
        metrics.PENDING.set(self._channel.unconfirmed)


def _outbox_row(now, *, routing_key: str, delivery_id: str | None = None,
                receipt_id: str | None = None) -> dict:
    return {"delivery_id": delivery_id, "receipt_id": receipt_id, "routing_key": routing_key,
            "created_at": now, "published_at": None}


def _dedup_keys(a: Admitted) -> list[str]:
    """One key per recipient of ``a``, in the route's order."""
    r = a.route
    return [_dedup_key(r.kind, r.sender, r.document_id, rcpt, a.sha256) for rcpt in r.recipients]


def _dedup_key(kind: str, sender: str, document_id: str, recipient: str, sha256: str) -> str:
    # Documents: one per (sender, DocumentId, recipient), the regulation's identity.
    # Statuses have no id of their own: the same bytes twice are the same status.
    if kind == "document":
        return f"document|{sender}|{document_id}|{recipient}"
    return f"status|{sender}|{sha256}|{recipient}"


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
