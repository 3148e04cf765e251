"""What auditors ask of the journal: receipts, one document's timeline, the ledger's proof.

The proof: :func:`verify_ledger` checks the chain, every hub signature and every receipt
row against its ledger entry; :func:`publish_head` writes the hub-signed current head
(:mod:`vdx.core.ledger_head`) for auditors to keep, and a kept head, read back by
:func:`read_heads`, lets :func:`verify_ledger` prove that no entry was cut off the end.

Functions take a session and return frozen values; the CLI prints them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from sqlalchemy import or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from vdx.core.ledger import (
    LedgerHead,
    LedgerProblem,
    ReceiptAudit,
    StoredReceipt,
    VerifySignature,
    audit_chain,
    is_genuine,
)
from vdx.core.ledger_head import (
    FILE_PREFIX,
    FILE_SUFFIX,
    HeadDocumentError,
    HeadRecord,
    build_head_document,
    file_name,
    head_from_tree,
    load_head_tree,
)
from vdx.core.status_order import supersedes
from vdx.errors import TransportError, VdxError
from vdx.hub import journal
from vdx.hub.journal import DeliveryRow, DocumentRow, LedgerHeadRow, LedgerRow, ReceiptRow

if TYPE_CHECKING:
    from vdx.xmldsig.sign import Signer

log = logging.getLogger("vdx.audit")


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


def get_receipt(session: Session, receipt_id: str) -> tuple[ReceiptView, bytes] | None:
    """One receipt and its signed XML (it names the package by its SHA-256, never holds
    it), or ``None``."""
    row = session.get(ReceiptRow, receipt_id)
    return None if row is None else (_view(row), row.body)


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
    """The ledger's chain and signatures, and the receipts table checked against it."""

    entries: int
    head_seq: int | None
    problems: tuple[LedgerProblem, ...]
    receipts: int = 0  # receipt rows checked

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_ledger(session: Session, verify_sig: VerifySignature, *,
                  expected_heads: Sequence[LedgerHead] = ()) -> AuditReport:
    """Check the whole chain and every hub signature against the head the database
    records and ``expected_heads`` (heads kept off the database, :func:`read_head`), then
    every receipt row against its ledger entry (:class:`~vdx.core.ledger.ReceiptAudit`).
    Problems come back by position; receipts that are in no entry come last."""
    rows = session.scalars(select(LedgerRow).order_by(LedgerRow.seq)).all()
    head = session.get(LedgerHeadRow, 1)
    entries = [journal.row_to_entry(r) for r in rows]
    recorded = LedgerHead(head.seq, head.entry_hash) if head else None
    chain = audit_chain(entries, verify_sig, expected_heads=(recorded, *expected_heads))
    receipts = ReceiptAudit(chain.genuine, (e.receipt_id for e in entries))
    for row in session.execute(_STORED_RECEIPTS.execution_options(yield_per=500)):
        receipts.check(StoredReceipt(*row))
    problems = sorted([*chain.problems, *receipts.finish()],
                      key=lambda p: (p.seq is None, p.seq or 0))  # stable: chain first
    return AuditReport(len(entries), head.seq if head else None, tuple(problems),
                       receipts.checked)


_STORED_RECEIPTS = select(
    ReceiptRow.id, ReceiptRow.kind, ReceiptRow.addressee, ReceiptRow.document_id,
    ReceiptRow.recipient, ReceiptRow.delivery_id, ReceiptRow.error_code,
    ReceiptRow.status_code, ReceiptRow.created_at, ReceiptRow.body)


# ====================================================================== heads ======

class HeadError(Exception):
    """The ledger's head cannot be certified, or a head file cannot be used; the
    message says why (for the CLI)."""


def current_head(session: Session, verify_sig: VerifySignature) -> LedgerHead | None:
    """The head the database records (``None`` for an empty ledger), once its entry is
    found and proven genuine: the hub never certifies a head it did not write."""
    head = session.get(LedgerHeadRow, 1)
    if head is None or head.seq == 0:
        return None
    row = session.get(LedgerRow, head.seq)
    if row is None or row.entry_hash != head.entry_hash:
        raise HeadError(f"the recorded head (entry {head.seq}) is not in the ledger: run "
                        "`vdx audit verify`")
    if not is_genuine(journal.row_to_entry(row), verify_sig):
        raise HeadError(f"entry {head.seq}, the head, is not signed by the hub: run "
                        "`vdx audit verify`")
    return LedgerHead(head.seq, head.entry_hash)


def sign_head(record: HeadRecord, signer: Signer) -> bytes:
    """The head document, signed as receipts are (``signer``: the hub's
    :class:`vdx.xmldsig.sign.Signer`)."""
    return signer.sign_receipt(build_head_document(record))


def read_head(data: bytes, hub_certificate: x509.Certificate) -> HeadRecord:
    """The record of a head document, if ``hub_certificate`` signed it; raises
    :class:`HeadError` for anything else (a forged or edited head, other bytes)."""
    from vdx.xmldsig.verify import Verifier

    try:
        signed = Verifier.verify_receipt(load_head_tree(data), hub_certificate, consume=True)
        return head_from_tree(signed)
    except HeadDocumentError as exc:
        raise HeadError(f"not a ledger head document: {exc}") from exc
    except VdxError as exc:
        raise HeadError(f"not signed by the hub ({exc.code}): {exc.message}") from exc


def read_heads(path: Path, hub_certificate: x509.Certificate) -> list[HeadRecord]:
    """The head in a file, or every head published in a directory (each one checked)."""
    files = (sorted(path.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")) if path.is_dir() else [path])
    if not files:
        raise HeadError(f"{path} holds no {FILE_PREFIX}*{FILE_SUFFIX} file")
    heads = []
    for file in files:
        try:
            heads.append(read_head(file.read_bytes(), hub_certificate))
        except OSError as exc:
            raise HeadError(f"cannot read {file}: {exc.strerror}") from exc
        except HeadError as exc:
            raise HeadError(f"{file}: {exc}") from exc
    return heads


@dataclass(frozen=True)
class Published:
    """The head file for the current head: written now, or found from an earlier run."""

    record: HeadRecord
    path: Path
    written: bool


def publish_head(session: Session, signer: Signer, verify_sig: VerifySignature,
                 directory: Path, *, hub_id: str, now: datetime) -> Published | None:
    """Write the signed current head to ``directory`` as :func:`file_name` of its seq,
    unless that file exists (the head has not moved); ``None`` for an empty ledger.

    A file already there for the same position but another hash is never replaced: it
    is proof that the ledger was rewritten from that entry, raised as :class:`HeadError`.
    """
    head = current_head(session, verify_sig)
    if head is None:
        return None
    path = directory / file_name(head.seq)
    if not path.exists():
        record = HeadRecord(hub_id, now, head)
        if _create(path, sign_head(record, signer)):
            return Published(record, path, True)
    kept = read_heads(path, signer.certificate)[0]
    if kept.head != head:
        raise HeadError(f"{path} certifies entry {head.seq} as {kept.head.entry_hash[:16]}…, "
                        f"but the ledger now holds {head.entry_hash[:16]}… there: it was "
                        "rewritten from that entry")
    return Published(kept, path, False)


def publish_heads(sessions: Callable[[], AbstractContextManager[Session]], signer: Signer,
                  verify_sig: VerifySignature, directory: Path, *, hub_id: str, every: float,
                  wait: Callable[[float], bool],
                  report: Callable[[Published | None], None] = lambda _: None,
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """:func:`publish_head` now and after every ``wait(every)`` until it returns True
    (a stop event's ``wait``); ``report`` hears each round's outcome. ``sessions()``
    gives one transaction. A database that is away for a round is retried the next; a
    rewritten ledger stops it (:class:`HeadError`).
    """
    while True:
        try:
            with sessions() as session:
                report(publish_head(session, signer, verify_sig, directory,
                                    hub_id=hub_id, now=clock()))
        except (OperationalError, TransportError) as exc:
            log.warning("cannot read the ledger head now, trying again in %gs: %s",
                        every, exc)
        if wait(every):
            return


def _create(path: Path, data: bytes) -> bool:
    """Write ``path`` whole or not at all, never over an existing file; False if one
    appeared meanwhile (another publisher)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.link(tmp, path)  # fails if the name exists: a published head is never replaced
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


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
                  *, packages: bool = True) -> bytes | None:
    """A zip a third party can check offline: the signed package(s), every receipt about
    the document, and the certificates (``name``, PEM) needed to verify them; ``None``
    when the hub has no record of ``document_id``.

    ``packages=False`` leaves the packages out (an auditor's bundle: no document content
    or attachment): the hub's signed receipts and the manifest still name each package's
    SHA-256, so whoever holds the package can check it against them."""
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
            if packages:
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
        bundle.writestr("VERIFY.txt", _HOW_TO_VERIFY if packages
                        else _WITHHELD + _HOW_TO_VERIFY.split("\n\n", 2)[2])
    return buffer.getvalue()


_WITHHELD = """How to check this bundle offline with xmlsec1 (Debian package xmlsec1).

The packages themselves are withheld (an auditor's bundle: no document content): their
SHA-256 are in manifest.json and, signed by the hub, in each receipt; whoever holds a
package checks it with `sha256sum` and step 1 of a full bundle (`vdx audit export`).

"""

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
