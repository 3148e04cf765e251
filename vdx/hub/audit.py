"""What auditors ask of the journal: receipts, one document's timeline, the ledger's proof.

Functions take a session and return frozen values; the CLI prints them.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vdx.core.ledger import LedgerHead, LedgerProblem, verify_chain
from vdx.core.status_order import supersedes
from vdx.hub import journal
from vdx.hub.journal import DeliveryRow, DocumentRow, LedgerHeadRow, LedgerRow, ReceiptRow


@dataclass(frozen=True)
class ReceiptView:
    receipt_id: str
    kind: str
    created_at: datetime
    addressee: str
    document_id: str | None
    recipient: str | None
    delivery_id: str | None
    error_code: str | None
    status_code: str | None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


def query_receipts(
    session: Session, *, document_id: str | None = None, sender: str | None = None,
    recipient: str | None = None, kind: str | None = None, since: datetime | None = None,
    until: datetime | None = None, limit: int = 10_000,
) -> list[ReceiptView]:
    """Receipts matching every given filter, oldest first.

    ``sender`` is the agency the receipt was issued to (the package's sender).
    """
    q = select(ReceiptRow)
    if document_id:
        q = q.where(ReceiptRow.document_id == document_id)
    if sender:
        q = q.where(ReceiptRow.addressee == sender)
    if recipient:
        q = q.where(ReceiptRow.recipient == recipient)
    if kind:
        q = q.where(ReceiptRow.kind == kind)
    if since:
        q = q.where(ReceiptRow.created_at >= since)
    if until:
        q = q.where(ReceiptRow.created_at < until)
    rows = session.scalars(q.order_by(ReceiptRow.created_at, ReceiptRow.id).limit(limit))
    return [_view(r) for r in rows]


def _view(r: ReceiptRow) -> ReceiptView:
    return ReceiptView(r.id, r.kind, r.created_at, r.addressee, r.document_id, r.recipient,
                       r.delivery_id, r.error_code, r.status_code)


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    event: str  # submitted, accepted, delivered, status 01…16, duplicate, rejected
    actor: str
    recipient: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


def document_timeline(session: Session, document_id: str) -> list[TimelineEvent]:
    """Everything that happened to ``document_id`` across all its recipients, in the
    order it arrived (statuses too: see :func:`current_statuses` for where each
    recipient stands)."""
    events: list[TimelineEvent] = []
    # By id: packages journaled in one batch share their time, and only the id keeps
    # the order they came in.
    docs = session.scalars(select(DocumentRow).where(
        or_(DocumentRow.document_id == document_id, DocumentRow.refers_to == document_id))
        .order_by(DocumentRow.id))
    for d in docs:
        if d.kind == "document" and d.document_id == document_id:
            events.append(TimelineEvent(d.received_at, "submitted", d.sender,
                                        detail=f"{d.size:,} bytes, sha256 {d.sha256[:16]}…"))
        elif d.kind == "status":
            events.append(TimelineEvent(d.received_at, f"status {d.status_code}", d.sender))
        else:
            events.append(TimelineEvent(d.received_at, f"business {d.business_type}", d.sender,
                                        detail=f"as {d.document_id}"))
    for r in session.scalars(select(ReceiptRow).where(ReceiptRow.document_id == document_id)
                             .order_by(ReceiptRow.created_at, ReceiptRow.id)):
        if r.kind == "delivered":
            events.append(TimelineEvent(r.created_at, "delivered", r.addressee, r.recipient))
        elif r.kind in ("accepted", "rejected", "duplicate"):
            events.append(TimelineEvent(r.created_at, r.kind, r.addressee,
                                        detail=r.error_code or r.status_code))
    # A stable sort on time alone: at equal times packages stay before their receipts
    # and in the order they were journaled.
    return sorted(events, key=lambda e: e.at)


@dataclass(frozen=True)
class RecipientStatus:
    """A recipient's current status about a document and when that status arrived."""

    recipient: str
    status_code: str
    at: datetime

    def to_dict(self) -> dict[str, object]:
        return {"recipient": self.recipient, "status_code": self.status_code,
                "at": self.at.isoformat()}


def current_statuses(session: Session, document_id: str) -> list[RecipientStatus]:
    """Each recipient's current status about ``document_id``, by recipient code: its
    furthest status by meaning (:mod:`vdx.core.status_order`), not its last to arrive, which
    is what the timeline shows. Recipients that sent no status are left out."""
    rows = session.execute(
        select(DocumentRow.sender, DocumentRow.status_code, DocumentRow.received_at)
        .where(DocumentRow.kind == "status",
               or_(DocumentRow.document_id == document_id,
                   DocumentRow.refers_to == document_id))
        .order_by(DocumentRow.received_at, DocumentRow.id))
    current: dict[str, RecipientStatus] = {}
    for reporter, code, at in rows:  # arrival order: it decides between equal ranks
        held = current.get(reporter)
        if code and supersedes(code, held.status_code if held else None):
            current[reporter] = RecipientStatus(reporter, code, at)
    return [current[code] for code in sorted(current)]


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_seq: int | None
    problems: tuple[LedgerProblem, ...]

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_ledger(session: Session, verify_sig: Callable[[bytes, bytes], bool]) -> AuditReport:
    """Check the whole chain and every hub signature, against the recorded head."""
    rows = session.scalars(select(LedgerRow).order_by(LedgerRow.seq)).all()
    head = session.get(LedgerHeadRow, 1)
    entries = [journal.row_to_entry(r) for r in rows]
    problems = verify_chain(entries, verify_sig,
                            expected_head=LedgerHead(head.seq, head.entry_hash) if head else None)
    return AuditReport(len(entries), head.seq if head else None, tuple(problems))


def bundle_certificates(session: Session, config, document_id: str) -> list[tuple[str, bytes]]:
    """The certificates a third party needs: the sender's registered ones, the hub's, and
    the trust anchors they chain to."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from vdx.registry import nodes as registry
    from vdx.xmldsig import pki
    from vdx.xmldsig.trust import TrustStore

    doc = session.scalars(select(DocumentRow).where(DocumentRow.document_id == document_id)
                          .order_by(DocumentRow.id).limit(1)).first()
    if doc is None:
        return []
    history = registry.certificate_history(session, doc.sender)
    certs = [(f"sender-{i}.pem" if i else "sender.pem", c.pem.encode())
             for i, c in enumerate(reversed(history))]
    hub = pki.CaDir(config.pki_dir).hub_cert
    if hub.exists():
        certs.append(("hub.pem", hub.read_bytes()))
    anchors = TrustStore.from_dir(config.trust_dir).anchors
    certs.append(("root.pem", b"".join(a.public_bytes(Encoding.PEM) for a in anchors)))
    return certs


def export_bundle(session: Session, document_id: str, certificates: Sequence[tuple[str, bytes]],
                  ) -> bytes | None:
    """A zip a third party can check offline: the signed package(s), every receipt about
    the document, and the certificates (``name``, PEM) needed to verify them; ``None``
    when the hub has no record of ``document_id``."""
    docs = session.scalars(select(DocumentRow).where(DocumentRow.document_id == document_id)
                           .order_by(DocumentRow.id)).all()
    if not docs:
        return None
    receipts = session.scalars(select(ReceiptRow).where(ReceiptRow.document_id == document_id)
                               .order_by(ReceiptRow.created_at)).all()
    deliveries = session.scalars(select(DeliveryRow).where(
        DeliveryRow.document_id == document_id)).all()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for i, d in enumerate(docs, start=1):
            bundle.writestr(f"package-{i}-{d.kind}.edxml", d.body)
        for r in receipts:
            bundle.writestr(f"receipts/{r.created_at:%Y%m%dT%H%M%S}-{r.kind}-{r.id}.xml", r.body)
        for name, pem in certificates:
            bundle.writestr(f"certs/{name}", pem)
        bundle.writestr("manifest.json", json.dumps({
            "document_id": document_id,
            "packages": [{"kind": d.kind, "sender": d.sender, "sha256": d.sha256} for d in docs],
            "deliveries": [{"delivery_id": d.id, "recipient": d.recipient,
                            "confirmed_at": d.confirmed_at.isoformat() if d.confirmed_at
                            else None} for d in deliveries],
            "receipts": [_view(r).to_dict() for r in receipts],
        }, ensure_ascii=False, indent=2))
        bundle.writestr("VERIFY.txt", _HOW_TO_VERIFY)
    return buffer.getvalue()


_HOW_TO_VERIFY = """How to check this bundle offline with xmlsec1 (Debian package xmlsec1):

1. The agency's package: its signature, made with the sender's certificate:
   xmlsec1 --verify --enabled-key-data x509 --pubkey-cert-pem certs/sender.pem package-1-document.edxml

2. Each hub receipt, signed with the hub's certificate:
   for r in receipts/*.xml; do
     xmlsec1 --verify --enabled-key-data x509 --pubkey-cert-pem certs/hub.pem "$r"
   done

3. The certificates chain to the national root in certs/root.pem:
   openssl verify -CAfile certs/root.pem certs/sender.pem certs/hub.pem

Each receipt names the SHA-256 of the package it is about: compare it with
`sha256sum package-*.edxml`.
"""  # noqa: E501 - the command is meant to be copied whole
