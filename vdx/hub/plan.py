"""What one batch's transaction writes and publishes, decided before it begins.

The worker hands a batch of consumed messages to :meth:`Planner.decide` together with a
:class:`BatchDirectory`, the registry and the journal as one read session sees them, and
gets each message's verdict: admitted by the pipeline's checks, refused (and whom to
tell), or recorded already (a redelivery). :meth:`Planner.plan` turns those verdicts into
a :class:`Plan`: every row the batch's ONE write transaction inserts (inbound keys,
documents and their deliveries, receipts, ledger entries, outbox rows) and the message
each outbox row becomes once committed. Receipts are signed here, so the transaction, and
the ledger lock it takes, holds nothing but inserts, and nothing is read back to publish.

No pika, no SQL and no event loop: the directory is the only thing read, the receipt
signer and the clock are given, messages are built by :mod:`vdx.broker.wire`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from lxml import etree

from vdx import metrics
from vdx.broker import wire
from vdx.broker.wire import Incoming, Outgoing
from vdx.core.model import DocumentPackage, StatusPackage
from vdx.core.receipts import Receipt, answer_id
from vdx.core.routing import Directory
from vdx.core.xmlsafe import ParseLimits, parse_untrusted
from vdx.errors import RoutingError, TransportError, VdxError
from vdx.hub import pipeline
from vdx.hub.pipeline import Admitted, SignatureCheck
from vdx.xmldsig.verify import claimed_sender

log = logging.getLogger("vdx.hub")

POISON_AFTER = 5  # isolated attempts that failed; the next one refuses it as poison


class BatchDirectory(Directory, Protocol):
    """What deciding on a batch reads, through one read session for the whole batch
    (:class:`vdx.hub.directory.RegistryView`): routing's :class:`Directory`, the
    signature check, and the journal's record of what came before."""

    def verify(self, tree: etree._ElementTree, sender: str) -> etree._ElementTree:
        """The signed content of ``tree``, or raise ``SignatureError``."""

    def node_of_account(self, user: str) -> str | None:
        """The node whose broker user is ``user``."""

    def seen_inbound_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these :func:`inbound_key` values were recorded before."""

    def recorded_dedup_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """Which of these :func:`dedup_key` values a recorded delivery has already, each
        with the SHA-256 of the package that delivery carried."""


class Admit(Protocol):
    """The pipeline's checks on one package (:func:`vdx.hub.pipeline.admit`)."""

    def __call__(self, body: bytes, user_id: str | None, *, limits: ParseLimits,
                 verify: SignatureCheck, directory: Directory,
                 sha256: str | None = None) -> Admitted: ...


@dataclass(frozen=True)
class Delivery:
    """What a delivery's ``delivered`` receipt needs, carried with its publication so the
    broker's confirm can be answered without reading the delivery back."""

    delivery_id: str
    sender: str
    document_id: str
    recipient: str
    sha256: str
    status_code: str | None


@dataclass(frozen=True)
class Refused:
    error: VdxError
    addressee: str | None  # who is told; None when no registered node published it
    document_id: str | None = None  # the package's, when it was read before the refusal


@dataclass(frozen=True)
class Outcome:
    """One message of a batch and the verdict on it (``None``: recorded before, or a copy
    of an earlier message of the same batch)."""

    message: Incoming
    sha256: str
    inbound_key: str
    verdict: Admitted | Refused | None


@dataclass(frozen=True)
class Decisions:
    outcomes: tuple[Outcome, ...]
    # the admitted packages' dedup keys a delivery holds already -> the SHA-256 it carried
    taken: Mapping[str, str]


@dataclass
class Plan:
    """Every row one write transaction inserts, decided and signed before it begins, and
    the message each outbox row becomes once committed."""

    # recorded, or taken by this batch -> the SHA-256 of the package delivered under it
    dedup_keys: dict[str, str] = field(default_factory=dict)
    inbound: list[dict] = field(default_factory=list)
    documents: list[tuple[dict, list[dict]]] = field(default_factory=list)  # + deliveries
    receipts: list[dict] = field(default_factory=list)
    ledger: list[dict] = field(default_factory=list)
    outbox: list[tuple[dict, Outgoing, Delivery | None]] = field(default_factory=list)

    def then(self, later: Plan) -> Plan:
        """This plan's rows and messages followed by ``later``'s, for one transaction:
        receipts, ledger entries and outbox rows keep that order."""
        return Plan(dedup_keys={**self.dedup_keys, **later.dedup_keys},
                    inbound=self.inbound + later.inbound,
                    documents=self.documents + later.documents,
                    receipts=self.receipts + later.receipts,
                    ledger=self.ledger + later.ledger,
                    outbox=self.outbox + later.outbox)


@dataclass(frozen=True)
class Planner:
    """Decides on batches for hub ``hub_id`` and plans their rows and messages.

    ``make_receipt`` signs a receipt; ``clock`` gives the rows' timestamps (aware UTC).
    """

    hub_id: str
    limits: ParseLimits
    make_receipt: Callable[[Receipt], bytes]
    clock: Callable[[], datetime] = field(default=partial(datetime.now, UTC))

    # ------------------------------------------------------------------ deciding

    def decide(self, batch: Sequence[Incoming], directory: BatchDirectory, *,
               poisoned: bool = False, admit: Admit = pipeline.admit,
               refused: Mapping[tuple[int, int], VdxError] | None = None) -> Decisions:
        """Each message's verdict, with one query for the batch's redeliveries and one for
        its duplicates. ``poisoned``: refuse them all as ``transport.poison``;
        ``refused``: the messages (by :func:`message_key`) refused before any check, with
        why (a node over its limits)."""
        digests = [_sha256(m.body) for m in batch]
        keys = [inbound_key(m.user_id, m.message_id, d)
                for m, d in zip(batch, digests, strict=True)]
        seen = directory.seen_inbound_keys(keys)
        outcomes = []
        for message, digest, key in zip(batch, digests, keys, strict=True):
            if key in seen:  # recorded before a crash (the outbox has the rest), or a
                metrics.DOCUMENTS.labels("redelivered", "").inc()  # copy in this batch
                outcomes.append(Outcome(message, digest, key, None))
                continue
            seen.add(key)
            error = (refused or {}).get(message_key(message))
            verdict = (self.refuse(directory, message, error) if error is not None
                       else self.decide_one(directory, message, digest, poisoned, admit))
            outcomes.append(Outcome(message, digest, key, verdict))
        taken = directory.recorded_dedup_keys([
            k for o in outcomes if isinstance(o.verdict, Admitted) for k in dedup_keys(o.verdict)])
        return Decisions(tuple(outcomes), taken)

    def decide_one(self, directory: BatchDirectory, message: Incoming, digest: str,
                   poisoned: bool, admit: Admit = pipeline.admit) -> Admitted | Refused:
        """What to do with one message: the pipeline's verdict, or why it is refused."""
        if poisoned:
            error = TransportError("transport.poison",
                                   f"the package failed processing {POISON_AFTER} times")
            metrics.DOCUMENTS.labels("rejected", error.code).inc()
            return Refused(error, self.addressee(directory, message))
        started = time.perf_counter()
        try:
            return admit(message.body, message.user_id, limits=self.limits,
                         verify=directory.verify, directory=directory, sha256=digest)
        except VdxError as exc:
            metrics.DOCUMENTS.labels("rejected", exc.code).inc()
            return Refused(exc, self.addressee(directory, message), exc.document_id)
        finally:
            metrics.PIPELINE_SECONDS.observe(time.perf_counter() - started)

    def refuse(self, directory: BatchDirectory, message: Incoming,
               error: VdxError) -> Refused:
        metrics.DOCUMENTS.labels("rejected", error.code).inc()
        return Refused(error, self.addressee(directory, message))

    def addressee(self, directory: BatchDirectory, message: Incoming) -> str | None:
        """Who is told of a refusal: the publishing node, or, when a trusted adapter (the
        gateway) published for a node it serves, that node."""
        user = message.user_id
        if not user:
            return None
        node = directory.node_of_account(user)
        if node is not None:
            return node
        try:
            sender = claimed_sender(parse_untrusted(message.body, self.limits))
        except VdxError:
            return None
        return sender if sender and directory.may_publish_for(user, sender) else None

    # ------------------------------------------------------------------ planning

    def plan(self, decisions: Decisions) -> Plan:
        """The rows and messages of ``decisions``, receipts signed; reads nothing."""
        plan = Plan(dedup_keys=dict(decisions.taken))
        now = self.clock()
        for o in decisions.outcomes:
            verdict = o.verdict
            if verdict is None:
                continue
            if isinstance(verdict, Admitted):
                verdict = self.reused(plan, verdict) or verdict
            refused = isinstance(verdict, Refused)
            plan.inbound.append({"key": o.inbound_key, "sha256": o.sha256, "at": now,
                                 "outcome": "refused" if refused else "admitted"})
            if isinstance(verdict, Refused):
                self.plan_reject(plan, o.message, verdict, o.sha256)
            else:
                self.plan_accept(plan, o.message, verdict)
        return plan

    def reused(self, plan: Plan, a: Admitted) -> Refused | None:
        """The refusal of a document whose DocumentId its sender already used, for one of
        its recipients, for other bytes (recorded, or earlier in this batch): delivering
        the rest, or answering ``duplicate``, would drop the new content silently."""
        r = a.route
        if r.kind != "document":
            return None  # a status's dedup key is its bytes
        for recipient, key in zip(r.recipients, dedup_keys(a), strict=True):
            earlier = plan.dedup_keys.get(key, a.sha256)
            if earlier != a.sha256:
                error = RoutingError(
                    "routing.document_id_reused",
                    f"{r.sender} already sent {r.document_id} to {recipient} as another "
                    f"package (SHA-256 {earlier}); new content needs a new DocumentId")
                metrics.DOCUMENTS.labels("rejected", error.code).inc()
                return Refused(error, r.sender, r.document_id)
        return None

    def plan_accept(self, plan: Plan, message: Incoming, a: Admitted) -> None:
        """The document, a delivery per recipient not served before, and the ``accepted``
        receipt; only a ``duplicate`` receipt if every recipient was served before."""
        r = a.route
        package = a.package
        status_code = package.status_code if isinstance(package, StatusPackage) else None
        keys = dict(zip(r.recipients, dedup_keys(a), strict=True))
        fresh = [rcpt for rcpt in r.recipients if keys[rcpt] not in plan.dedup_keys]
        answer = answer_id(message.user_id, message.message_id, a.sha256)
        if not fresh:
            metrics.DOCUMENTS.labels("duplicate", "").inc()
            log.info("duplicate", extra={"event": "duplicate", "sender": r.sender,
                                         "document_id": r.document_id})
            self.plan_receipt(plan, Receipt.duplicate(
                self.hub_id, r.sender, r.document_id, a.sha256, receipt_id=answer))
            return
        plan.dedup_keys.update((keys[rcpt], a.sha256) for rcpt in fresh)
        now = self.clock()
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
            delivery = Delivery(str(uuid.uuid4()), r.sender, r.document_id, rcpt, a.sha256,
                                status_code)
            deliveries.append({
                "id": delivery.delivery_id, "dedup_key": keys[rcpt], "kind": r.kind,
                "sender": r.sender, "document_id": r.document_id, "recipient": rcpt,
                "created_at": now, "confirmed_at": None})
            plan.outbox.append((outbox_row(now, delivery_id=delivery.delivery_id,
                                           routing_key=rcpt),
                                self.delivery_message(delivery, r.kind, message.body, now),
                                delivery))
        plan.documents.append((document, deliveries))
        self.plan_receipt(plan, Receipt.accepted(self.hub_id, r.sender, r.document_id,
                                                 a.sha256, status_code=status_code,
                                                 receipt_id=answer))
        metrics.DOCUMENTS.labels("accepted", "").inc()
        log.info("accepted", extra={"event": "accepted", "kind": r.kind, "sender": r.sender,
                                    "document_id": r.document_id, "recipients": len(fresh)})

    def plan_reject(self, plan: Plan, message: Incoming, refused: Refused,
                    digest: str) -> None:
        log.info("rejected", extra={"event": "rejected", "code": refused.error.code,
                                    "user": message.user_id,
                                    "document_id": refused.document_id})
        if refused.addressee is not None:  # else: no registered node to tell
            self.plan_receipt(plan, Receipt.rejected(
                self.hub_id, refused.addressee, refused.error, digest,
                document_id=refused.document_id,
                receipt_id=answer_id(message.user_id, message.message_id, digest)))

    def plan_receipt(self, plan: Plan, receipt: Receipt, body: bytes | None = None) -> None:
        """Sign ``receipt`` (unless ``body`` is its signed form already) and plan its row,
        its ledger entry and its outbox row."""
        if body is None:
            body = self.make_receipt(receipt)
        now = self.clock()
        plan.receipts.append({
            "id": receipt.receipt_id, "kind": receipt.kind, "addressee": receipt.addressee,
            "document_id": receipt.document_id, "recipient": receipt.recipient,
            "delivery_id": receipt.delivery_id, "error_code": receipt.error_code,
            "status_code": receipt.status_code, "created_at": now, "body": body})
        plan.ledger.append(receipt.ledger_fields(body))
        plan.outbox.append((outbox_row(now, receipt_id=receipt.receipt_id,
                                       routing_key=receipt.addressee),
                            self.receipt_message(receipt.receipt_id, receipt.addressee,
                                                 receipt.kind, receipt.document_id, body),
                            None))

    # ------------------------------------------------------------------ messages

    def delivery_message(self, delivery: Delivery, kind: str, body: bytes,
                         received_at: datetime) -> Outgoing:
        return wire.delivery(self.hub_id, delivery.delivery_id, delivery.recipient, body,
                             kind=kind, sender=delivery.sender,
                             document_id=delivery.document_id, received_at=received_at)

    def receipt_message(self, receipt_id: str, addressee: str, kind: str,
                        document_id: str | None, body: bytes) -> Outgoing:
        return wire.receipt(self.hub_id, receipt_id, addressee, body, kind=kind,
                            document_id=document_id)


def outbox_row(now: datetime, *, routing_key: str, delivery_id: str | None = None,
               receipt_id: str | None = None) -> dict:
    return {"delivery_id": delivery_id, "receipt_id": receipt_id, "routing_key": routing_key,
            "created_at": now, "published_at": None}


def message_key(message: Incoming) -> tuple[int, int]:
    """One consumed message of a connection: its channel (lane) and delivery tag."""
    return message.lane, message.tag


def inbound_key(user_id: str | None, message_id: str | None, sha256: str) -> str:
    """One submitted message: who published it, its message id and its exact bytes. A
    redelivery has the same key; a different package under a reused id does not."""
    return hashlib.sha256(f"{user_id or ''}\n{message_id or ''}\n{sha256}".encode()).hexdigest()


def dedup_keys(a: Admitted) -> list[str]:
    """One key per recipient of ``a``, in the route's order."""
    r = a.route
    return [dedup_key(r.kind, r.sender, r.document_id, rcpt, a.sha256) for rcpt in r.recipients]


def dedup_key(kind: str, sender: str, document_id: str, recipient: str, sha256: str) -> str:
    # Documents: one per (sender, DocumentId, recipient), the regulation's identity.
    # Statuses have no id of their own: the same bytes twice are the same status.
    if kind == "document":
        return f"document|{sender}|{document_id}|{recipient}"
    return f"status|{sender}|{sha256}|{recipient}"


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
