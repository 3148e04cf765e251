"""What a node checks on what the hub hands it, without trusting the hub.

- :func:`verify_delivery`: the package's own signature, end to end. The signer
  certificate in ``KeyInfo`` must chain to the node's trust anchors (with a current CRL,
  by default) and carry the agency code of the sender the package names, and that sender
  must be the one the hub says it is (:func:`vdx.xmldsig.verify.verify_offline`). The package
  values are then read from the signed content only.
- :func:`verify_receipt`: a hub receipt, parsed (hardened, schema-checked) and, when the
  hub certificate is known, its signature verified against exactly that certificate
  (:meth:`vdx.xmldsig.verify.Verifier.verify_receipt`): ``KeyInfo`` is not believed.

Pure: bytes and certificates in, values or a :class:`~vdx.errors.VdxError` out.
"""

from __future__ import annotations

from cryptography import x509
from lxml import etree

from vdx.core import schema
from vdx.core.envelope import load_tree
from vdx.core.model import Package
from vdx.core.receipts import RECEIPT_XSD, Receipt, load_receipt_tree, receipt_from_tree
from vdx.errors import SignatureError
from vdx.hub.pipeline import read_package
from vdx.xmldsig.verify import Verified, Verifier, verify_offline


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
    anything but the algorithms of :data:`vdx.xmldsig.verify.RECEIPT_POLICY`, or the
    certificate is not valid now: ``signature.invalid``), does not cover the whole
    receipt (``signature.misplaced``) or whose digest is not the receipt's
    (``signature.digest_mismatch``): :meth:`vdx.xmldsig.verify.Verifier.verify_receipt`.
    ``KeyInfo`` is not believed. The result is read from the signed content only.
    """
    if hub_certificate is None:
        return receipt_from_tree(load_receipt_tree(body))
    return receipt_from_tree(Verifier.verify_receipt(body, hub_certificate))
