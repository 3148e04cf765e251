"""The gateway's durable state: mailbox, sent packages, replay guard (SQL edge).

The tables are :mod:`vdx.gateway`'s; these functions are what the gateway does with them.
They take the session and never commit: the shell owns the transaction. Values go out as
frozen dataclasses, which :mod:`adapters.gateway.wire` turns into VXP answers.

Mailbox states: ``new`` (delivered, never acknowledged), ``processing`` and ``fail``
(reported by the system; still listed, so nothing is lost if the software stops halfway),
``done`` (acknowledged: no longer listed, and final, see :func:`set_state`). Receipts
are kept as ``receipt`` rows in state ``done``: they are never offered to the system;
they update the sent list instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from vdx_adapters.gateway.tables import (
    GatewayMailboxRow,
    GatewayNonceRow,
    GatewaySentRecipientRow,
    GatewaySentRow,
)

from vdx.core.model import STATUS_MEANINGS
from vdx.core.receipts import Receipt
from vdx.core.status_order import status_rank, supersedes
from vdx.store import utcnow

log = logging.getLogger("vdx.gateway")

LISTED = ("new", "processing", "fail")
TRANSITIONS = {"done": "done", "fail": "fail", "processing": "processing"}
KINDS = ("edoc", "status")


@dataclass(frozen=True)
class Delivered:
    """One message taken from a node's inbox, as the mailbox stores it."""

    message_id: str
    node_code: str
    kind: str  # edoc | status | receipt | other
    sender: str | None
    document_id: str | None
    body: bytes


@dataclass(frozen=True)
class MailboxItem:
    message_id: str
    node_code: str
    kind: str
    sender: str | None
    document_id: str | None
    state: str
    status_desc: str | None
    received_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SentLine:
    """One row of ``getSentEdocList``: a sent package and one of its recipients."""

    doc_id: str
    kind: str
    from_code: str
    to_code: str | None
    title: str | None
    notation: str | None
    sent_at: datetime
    send_status: str
    send_status_desc: str | None
    signed_by_gateway: bool
    delivery_id: str | None
    delivered_at: datetime | None
    receive_status: str | None
    receive_status_desc: str | None


# ------------------------------------------------------------------------ replay guard


def remember_signature(session: Session, operation: str, signature: str, system_id: str,
                       now: datetime, keep_until: datetime,
                       operations: Sequence[str]) -> str | None:
    """Record that ``signature`` was accepted for ``operation``, until ``keep_until``;
    return the operation it was accepted for before (one of ``operations``, this one
    first), or ``None`` the first time.

    ``keep_until`` is :attr:`~adapters.gateway.auth.SignedRequest.remember_until`: the
    last moment any reading of the request's timestamp is accepted, so that no replay
    outlives its signature's memory. Each row's key is ``operation|signature``; a
    signature is looked up under every operation, since the SDK does not sign the
    operation (``adapters/gateway/service.py``: what binds a request to it).
    """
    session.execute(delete(GatewayNonceRow).where(GatewayNonceRow.keep_until < now))
    keys = {f"{op}|{signature}": op for op in dict.fromkeys((operation, *operations))}
    seen = set(session.scalars(select(GatewayNonceRow.key)
                               .where(GatewayNonceRow.key.in_(list(keys)))))
    earlier = next((op for key, op in keys.items() if key in seen), None)
    if earlier is None:
        session.add(GatewayNonceRow(key=f"{operation}|{signature}", system_id=system_id,
                                    seen_at=now, keep_until=keep_until))
    return earlier


# ---------------------------------------------------------------------------- mailbox


def store_delivery(session: Session, delivered: Delivered) -> bool:
    """Keep ``delivered`` unless its message id is there already (the hub's relays and
    the broker's redeliveries); returns whether it was new."""
    if session.get(GatewayMailboxRow, delivered.message_id) is not None:
        return False
    now = utcnow()
    state = "new" if delivered.kind in KINDS else "done"
    session.add(GatewayMailboxRow(
        message_id=delivered.message_id, node_code=delivered.node_code, kind=delivered.kind,
        sender=delivered.sender, document_id=delivered.document_id, body=delivered.body,
        state=state, status_desc=None, attempts=0, received_at=now, updated_at=now))
    return True


def list_items(session: Session, nodes: Sequence[str], kind: str) -> list[MailboxItem]:
    """What ``nodes`` have to pick up of ``kind`` (edoc or status), oldest first."""
    rows = session.scalars(select(GatewayMailboxRow).where(*_available(nodes, kind))
                           .order_by(GatewayMailboxRow.received_at,
                                     GatewayMailboxRow.message_id))
    return [_item(row) for row in rows]


def count_items(session: Session, nodes: Sequence[str], kind: str) -> int:
    return session.scalar(select(func.count()).select_from(GatewayMailboxRow)
                          .where(*_available(nodes, kind))) or 0


def item_body(session: Session, nodes: Sequence[str], message_id: str) -> bytes | None:
    """The package ``message_id`` if it is in the mailbox of one of ``nodes``."""
    row = _row(session, nodes, message_id)
    return None if row is None else row.body


def set_state(session: Session, nodes: Sequence[str], message_id: str, status: str,
              ) -> MailboxItem | None:
    """Apply ``updateStatus``; ``None`` if ``nodes`` have no such message.

    ``done`` is final: the item comes back unchanged, still ``done``, whatever ``status``
    says, so a late or replayed ``fail`` can never offer an acknowledged document again.
    """
    row = _row(session, nodes, message_id, for_update=True)
    if row is None:
        return None
    if row.state == "done":
        return _item(row)
    row.state = TRANSITIONS[status]
    row.updated_at = utcnow()
    if status == "fail":
        row.attempts += 1
    return _item(row)


def _available(nodes: Sequence[str], kind: str) -> tuple:
    return (GatewayMailboxRow.node_code.in_(list(nodes)), GatewayMailboxRow.kind == kind,
            GatewayMailboxRow.state.in_(LISTED))


def _row(session: Session, nodes: Sequence[str], message_id: str,
         for_update: bool = False) -> GatewayMailboxRow | None:
    query = select(GatewayMailboxRow).where(GatewayMailboxRow.message_id == message_id,
                                            GatewayMailboxRow.node_code.in_(list(nodes)),
                                            GatewayMailboxRow.kind.in_(KINDS))
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def _item(row: GatewayMailboxRow) -> MailboxItem:
    return MailboxItem(row.message_id, row.node_code, row.kind, row.sender, row.document_id,
                       row.state, row.status_desc, row.received_at, row.updated_at)


# ------------------------------------------------------------------------------- sent


def find_sent(session: Session, from_code: str, sha256: str) -> GatewaySentRow | None:
    return session.scalars(select(GatewaySentRow).where(GatewaySentRow.from_code == from_code,
                                                        GatewaySentRow.sha256 == sha256)).first()


def record_sent(session: Session, row: GatewaySentRow, recipients: Sequence[str]) -> None:
    """Keep a package about to be published, with the recipients the hub will route to."""
    session.add(row)
    session.flush()
    for code in dict.fromkeys(recipients):
        session.add(GatewaySentRecipientRow(doc_id=row.doc_id, to_code=code,
                                            updated_at=row.sent_at))


def mark_published(session: Session, doc_id: str, when: datetime) -> None:
    row = session.get(GatewaySentRow, doc_id)
    if row is not None and row.published_at is None:
        row.published_at = when
        row.body = None  # the hub has it now; it was kept only to publish it again


def unpublished(session: Session) -> list[GatewaySentRow]:
    return list(session.scalars(select(GatewaySentRow)
                                .where(GatewaySentRow.published_at.is_(None))
                                .order_by(GatewaySentRow.sent_at)))


def apply_receipt(session: Session, receipt: Receipt) -> bool:
    """Record what a hub receipt says about a package a system sent; False if the package
    did not go through the gateway (the node also speaks AMQP, say)."""
    row = session.scalars(select(GatewaySentRow).where(
        GatewaySentRow.from_code == receipt.addressee,
        GatewaySentRow.published_sha256 == receipt.package_sha256)).first()
    if row is None:
        return False
    now = utcnow()
    if receipt.kind == "delivered" and receipt.recipient:
        line = _recipient(session, row.doc_id, receipt.recipient, now)
        line.delivery_id, line.delivered_at, line.updated_at = (
            receipt.delivery_id, receipt.issued_at, now)
        if row.send_status in ("pending", "accepted"):
            row.send_status, row.send_status_desc = "accepted", "accepted by the hub"
    elif receipt.kind == "rejected" and receipt.rejection is not None:
        r = receipt.rejection
        row.send_status = "rejected"
        row.send_status_desc = f"{r.code}: {r.detail or r.message_en} ({r.message_vi})"
    elif receipt.kind in ("accepted", "duplicate") and row.send_status == "pending":
        row.send_status = receipt.kind
        row.send_status_desc = ("accepted by the hub" if receipt.kind == "accepted" else
                                "the hub had received this document before")
    return True


def apply_status(session: Session, node: str, about_sender: str, document_id: str,
                 reporter: str, code: str) -> bool:
    """A recipient's status (01…16) about a document ``node`` sent through the gateway.

    ``receiveStatus`` is the recipient's furthest status by meaning
    (:mod:`vdx.core.status_order`), whatever order the statuses arrive in."""
    if about_sender != node:
        return False  # a recall (13) sent to this node: not about its own document
    if status_rank(code) is None:
        return False  # 13 is the sender's request, never a recipient's status
    rows = session.scalars(select(GatewaySentRow).where(
        GatewaySentRow.from_code == node, GatewaySentRow.document_id == document_id,
        GatewaySentRow.kind == "edoc")).all()
    now = utcnow()
    for row in rows:
        # Locked: gateways draining one inbox side by side may apply a 01 and a 03 at
        # once, and the later transaction must compare with what the first one wrote.
        line = _recipient(session, row.doc_id, reporter, now, lock=True)
        if supersedes(code, line.receive_status):
            line.receive_status = code
            line.receive_status_desc = STATUS_MEANINGS.get(code, ("", ""))[0] or None
        line.updated_at = now
    return bool(rows)


def sent_lines(session: Session, nodes: Sequence[str], kind: str | None,
               doc_id: str | None, limit: int = 1000) -> list[SentLine]:
    """``getSentEdocList``: the newest packages ``nodes`` sent, one line per recipient."""
    query = select(GatewaySentRow).where(GatewaySentRow.from_code.in_(list(nodes)))
    if kind:
        query = query.where(GatewaySentRow.kind == kind)
    if doc_id:
        query = query.where(GatewaySentRow.doc_id == doc_id)
    lines: list[SentLine] = []
    for row in session.scalars(query.order_by(GatewaySentRow.sent_at.desc()).limit(limit)):
        recipients = session.scalars(select(GatewaySentRecipientRow)
                                     .where(GatewaySentRecipientRow.doc_id == row.doc_id)
                                     .order_by(GatewaySentRecipientRow.to_code)).all()
        for r in recipients or [None]:
            lines.append(SentLine(
                row.doc_id, row.kind, row.from_code, r.to_code if r else None, row.title,
                row.notation, row.sent_at, row.send_status, row.send_status_desc,
                row.signed_by_gateway, r.delivery_id if r else None,
                r.delivered_at if r else None, r.receive_status if r else None,
                r.receive_status_desc if r else None))
    return lines


def _recipient(session: Session, doc_id: str, code: str, now: datetime, *,
               lock: bool = False) -> GatewaySentRecipientRow:
    line = session.get(GatewaySentRecipientRow, (doc_id, code), with_for_update=lock)
    if line is None:  # a recall reaches recipients the package itself does not name
        line = GatewaySentRecipientRow(doc_id=doc_id, to_code=code, updated_at=now)
        session.add(line)
    return line
