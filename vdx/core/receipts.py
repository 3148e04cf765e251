"""Hub receipts: what the hub certifies about one package, as signed XML.

A receipt (``schemas/receipt.xsd``, namespace ``urn:vdx:receipt:1``) is addressed to the
agency that sent the package and says what happened to exactly which bytes
(``package_sha256``): ``accepted``, ``rejected`` (a stable code from :mod:`vdx.errors`
with its summary in Vietnamese and English and the specific detail), ``delivered`` (one
per recipient), ``duplicate``, or ``status`` (a recipient's edXML status relayed to the
sender). The hub signs every receipt with an enveloped XML-DSig signature, the last
child of the root.

``build_receipt(r)`` writes an unsigned, schema-valid receipt; ``parse_receipt`` reads one
back with the hardened parser and the schema, and ``parse_receipt(build_receipt(r)) == r``
for every valid :class:`Receipt`. Parsing checks form only: whoever relies on a receipt
verifies the hub's signature first and reads the signed tree with :func:`receipt_from_tree`.

The hub's answer to a submission (``accepted``, ``rejected``, ``duplicate``) has an id
the sender can compute from what it sent (:func:`answer_id`), so it can tell the answer
to this message from the answer to an earlier copy of the same bytes (:func:`answers`).

``sign_receipt(r, sign)`` signs with any ``sign`` (bytes in, bytes out) and checks what it
got back; ``signed_receipt(r, signer)``, the hub's path, writes the receipt once in its
canonical form and signs that, with no round trip through bytes.

No broker, database or CLI here: values in, bytes out.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from lxml import etree

from vdx.core import schema
from vdx.core.model import STATUS_CODES
from vdx.core.schema import DS_NS
from vdx.core.xmlsafe import ParseLimits, element_path, parse_untrusted
from vdx.errors import CATALOGUE, EnvelopeError, VdxError

RECEIPT_NS = "urn:vdx:receipt:1"
RECEIPT_XSD = "receipt.xsd"
KINDS = ("accepted", "rejected", "delivered", "duplicate", "status")
# A receipt is a few KB (a signature and its certificate chain included): anything much
# larger or deeper is not one of ours.
RECEIPT_LIMITS = ParseLimits(max_bytes=1024 * 1024, max_depth=32, max_text=64 * 1024)
MAX_TEXT = 4096  # the schema's Text maxLength

_R = f"{{{RECEIPT_NS}}}"
_DS_SIGNATURE = f"{{{DS_NS}}}Signature"
_KIND_ELEMENT = {"accepted": "Accepted", "rejected": "Rejected", "delivered": "Delivered",
                 "duplicate": "Duplicate", "status": "Status"}
_ELEMENT_KIND = {_R + name: kind for kind, name in _KIND_ELEMENT.items()}

# The facts each kind must carry and may carry, exactly as the schema says.
_REQUIRED = {
    "accepted": {"document_id"},
    "rejected": {"rejection"},
    "delivered": {"document_id", "recipient", "delivery_id"},
    "duplicate": {"document_id"},
    "status": {"document_id", "recipient", "status_code"},
}
_ALLOWED = {
    "accepted": {"document_id", "status_code"},
    "rejected": {"document_id", "rejection"},
    "delivered": {"document_id", "recipient", "delivery_id", "status_code"},
    "duplicate": {"document_id", "recipient", "delivery_id", "status_code"},
    "status": {"document_id", "recipient", "delivery_id", "status_code"},
}
_FACTS = ("document_id", "recipient", "delivery_id", "status_code", "rejection")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Printable ASCII: registered codes are digits, capitals and dots; anything wider would
# let two codes look alike.
_CODE = re.compile(r"[!-~]{1,64}")
_ERROR_CODE = re.compile(r"[a-z]+\.[a-z0-9_]+")
_XML_WHITESPACE = " \t\n\r"
# Characters XML 1.0 cannot carry at all; lxml refuses to write them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# ======================================================================== values ======

@dataclass(frozen=True)
class Rejection:
    """Why a package was refused.

    ``code`` is a catalogue code; ``message_vi`` and ``message_en`` are its summaries as
    the hub wrote them (kept verbatim on parsing, so a receipt reads the same even if the
    catalogue's wording changes later); ``detail`` is what was specific to this package,
    ``line`` and ``path`` locate it.
    """

    code: str
    message_vi: str
    message_en: str
    detail: str | None = None
    line: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _ERROR_CODE.fullmatch(self.code) \
                or len(self.code) > 64:
            raise ValueError(f"not an error code: {self.code!r}")
        _check_text("message_vi", self.message_vi)
        _check_text("message_en", self.message_en)
        if self.detail is not None:
            _check_text("detail", self.detail)
        if self.path is not None:
            _check_text("path", self.path)
        if self.line is not None and (
                isinstance(self.line, bool) or not isinstance(self.line, int) or self.line < 1):
            raise ValueError(f"line must be a positive integer, not {self.line!r}")

    @classmethod
    def of(cls, error: VdxError | str, detail: str | None = None, *,
           line: int | None = None, path: str | None = None) -> Rejection:
        """The rejection for ``error``, or for a catalogue code and its specific detail.

        The summaries come from the catalogue; a detail that only repeats the English
        summary is dropped, and one too long or not writable as XML is cut and cleaned,
        so any exception can become a receipt.
        """
        if isinstance(error, VdxError):
            code, detail = error.code, detail if detail is not None else error.message
            line = line if line is not None else error.line
            path = path if path is not None else error.path
        else:
            code = error
        spec = CATALOGUE.get(code)
        if spec is None:
            raise ValueError(f"{code!r} is not in the error catalogue")
        detail = _printable(detail)
        if detail == spec.en:
            detail = None
        return cls(code, spec.vi, spec.en, detail,
                   line if isinstance(line, int) and line >= 1 else None, _printable(path))


@dataclass(frozen=True)
class Receipt:
    """One receipt, unsigned. Construct it with the class methods, which fill in the id
    and the time; the constructor checks what the schema checks and raises ValueError.

    ``sender`` is the agency the receipt goes to (:attr:`addressee`): the one that
    submitted the package, or for ``status``, the document's sender to whom a status was
    relayed. ``recipient`` is the other party: the agency a copy was delivered to, or for
    ``status``, the one that reported the status (for 13, a recall, the one it went to).
    ``issued_at`` is kept in UTC.
    """

    kind: str
    hub_id: str
    sender: str
    package_sha256: str
    document_id: str | None = None
    recipient: str | None = None
    delivery_id: str | None = None
    status_code: str | None = None
    rejection: Rejection | None = None
    receipt_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        _check_match("receipt_id", self.receipt_id, _UUID, "a lowercase UUID")
        _check_match("hub_id", self.hub_id, _CODE, "1 to 64 printable ASCII characters")
        _check_match("sender", self.sender, _CODE, "1 to 64 printable ASCII characters")
        _check_match("package_sha256", self.package_sha256, _SHA256, "64 lowercase hex digits")
        if not isinstance(self.issued_at, datetime) or self.issued_at.utcoffset() is None:
            raise ValueError("issued_at must be a timezone-aware datetime")
        # Frozen: normalising in place is the one write a frozen dataclass allows itself.
        object.__setattr__(self, "issued_at", self.issued_at.astimezone(UTC))
        present = {name for name in _FACTS if getattr(self, name) is not None}
        if missing := _REQUIRED[self.kind] - present:
            raise ValueError(f"a {self.kind} receipt needs {', '.join(sorted(missing))}")
        if extra := present - _ALLOWED[self.kind]:
            raise ValueError(f"a {self.kind} receipt cannot carry {', '.join(sorted(extra))}")
        if self.document_id is not None:
            _check_text("document_id", self.document_id)
        if self.recipient is not None:
            _check_match("recipient", self.recipient, _CODE, "1 to 64 printable ASCII characters")
        if self.delivery_id is not None:
            _check_match("delivery_id", self.delivery_id, _UUID, "a lowercase UUID")
        if self.status_code is not None and self.status_code not in STATUS_CODES:
            raise ValueError(f"status_code must be one of {', '.join(STATUS_CODES)}")
        if self.rejection is not None and not isinstance(self.rejection, Rejection):
            raise ValueError("rejection must be a Rejection")

    # -------------------------------------------------------------- constructors

    @classmethod
    def accepted(cls, hub_id: str, sender: str, document_id: str, package_sha256: str, *,
                 status_code: str | None = None, receipt_id: str | None = None,
                 issued_at: datetime | None = None) -> Receipt:
        """The package passed every check; ``status_code`` if it was a status package."""
        return cls._new("accepted", hub_id, sender, package_sha256, receipt_id, issued_at,
                        document_id=document_id, status_code=status_code)

    @classmethod
    def rejected(cls, hub_id: str, sender: str, error: VdxError | str, package_sha256: str,
                 *, detail: str | None = None, document_id: str | None = None,
                 receipt_id: str | None = None, issued_at: datetime | None = None) -> Receipt:
        """The package was refused with ``error`` (an exception, or a catalogue code and
        its ``detail``); ``sender`` is the broker-validated publisher."""
        return cls._new("rejected", hub_id, sender, package_sha256, receipt_id, issued_at,
                        document_id=document_id, rejection=Rejection.of(error, detail))

    @classmethod
    def delivered(cls, hub_id: str, sender: str, document_id: str, recipient: str,
                  delivery_id: str, package_sha256: str, *, status_code: str | None = None,
                  receipt_id: str | None = None, issued_at: datetime | None = None,
                  ) -> Receipt:
        """One copy of the package is durably queued for ``recipient``."""
        return cls._new("delivered", hub_id, sender, package_sha256, receipt_id, issued_at,
                        document_id=document_id, recipient=recipient,
                        delivery_id=delivery_id, status_code=status_code)

    @classmethod
    def duplicate(cls, hub_id: str, sender: str, document_id: str, package_sha256: str, *,
                  recipient: str | None = None, delivery_id: str | None = None,
                  status_code: str | None = None, receipt_id: str | None = None,
                  issued_at: datetime | None = None) -> Receipt:
        """The package was received before; ``delivery_id`` names the earlier delivery."""
        return cls._new("duplicate", hub_id, sender, package_sha256, receipt_id, issued_at,
                        document_id=document_id, recipient=recipient,
                        delivery_id=delivery_id, status_code=status_code)

    @classmethod
    def status_relayed(cls, hub_id: str, sender: str, document_id: str, recipient: str,
                       status_code: str, package_sha256: str, *,
                       delivery_id: str | None = None, receipt_id: str | None = None,
                       issued_at: datetime | None = None) -> Receipt:
        """``recipient``'s status ``status_code`` about ``document_id`` (sent by
        ``sender``) was relayed; ``package_sha256`` is the status package's."""
        return cls._new("status", hub_id, sender, package_sha256, receipt_id, issued_at,
                        document_id=document_id, recipient=recipient,
                        delivery_id=delivery_id, status_code=status_code)

    @classmethod
    def _new(cls, kind: str, hub_id: str, sender: str, package_sha256: str,
             receipt_id: str | None, issued_at: datetime | None, **facts) -> Receipt:
        return cls(kind, hub_id, sender, package_sha256, **facts,
                   receipt_id=receipt_id or str(uuid.uuid4()),
                   issued_at=issued_at or datetime.now(UTC))

    # -------------------------------------------------------------- views

    @property
    def addressee(self) -> str:
        """The agency whose inbox gets this receipt."""
        return self.sender

    @property
    def error_code(self) -> str | None:
        return self.rejection.code if self.rejection else None

    def ledger_fields(self, signed: bytes) -> dict[str, object]:
        """The fields of the ledger entry for this receipt once signed as ``signed``
        (keyword arguments of :func:`vdx.core.ledger.next_entry`, ``sign`` aside)."""
        return {
            "kind": self.kind, "document_id": self.document_id, "sender": self.sender,
            "recipient": self.recipient, "receipt_id": self.receipt_id,
            "receipt_sha256": hashlib.sha256(signed).hexdigest(), "created_at": self.issued_at,
        }


# The hub's answer to one submission (``accepted``, ``rejected`` or ``duplicate``) has an
# id derived from that submission; every other receipt's id is random (version 4).
ANSWER_KINDS = frozenset({"accepted", "rejected", "duplicate"})
_ANSWERS = uuid.uuid5(uuid.NAMESPACE_URL, RECEIPT_NS + "#answer")


def answer_id(user_id: str | None, message_id: str | None, package_sha256: str) -> str:
    """The receipt id of the hub's answer to the submission that broker user ``user_id``
    published with AMQP message id ``message_id``, its bytes hashing to
    ``package_sha256``: a version-5 UUID of the three. The sender can compute it, so it
    finds the answer to *this* submission rather than to an earlier copy of the same
    bytes; the answer keeps it when the hub publishes it again; and, signed in the
    receipt, it binds the answer to the submission for an auditor."""
    return str(uuid.uuid5(_ANSWERS, f"{user_id or ''}\n{message_id or ''}\n{package_sha256}"))


def answers(receipt: Receipt, user_id: str | None, message_id: str | None,
            package_sha256: str) -> bool:
    """Whether ``receipt`` is the hub's answer to that submission (:func:`answer_id`). A
    hub that derives no answer ids (older hubs: every id random, version 4) is matched on
    the package's SHA-256 alone."""
    if receipt.kind not in ANSWER_KINDS or receipt.package_sha256 != package_sha256:
        return False
    if receipt.receipt_id == answer_id(user_id, message_id, package_sha256):
        return True
    return uuid.UUID(receipt.receipt_id).version != 5


accepted = Receipt.accepted
rejected = Receipt.rejected
delivered = Receipt.delivered
duplicate = Receipt.duplicate
status_relayed = Receipt.status_relayed


# ======================================================================= writing ======

def build_receipt(r: Receipt) -> bytes:
    """The unsigned receipt as UTF-8 XML; schema-valid for every valid :class:`Receipt`."""
    root = etree.Element(_R + "Receipt", nsmap={None: RECEIPT_NS})
    _sub(root, "ReceiptId", r.receipt_id)
    _sub(root, "HubId", r.hub_id)
    _sub(root, "IssuedAt", format_utc(r.issued_at))
    _sub(root, "Sender", r.sender)
    _sub(root, "PackageSha256", r.package_sha256)
    facts = _sub(root, _KIND_ELEMENT[r.kind])
    _sub(facts, "DocumentId", r.document_id)
    if r.rejection is not None:
        j = r.rejection
        _sub(facts, "Code", j.code)
        _sub(facts, "MessageVi", j.message_vi)
        _sub(facts, "MessageEn", j.message_en)
        _sub(facts, "Detail", j.detail)
        _sub(facts, "Line", None if j.line is None else str(j.line))
        _sub(facts, "Path", j.path)
    _sub(facts, "Recipient", r.recipient)
    _sub(facts, "DeliveryId", r.delivery_id)
    _sub(facts, "StatusCode", r.status_code)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class ReceiptSigner(Protocol):
    """What :func:`signed_receipt` needs of a signer (:class:`vdx.xmldsig.sign.Signer`)."""

    def receipt_signature(self, canonical: bytes) -> bytes:
        """The serialised enveloped ``ds:Signature`` over the document whose exclusive
        C14N is ``canonical``, to be written as the last child of its root."""
        ...


def sign_receipt(r: Receipt, sign: Callable[[bytes], bytes]) -> bytes:
    """Build ``r`` and sign it with ``sign`` (unsigned XML in, signed XML out).

    ``sign`` must append one enveloped ``ds:Signature`` as the last child of the root and
    change nothing else; the result is checked against the schema and against ``r``, and
    a signer that does otherwise raises ValueError (it is wired wrong, not the sender's
    fault).

    The hub signs with :func:`signed_receipt` instead: the same receipt, written and
    signed in one pass.
    """
    signed = sign(build_receipt(r))
    tree = load_receipt_tree(signed)
    last = tree.getroot()[-1]
    if last.tag != _DS_SIGNATURE:
        raise ValueError("the signer did not append a ds:Signature to the receipt")
    if receipt_from_tree(tree) != r:
        raise ValueError("the signer changed the receipt it signed")
    return signed


def signed_receipt(r: Receipt, signer: ReceiptSigner) -> bytes:
    """``r`` signed by ``signer``: what ``sign_receipt(r, signer.sign_receipt)`` returns
    (the same bytes for a deterministic signature: RSA), without the round trip through
    bytes (build, write, parse, canonicalise, sign, write, then parse, schema-check and
    compare to be sure).

    The receipt is written once, directly in its exclusive-C14N form (the form lxml
    writes too, but for a carriage return, which C14N spells ``&#xD;`` and lxml
    ``&#13;``): that string is what the signature's digest covers, and with the XML
    declaration and the signature before its end tag it is the signed receipt.

    Unlike :func:`sign_receipt` with an arbitrary ``sign``, the result is not parsed back
    and checked: writer and signer are ours, a :class:`Receipt` was checked against
    everything the schema says when it was made, and the tests hold this writer to
    libxml2's C14N of :func:`build_receipt` (for any receipt, by property testing) and its
    output to signxml, xmlsec1 and :func:`vdx.client.checks.verify_receipt`.
    """
    body = _canonical_body(r)
    encoded = body.encode("utf-8")
    signature = signer.receipt_signature(encoded + _END_TAG)
    if "&#xD;" in body:  # a carriage return: a "&" of the text itself is "&amp;"
        encoded = body.replace("&#xD;", "&#13;").encode("utf-8")
    return _DECLARATION + encoded + signature + _END_TAG


# build_receipt's output begins with this, and a canonical receipt with _START_TAG.
_DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>\n"
_START_TAG = f'<Receipt xmlns="{RECEIPT_NS}">'
_END_TAG = b"</Receipt>"
_C14N_TEXT = re.compile("[&<>\r]")


def _canonical_body(r: Receipt) -> str:
    """The exclusive C14N of ``build_receipt(r)``'s root without its end tag."""
    parts = [_START_TAG]
    add = parts.append

    def text(name: str, value: str | None) -> None:
        if value is not None:
            if _C14N_TEXT.search(value):
                value = (value.replace("&", "&amp;").replace("<", "&lt;")
                         .replace(">", "&gt;").replace("\r", "&#xD;"))
            add(f"<{name}>{value}</{name}>")

    text("ReceiptId", r.receipt_id)
    text("HubId", r.hub_id)
    text("IssuedAt", format_utc(r.issued_at))
    text("Sender", r.sender)
    text("PackageSha256", r.package_sha256)
    facts = _KIND_ELEMENT[r.kind]
    add(f"<{facts}>")
    text("DocumentId", r.document_id)
    if r.rejection is not None:
        j = r.rejection
        text("Code", j.code)
        text("MessageVi", j.message_vi)
        text("MessageEn", j.message_en)
        text("Detail", j.detail)
        text("Line", None if j.line is None else str(j.line))
        text("Path", j.path)
    text("Recipient", r.recipient)
    text("DeliveryId", r.delivery_id)
    text("StatusCode", r.status_code)
    add(f"</{facts}>")
    return "".join(parts)


def format_utc(value: datetime) -> str:
    """``value`` as ISO 8601 in UTC with a ``Z``; microseconds only when there are some.

    The one spelling of a time in receipts and in the ledger (whose hashes cover it).
    """
    if value.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"


def parse_utc(text: str) -> datetime:
    """The aware UTC datetime of a :func:`format_utc` string (fractions of 1–6 digits)."""
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC timestamp: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def _sub(parent: etree._Element, name: str, text: str | None = "") -> etree._Element | None:
    if text is None:
        return None
    child = etree.SubElement(parent, _R + name)
    if text:
        child.text = text
    return child


# ======================================================================= reading ======

def parse_receipt(data: bytes, limits: ParseLimits = RECEIPT_LIMITS) -> Receipt:
    """The receipt in ``data``; raises :class:`EnvelopeError` (``envelope.bad_receipt``,
    or the hardened parser's code for bytes that are not safe XML). A signature, if any,
    is not verified here."""
    return receipt_from_tree(load_receipt_tree(data, limits))


def load_receipt_tree(data: bytes, limits: ParseLimits = RECEIPT_LIMITS) -> etree._ElementTree:
    """Hardened parse and schema check of a receipt (libxml2 on the hot path)."""
    tree = parse_untrusted(data, limits)
    root = tree.getroot()
    if root.tag != _R + "Receipt":
        raise EnvelopeError("envelope.bad_receipt",
                            f"the root element is {root.tag}, not {_R}Receipt",
                            line=root.sourceline, path=element_path(root))
    # A comment splits a text node: lxml's .text would stop at it while the schema and
    # the signature see the whole value. Receipts have no use for comments: refuse them.
    for node in root.iter(etree.Comment, etree.ProcessingInstruction):
        raise EnvelopeError("envelope.bad_receipt",
                            "comments and processing instructions are not allowed in a receipt",
                            line=node.sourceline, path=element_path(node.getparent()))
    if not schema.is_valid(tree, RECEIPT_XSD):
        first = schema.validate(tree, RECEIPT_XSD)[0]
        raise EnvelopeError("envelope.bad_receipt", first.message.replace(_R, ""),
                            line=first.line, path=first.path)
    return tree


def receipt_from_tree(tree: etree._ElementTree | etree._Element) -> Receipt:
    """The :class:`Receipt` of a schema-valid tree (e.g. the signed tree a verifier
    returned); the signature is ignored. Raises :class:`EnvelopeError` if the tree does not
    hold a valid receipt."""
    root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
    try:
        # One pass over each level (find() per field costs more than the whole pass).
        top = _texts(root)
        facts = next(c for c in root if c.tag in _ELEMENT_KIND)
        kind = _ELEMENT_KIND[facts.tag]
        inner = _texts(facts)
        rejection = None
        if kind == "rejected":
            line = inner.get(_T_LINE)
            rejection = Rejection(
                inner.get(_T_CODE), inner.get(_T_MESSAGE_VI), inner.get(_T_MESSAGE_EN),
                inner.get(_T_DETAIL), int(line) if line is not None else None,
                inner.get(_T_PATH),
            )
        return Receipt(
            kind=kind,
            hub_id=top.get(_T_HUB_ID),
            sender=top.get(_T_SENDER),
            package_sha256=top.get(_T_PACKAGE_SHA256),
            document_id=inner.get(_T_DOCUMENT_ID),
            recipient=inner.get(_T_RECIPIENT),
            delivery_id=inner.get(_T_DELIVERY_ID),
            status_code=inner.get(_T_STATUS_CODE),
            rejection=rejection,
            receipt_id=top.get(_T_RECEIPT_ID),
            issued_at=parse_utc(top.get(_T_ISSUED_AT) or ""),
        )
    except (StopIteration, ValueError, TypeError) as exc:
        raise EnvelopeError("envelope.bad_receipt", f"not a valid receipt: {exc}",
                            line=root.sourceline, path=element_path(root)) from exc


(_T_RECEIPT_ID, _T_HUB_ID, _T_ISSUED_AT, _T_SENDER, _T_PACKAGE_SHA256, _T_DOCUMENT_ID, _T_CODE,
 _T_MESSAGE_VI, _T_MESSAGE_EN, _T_DETAIL, _T_LINE, _T_PATH, _T_RECIPIENT, _T_DELIVERY_ID,
 _T_STATUS_CODE) = (_R + name for name in (
    "ReceiptId", "HubId", "IssuedAt", "Sender", "PackageSha256", "DocumentId", "Code",
    "MessageVi", "MessageEn", "Detail", "Line", "Path", "Recipient", "DeliveryId",
    "StatusCode"))


def _texts(parent: etree._Element) -> dict[object, str]:
    """The text of the first child of ``parent`` with each tag ("" for an empty one)."""
    found: dict[object, str] = {}
    for child in parent:
        tag = child.tag
        if tag not in found:
            found[tag] = child.text or ""
    return found


# ====================================================================== checking ======

def _check_match(name: str, value: object, pattern: re.Pattern[str], what: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value) or _NOT_XML.search(value):
        raise ValueError(f"{name} must be {what}, not {value!r}")


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip(_XML_WHITESPACE):
        raise ValueError(f"{name} must be a non-blank string, not {value!r}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} holds {len(value):,} characters; the limit is {MAX_TEXT:,}")
    if bad := _NOT_XML.search(value):
        raise ValueError(f"{name} holds {bad.group()!r}, which XML cannot carry")


def _printable(text: str | None) -> str | None:
    """``text`` made fit for a receipt (XML-safe, bounded), or None if nothing is left."""
    if text is None:
        return None
    text = _NOT_XML.sub("\ufffd", str(text))
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT - 1] + "…"
    return text if text.strip(_XML_WHITESPACE) else None
