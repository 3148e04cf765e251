"""What the gateway does with each message drained from a served node's inbox.

Every message is kept in the mailbox under the hub's message id (a delivery id for
packages, a receipt id for receipts), so a relayed or redelivered copy is dropped. A
receipt updates the sent list (what the hub did with a package a system sent); a status
package updates the sent line of the document it is about, and is offered to the system
like any package.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy.orm import Session

from vdx.broker import wire
from vdx.core.envelope import parse
from vdx.core.model import StatusPackage
from vdx.core.receipts import parse_receipt
from vdx.errors import EnvelopeError, VdxError

from . import mailbox
from .broker import InboxMessage

log = logging.getLogger("vdx.gateway")


def keep(session: Session, message: InboxMessage) -> bool:
    """Keep ``message`` and apply what it says; False for a copy seen before."""
    delivered = to_delivered(message)
    if not mailbox.store_delivery(session, delivered):
        return False
    if delivered.kind == "receipt":
        _apply_receipt(session, message)
    elif delivered.kind == "status":
        _apply_status(session, message)
    return True


# The mailbox's kinds, by what the hub's message is (:func:`vdx.broker.wire.read_from_hub`).
_MAILBOX_KIND = {"document": "edoc", "status": "status", "receipt": "receipt"}


def to_delivered(message: InboxMessage) -> mailbox.Delivered:
    """How an inbox message is kept: its kind from the hub's message type."""
    read = wire.read_from_hub(message.type, message.message_id, message.headers)
    kind = _MAILBOX_KIND.get(read.kind or "", "other")
    message_id = message.message_id or hashlib.sha256(message.body).hexdigest()
    return mailbox.Delivered(message_id, message.node_code, kind, read.sender,
                             read.document_id, message.body)


def _apply_receipt(session: Session, message: InboxMessage) -> None:
    try:
        receipt = parse_receipt(message.body)
    except EnvelopeError as exc:
        log.warning("unreadable receipt in an inbox", extra={"event": "bad_receipt",
                                                             "code": exc.code})
        return
    mailbox.apply_receipt(session, receipt)


def _apply_status(session: Session, message: InboxMessage) -> None:
    try:
        package = parse(message.body)
    except VdxError:
        return  # the hub verified it; nothing here can do better than keep it
    if isinstance(package, StatusPackage):
        mailbox.apply_status(session, message.node_code, package.response_for.organ_id,
                             package.response_for.document_id, package.sender.organ_id,
                             package.status_code)

