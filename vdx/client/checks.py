"""What a node checks on what the hub hands it, without trusting the hub.

- :func:`verify_delivery`: the package's own signature, end to end. The signer
  certificate in ``KeyInfo`` must chain to the node's trust anchors (with a current CRL,
  by default) and carry the agency code of the sender the package names, and that sender
  must be the one the hub says it is (:func:`vdx.xmldsig.verify.verify_offline`). The package
  values are then read from the signed content only.
- :func:`verify_receipt`: a hub receipt, parsed (hardened, schema-checked) and, when the
  hub certificate is known, its enveloped signature verified against exactly that
  certificate: ``KeyInfo`` is not believed.

Pure: bytes and certificates in, values or a :class:`~vdx.errors.VdxError` out.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from lxml import etree

from vdx.core import schema
from vdx.core.envelope import load_tree
from vdx.core.model import Package
from vdx.core.receipts import RECEIPT_XSD, Receipt, load_receipt_tree, receipt_from_tree
from vdx.core.schema import DS_NS
from vdx.errors import SignatureError
from vdx.hub.pipeline import read_package
from vdx.xmldsig.sign import DS_SIGNATURE
from vdx.xmldsig.verify import (
    C14N_ALGORITHMS,
    SIGNATURE_ALGORITHMS,
    Verified,
    Verifier,
    check_enveloped_signature,
    verify_offline,
)


def compile_schemas() -> None:
    """Compile the XSDs this module validates against, now, on the calling thread.

    libxml2 initialises its built-in schema types on the first compilation, and two
    threads compiling their first schemas at once can fail ("the given type 'anyURI' is
    not a built-in type") or corrupt memory. A client whose I/O thread checks receipts
    while its caller checks packages calls this before starting that thread.
    """
    empty = etree.ElementTree(etree.Element("none"))
    for name in ("edxml.xsd", RECEIPT_XSD):
        schema.is_valid(empty, name)  # compiled and cached by vdx.core.schema


def verify_delivery(body: bytes, sender: str, verifier: Verifier, *,
                    attachment_data: bool = True) -> tuple[Package, Verified]:
    """The package in ``body`` and its verified signature, if ``sender`` signed it.

    Attachments are decoded from the signed tree, the one parse of ``body`` (with
    ``attachment_data=False`` they are listed with empty ``data``). Raises
    :class:`~vdx.errors.EnvelopeError` for bytes that are not a valid package and
    :class:`~vdx.errors.SignatureError` for a signature that does not hold (including
    ``signature.wrong_signer`` when the package names another sender than ``sender``).
    """
    tree = load_tree(body)
    verified = verify_offline(tree, verifier, consume=True)  # the tree is ours alone
    if verified.sender_code != sender:
        raise SignatureError("signature.wrong_signer",
                             f"the hub delivered it as sent by {sender}, but the package "
                             f"is signed as from {verified.sender_code}")
    return read_package(verified.signed_tree, attachment_data=attachment_data), verified


def verify_receipt(body: bytes, hub_certificate: x509.Certificate | None) -> Receipt:
    """The receipt in ``body``; with ``hub_certificate``, only if the hub signed it.

    Raises :class:`~vdx.errors.EnvelopeError` (``envelope.bad_receipt`` …) for something
    that is not a receipt and :class:`~vdx.errors.SignatureError` for a signature that is
    missing (``signature.missing``), does not verify with ``hub_certificate`` (or uses
    anything but the algorithms below, or the certificate is not valid now:
    ``signature.invalid``), does not cover the whole receipt (``signature.misplaced``) or
    whose digest is not the receipt's (``signature.digest_mismatch``).

    The signature is the last child of the root (the schema allows it nowhere else),
    with one ``Reference URI=""``, the enveloped transform then exclusive or inclusive
    C14N 1.0, RSA or ECDSA with SHA-256/384/512 (never SHA-1 or HMAC) and a SHA-256/384/512
    digest. It is checked with exactly ``hub_certificate``'s key:
    :func:`vdx.xmldsig.verify.check_enveloped_signature`, as for packages (``cryptography`` and
    libxml2's C14N, no signxml); ``KeyInfo`` certificates are ignored, a ``KeyValue``
    there must be that key. The result is read from the signed content only.
    """
    tree = load_receipt_tree(body)
    if hub_certificate is None:
        return receipt_from_tree(tree)
    root = tree.getroot()
    signature = root.find(DS_SIGNATURE)
    if signature is None:
        raise SignatureError("signature.missing", "the receipt is not signed")
    if signature is not root[-1]:  # a comment or PI after it: the hub never writes one
        raise SignatureError("signature.misplaced", "ds:Signature is not the last child "
                             "of the receipt")
    try:
        signed = _check_receipt_signature(tree, signature, hub_certificate)
    except SignatureError as exc:
        # This function's codes are fewer than a package's: the rest is "invalid", and so
        # is a signed SignedInfo without exactly one Reference with a URI ("misplaced"
        # is for one that covers only a part of the receipt), as signxml had it.
        if exc.code in _RECEIPT_CODES and not (exc.code == "signature.misplaced"
                                               and not _one_reference_with_uri(signature)):
            raise
        raise SignatureError("signature.invalid", f"receipt: {exc.message}") from exc
    return receipt_from_tree(signed)


# What a receipt's signature may use: what the hub signs with (RSA- or ECDSA-SHA256,
# SHA-256, exclusive C14N) and the stronger hashes and inclusive C14N 1.0 a standard
# signer (signxml, xmlsec1) may choose. Not SHA-1, HMAC, RSA-PSS, SHA-224, SHA-3 nor
# C14N 1.1 or the WithComments forms, which signxml would have taken.
RECEIPT_SIGNATURE_ALGORITHMS = frozenset({"rsa-sha256", "rsa-sha384", "rsa-sha512",
                                          "ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512"})
RECEIPT_DIGEST_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})
RECEIPT_C14N_ALGORITHMS = frozenset({"exc-c14n", "c14n"})
_C14N_NAMES = {method.value: name for name, method in C14N_ALGORITHMS.items()
               if name in RECEIPT_C14N_ALGORITHMS}
_SIGNATURE_NAMES = {method.value: name for name, method in SIGNATURE_ALGORITHMS.items()
                    if name in RECEIPT_SIGNATURE_ALGORITHMS}
_RECEIPT_CODES = frozenset({"signature.missing", "signature.invalid",
                            "signature.digest_mismatch", "signature.misplaced"})
_DS = f"{{{DS_NS}}}"
_SIGNED_INFO, _C14N_METHOD, _SIGNATURE_METHOD, _SIGNATURE_VALUE, _REFERENCE = (
    f"{_DS}{name}" for name in ("SignedInfo", "CanonicalizationMethod", "SignatureMethod",
                                "SignatureValue", "Reference"))


def _last_child(root: etree._Element) -> etree._Element:
    return root[-1]


def _check_receipt_signature(tree: etree._ElementTree, signature: etree._Element,
                             certificate: x509.Certificate) -> etree._ElementTree:
    """The signed content of a schema-valid receipt (the tree itself, its signature
    taken out) if ``signature``, its last child, verifies with ``certificate``."""
    # What must hold before the SignatureValue is checked: before, every refusal is
    # "invalid" (as signxml's were), since an attacker without the key could only have
    # edited what the signature covers.
    signed_info = _only(signature, _SIGNED_INFO)
    c14n = _only(signed_info, _C14N_METHOD).get("Algorithm") or ""
    if c14n not in _C14N_NAMES:
        raise SignatureError("signature.invalid", f"canonicalization {c14n!r} is not allowed")
    method = _only(signed_info, _SIGNATURE_METHOD).get("Algorithm") or ""
    algorithm = _SIGNATURE_NAMES.get(method)
    if algorithm is None:
        raise SignatureError("signature.invalid", f"signature method {method!r} is not allowed")
    _only(signature, _SIGNATURE_VALUE)
    now = datetime.now(UTC)  # signxml refused a hub certificate outside its validity too
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SignatureError("signature.invalid", f"the hub certificate is valid only from "
                             f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                             f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    signed, _reference = check_enveloped_signature(
        tree, signature, _last_child, certificate.public_key(), algorithm,
        c14n_algorithms=RECEIPT_C14N_ALGORITHMS, digest_algorithms=RECEIPT_DIGEST_ALGORITHMS,
        consume=True)  # the tree is ours alone
    return signed


def _one_reference_with_uri(signature: etree._Element) -> bool:
    # Only asked once the SignatureValue verified: this SignedInfo is the signed one (a
    # receipt has no comments that could make it read differently).
    references = _only(signature, _SIGNED_INFO).findall(_REFERENCE)
    return len(references) == 1 and references[0].get("URI") is not None


def _only(parent: etree._Element, tag: str) -> etree._Element:
    found = [child for child in parent if child.tag == tag]
    if len(found) != 1:
        raise SignatureError("signature.invalid", f"the signature must hold exactly one "
                             f"{etree.QName(tag).localname}; found {len(found)}")
    return found[0]
