"""What a node checks on what the hub hands it, without trusting the hub.

- :func:`verify_delivery`: the package's own signature, end to end. The signer
  certificate in ``KeyInfo`` must chain to the node's trust anchors (with a current CRL,
  by default) and carry the agency code of the sender the package names, and that sender
  must be the one the hub says it is (:func:`vdx.verify.verify_offline`). The package
  values are then read from the signed content only.
- :func:`verify_receipt`: a hub receipt, parsed (hardened, schema-checked) and, when the
  hub certificate is known, its enveloped signature verified against exactly that
  certificate: ``KeyInfo`` is not believed.

Pure: bytes and certificates in, values or a :class:`~vdx.errors.VdxError` out.
"""

from __future__ import annotations

from cryptography import x509
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier
from signxml.exceptions import InvalidDigest, SignXMLException

from . import schema
from .envelope import load_tree
from .errors import SignatureError
from .model import Package
from .pipeline import read_package
from .receipts import RECEIPT_NS, RECEIPT_XSD, Receipt, load_receipt_tree, receipt_from_tree
from .signing import xml_parser
from .verify import Verified, Verifier, verify_offline


def compile_schemas() -> None:
    """Compile the XSDs this module validates against, now, on the calling thread.

    libxml2 initialises its built-in schema types on the first compilation, and two
    threads compiling their first schemas at once can fail ("the given type 'anyURI' is
    not a built-in type") or corrupt memory. A client whose I/O thread checks receipts
    while its caller checks packages calls this before starting that thread.
    """
    empty = etree.ElementTree(etree.Element("none"))
    for name in ("edxml.xsd", RECEIPT_XSD):
        schema.is_valid(empty, name)  # compiled and cached by vdx.schema


def verify_delivery(body: bytes, sender: str, verifier: Verifier) -> tuple[Package, Verified]:
    """The package in ``body`` and its verified signature, if ``sender`` signed it.

    Raises :class:`~vdx.errors.EnvelopeError` for bytes that are not a valid package and
    :class:`~vdx.errors.SignatureError` for a signature that does not hold (including
    ``signature.wrong_signer`` when the package names another sender than ``sender``).
    """
    tree = load_tree(body)
    verified = verify_offline(tree, verifier, consume=True)  # the tree is ours alone
    if verified.sender_code != sender:
        raise SignatureError("signature.wrong_signer",
                             f"the hub delivered it as sent by {sender}, but the package "
                             f"is signed as from {verified.sender_code}")
    return read_package(verified.signed_tree), verified


def verify_receipt(body: bytes, hub_certificate: x509.Certificate | None) -> Receipt:
    """The receipt in ``body``; with ``hub_certificate``, only if the hub signed it.

    Raises :class:`~vdx.errors.EnvelopeError` (``envelope.bad_receipt`` …) for something
    that is not a receipt and :class:`~vdx.errors.SignatureError` for a signature that is
    missing or does not verify with ``hub_certificate``.
    """
    tree = load_receipt_tree(body)
    if hub_certificate is None:
        return receipt_from_tree(tree)
    if tree.getroot().find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None:
        raise SignatureError("signature.missing", "the receipt is not signed")
    config = SignatureConfiguration(expect_references=1, location="./")
    try:
        # No validate_schema: receipt.xsd (checked above) imports the XML-DSig schema, and
        # signxml's own cached schema would be compiled on whatever thread comes first.
        result = XMLVerifier().verify(tree.getroot(), x509_cert=hub_certificate,
                                      expect_config=config, parser=xml_parser(),
                                      validate_schema=False)
    except InvalidDigest as exc:
        raise SignatureError("signature.digest_mismatch", f"receipt: {exc}") from exc
    except (SignXMLException, etree.LxmlError, ValueError, TypeError) as exc:
        raise SignatureError("signature.invalid",
                             f"the receipt's signature does not verify with the hub "
                             f"certificate: {exc}") from exc
    signed = result.signed_xml  # type: ignore[union-attr]
    # Only a signature over the whole receipt counts: a reference to a part of it
    # would leave the rest unsigned.
    if signed is None or signed.tag != f"{{{RECEIPT_NS}}}Receipt":
        raise SignatureError("signature.misplaced", "the hub's signature does not cover "
                             "the whole receipt")
    return receipt_from_tree(signed)
