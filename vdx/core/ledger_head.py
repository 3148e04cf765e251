"""The ledger's head as a document the hub signs: an anchor auditors keep off the database.

A chain cannot show that its newest entries were cut off (:mod:`vdx.core.ledger`). A head
recorded elsewhere can: ``vdx audit head`` and ``vdx audit publish-heads`` write one, and
``vdx audit verify --expect-head`` proves the ledger still reaches it. The document::

    <LedgerHead xmlns="urn:vdx:ledger-head:1">
      <HubId>vdx-hub</HubId>
      <IssuedAt>2026-12-05T14:00:00Z</IssuedAt>      when the head was read
      <Seq>1234</Seq>                                 the last entry's position
      <EntryHash>…64 hex…</EntryHash>                 its entry_hash
      <ds:Signature>…</ds:Signature>                  the hub's, as on a receipt
    </LedgerHead>

It is signed exactly as a receipt is (an enveloped XML-DSig signature, the last child of
the root, made by :meth:`vdx.xmldsig.sign.Signer.sign_receipt`), so ``xmlsec1 --verify
--pubkey-cert-pem hub.pem FILE`` checks it offline and the hub's verifier checks it with
:meth:`vdx.xmldsig.verify.Verifier.verify_receipt`.

Pure: this module writes the unsigned document and reads a signed one's tree; signing and
verifying are the caller's (:mod:`vdx.hub.audit`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from vdx.core.ledger import LedgerHead
from vdx.core.receipts import format_utc, parse_utc
from vdx.core.schema import DS_NS
from vdx.core.xmlsafe import ParseLimits, parse_untrusted
from vdx.errors import VdxError

HEAD_NS = "urn:vdx:ledger-head:1"
# A head is its four fields and a signature with the hub's certificate chain.
HEAD_LIMITS = ParseLimits(max_bytes=64 * 1024, max_depth=16, max_text=16 * 1024)
FILE_PREFIX, FILE_SUFFIX = "ledger-head-", ".xml"

_H = f"{{{HEAD_NS}}}"
_FIELDS = ("HubId", "IssuedAt", "Seq", "EntryHash")
_SIGNATURE = f"{{{DS_NS}}}Signature"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HUB_ID = re.compile(r"[!-~]{1,64}")
_SEQ = re.compile(r"[1-9][0-9]{0,18}")


class HeadDocumentError(ValueError):
    """The bytes are not a ledger head document; the message says what is wrong."""


@dataclass(frozen=True)
class HeadRecord:
    """What a head document certifies: ``hub_id``'s ledger ended at ``head`` at
    ``issued_at`` (aware UTC)."""

    hub_id: str
    issued_at: datetime
    head: LedgerHead

    def __post_init__(self) -> None:
        if not isinstance(self.hub_id, str) or not _HUB_ID.fullmatch(self.hub_id):
            raise ValueError(f"hub_id must be 1 to 64 printable ASCII characters: "
                             f"{self.hub_id!r}")
        if self.head.seq < 1 or not _HEX64.fullmatch(self.head.entry_hash):
            raise ValueError(f"not the head of a non-empty ledger: {self.head}")
        format_utc(self.issued_at)  # refuses a naive time

    def to_dict(self) -> dict[str, object]:
        return {"hub_id": self.hub_id, "issued_at": format_utc(self.issued_at),
                "seq": self.head.seq, "entry_hash": self.head.entry_hash}


def file_name(seq: int) -> str:
    """The file a head of position ``seq`` is published as: zero-padded to the 20 digits
    of a 64-bit number, so that names sort in ledger order."""
    return f"{FILE_PREFIX}{seq:020d}{FILE_SUFFIX}"


def build_head_document(record: HeadRecord) -> bytes:
    """The unsigned document (UTF-8, with an XML declaration), ready for the hub's
    receipt signer."""
    root = etree.Element(_H + "LedgerHead", nsmap={None: HEAD_NS})
    values = (record.hub_id, format_utc(record.issued_at), str(record.head.seq),
              record.head.entry_hash)
    for name, value in zip(_FIELDS, values, strict=True):
        etree.SubElement(root, _H + name).text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def load_head_tree(data: bytes) -> etree._ElementTree:
    """Parse untrusted bytes (hardened parser) and check the document's shape: the root,
    its four fields in order, then one ``ds:Signature``. Raises :class:`HeadDocumentError`.
    The signature is not verified here."""
    try:
        tree = parse_untrusted(data, HEAD_LIMITS)
    except VdxError as exc:
        raise HeadDocumentError(str(exc)) from exc
    root = tree.getroot()
    if root.tag != _H + "LedgerHead":
        raise HeadDocumentError(f"the root element is {root.tag}, not {_H}LedgerHead")
    if next(root.iter(etree.Comment, etree.ProcessingInstruction), None) is not None:
        raise HeadDocumentError("comments and processing instructions are not allowed")
    tags = [child.tag for child in root]
    if tags != [_H + name for name in _FIELDS] + [_SIGNATURE]:
        raise HeadDocumentError("expected HubId, IssuedAt, Seq, EntryHash and a "
                                "ds:Signature, in that order")
    if root.text and root.text.strip() or any(len(child) for child in root[:-1]):
        raise HeadDocumentError("unexpected content in a ledger head")
    return tree


def head_from_tree(tree: etree._ElementTree | etree._Element) -> HeadRecord:
    """The record of a tree :func:`load_head_tree` accepted (typically the signed tree the
    verifier returned, without its signature). Raises :class:`HeadDocumentError`."""
    root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
    texts = {child.tag: child.text or "" for child in root}
    hub_id, issued_at, seq, entry_hash = (texts.get(_H + name, "") for name in _FIELDS)
    if not _SEQ.fullmatch(seq) or not _HEX64.fullmatch(entry_hash):
        raise HeadDocumentError(f"Seq {seq!r}, EntryHash {entry_hash!r}")
    try:
        return HeadRecord(hub_id, parse_utc(issued_at), LedgerHead(int(seq), entry_hash))
    except ValueError as exc:
        raise HeadDocumentError(str(exc)) from exc
