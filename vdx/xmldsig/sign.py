"""Sign edXML packages: one enveloped XML-DSig signature where EDXML.md places it.

The signature goes inside ``edXMLHeader`` right after ``TraceHeaderList`` (or after
``MessageHeader`` when there is none), references the whole document (``URI=""``) with
the enveloped and exclusive-C14N transforms, uses RSA-SHA256 or ECDSA-SHA256 with a
SHA-256 digest, and carries the signer certificate (and any chain given) in
``KeyInfo/X509Data``. The result is schema-valid (``schemas/edxml.xsd``) and verifies
with :mod:`vdx.xmldsig.verify` and with ``xmlsec1``.

A :class:`Signer` holds its key and certificate: loading a PEM key costs tens of
milliseconds, so build one signer per key and call :meth:`Signer.sign` for every package.

Legacy software (the official EdXML102 library among it) writes a placeholder where the
signature goes: a ``Signature`` in the edXML namespace with dummy XML-DSig parts, which
the hub refuses (``signature.placeholder``). :meth:`Signer.sign` removes exactly that
element and signs in its place, so a gateway or folder bridge holding the agency's key
can sign for software that cannot.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)

from vdx.core.envelope import check_root
from vdx.core.quirks import placeholder_signatures
from vdx.core.schema import DS_NS
from vdx.core.xmlsafe import DEFAULT_LIMITS, EDXML_NS, ParseLimits, parse_untrusted
from vdx.errors import EnvelopeError, SignatureError
from vdx.xmldsig.pki import PrivateKey, load_private_key

_E = f"{{{EDXML_NS}}}"
DS_SIGNATURE = f"{{{DS_NS}}}Signature"


def _remove(placeholder: etree._Element) -> None:
    """Take ``placeholder`` out of its parent with the whitespace that indented it."""
    previous = placeholder.getprevious()
    # The placeholder's tail is the whitespace before what follows it (or before the
    # header's end tag): it replaces the indentation that led to the placeholder.
    parent = placeholder.getparent()
    if previous is not None:
        previous.tail = placeholder.tail
    else:
        parent.text = placeholder.tail
    parent.remove(placeholder)


def xml_parser() -> etree.XMLParser:
    """The parser signxml must use on trees we already checked with :mod:`vdx.core.xmlsafe`.

    signxml re-parses its own serialisation of the tree; its default parser lacks
    ``huge_tree``, so a package with a large attachment would fail there.
    """
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=True, collect_ids=False)


class _Signer(XMLSigner):
    def __init__(self, signature_algorithm: SignatureMethod) -> None:
        super().__init__(
            method=SignatureConstructionMethod.enveloped,
            signature_algorithm=signature_algorithm,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        # XMLSigner has no public parser argument (XMLVerifier.verify has one).
        self._parser = xml_parser()

    def get_root(self, data):  # noqa: ANN001, ANN201 - signxml's signature
        # signxml copies the document twice (one copy to sign into, one to digest) by
        # serialising and re-parsing it. For a whole document, which is all we pass, a
        # deep copy is the same tree at a fraction of the cost; signxml's caveat about
        # deep copies is for subelements, which would lose inherited namespace
        # declarations. tests/xmldsig/test_signing.py.py checks both copies canonicalise alike.
        if isinstance(data, etree._Element) and data.getparent() is None:
            return copy.deepcopy(data)
        return super().get_root(data)


class Signer:
    """Signs packages with one key and certificate, loaded once.

    ``sign`` is safe to call from several threads: every call builds its own signxml
    signer (microseconds) around the shared, immutable key.
    """

    def __init__(self, key: PrivateKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = ()) -> None:
        if _public_der(key.public_key()) != _public_der(certificate.public_key()):
            raise ValueError("the private key does not belong to the certificate")
        if isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = SignatureMethod.RSA_SHA256
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            self.algorithm = SignatureMethod.ECDSA_SHA256
        else:  # pragma: no cover - PrivateKey excludes it; a caller may not
            raise ValueError(f"unsupported key type {type(key).__name__}")
        self.key = key
        self.certificate = certificate
        self._certs = [certificate, *chain]
        self._certs_der = tuple(c.public_bytes(Encoding.DER) for c in self._certs)

    @classmethod
    def from_files(cls, key_path: str | Path, cert_path: str | Path) -> Signer:
        """A signer for a PEM key and a PEM certificate (further certificates in the file
        are taken as its chain, signer first)."""
        certs = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
        return cls(load_private_key(key_path), certs[0], certs[1:])

    def sign(self, data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> bytes:
        """Return ``data`` signed, as UTF-8 bytes with an XML declaration.

        ``data`` must be a schema-valid, unsigned package (``vdx.build`` makes one;
        ``vdx.check`` says why one is not, and ``vdx envelope sign`` runs it first).
        ``sign`` itself parses with :func:`vdx.core.xmlsafe.parse_untrusted` and checks the
        root and the header, not the whole schema: validating a 1 MiB attachment costs
        more than signing it. A placeholder signature (see the module docstring) is
        replaced by the signature. Raises :class:`~vdx.errors.EnvelopeError` for bytes
        that are not an edXML package and ``signature.multiple`` for a signed one.
        """
        tree = parse_untrusted(data, limits)
        check_root(tree.getroot())
        root = tree.getroot()
        if next(root.iter(DS_SIGNATURE), None) is not None:
            raise SignatureError("signature.multiple", "the package is already signed")
        placeholders = placeholder_signatures(root)
        if len(placeholders) > 1:
            raise SignatureError("signature.multiple",
                                 f"the package carries {len(placeholders)} placeholder "
                                 f"signatures; at most one can be replaced")
        if placeholders:
            _remove(placeholders[0])
        header = root.find(f"{_E}edXMLEnvelope/{_E}edXMLHeader")
        anchor = None if header is None else header.find(f"{_E}TraceHeaderList")
        if anchor is None and header is not None:
            anchor = header.find(f"{_E}MessageHeader")
        if anchor is None:
            raise EnvelopeError("envelope.schema", "edXMLEnvelope/edXMLHeader/MessageHeader "
                                "is missing: there is no place for the signature")
        # signxml puts the signature where it finds this placeholder and leaves the
        # placeholder out of the digest, exactly as the enveloped transform will.
        placeholder = etree.Element(DS_SIGNATURE, {"Id": "placeholder"}, nsmap={"ds": DS_NS})
        anchor.addnext(placeholder)
        if (header.text or "x").isspace():  # keep a pretty-printed header pretty
            placeholder.tail, anchor.tail = anchor.tail, header.text
        signed = _Signer(self.algorithm).sign(root, key=self.key, cert=self._certs)
        return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")

    def sign_receipt(self, data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> bytes:
        """Sign a hub receipt (:mod:`vdx.core.receipts`): the enveloped signature, with the
        same algorithms as packages, becomes the last child of the root, where
        ``schemas/receipt.xsd`` expects it. Raises ``signature.multiple`` for a signed one.

        The hub signs two or three receipts per document, so this path skips signxml's
        pure-Python machinery: libxml2 canonicalises (exclusive C14N), ``cryptography``
        signs, and the ``ds:Signature`` comes from :meth:`receipt_signature`. The hub
        itself does not even parse: :func:`vdx.core.receipts.signed_receipt` writes the
        canonical receipt and calls :meth:`receipt_signature` directly. The result is
        checked by the tests with signxml and with xmlsec1.
        """
        root = parse_untrusted(data, limits).getroot()
        if next(root.iter(DS_SIGNATURE), None) is not None:
            raise SignatureError("signature.multiple", "the receipt is already signed")
        # URI="" leaves comments out of the digest (XML-DSig 4.4.3.3); receipts have none.
        canonical = etree.tostring(root, method="c14n", exclusive=True, with_comments=False)
        root.append(etree.fromstring(self.receipt_signature(canonical), _TEMPLATE_PARSER))
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def receipt_signature(self, canonical: bytes) -> bytes:
        """The ``ds:Signature`` element (UTF-8, declaring its ``ds`` prefix) that signs,
        enveloped, the whole document whose exclusive C14N (without comments) is
        ``canonical``, to be written as the last child of its root.

        Only the two values change from one document to the next: the rest (algorithms,
        ``KeyInfo`` with the certificates) is written once per signer, by lxml, and the
        canonical ``SignedInfo`` is its template with the digest filled in. Exclusive C14N
        makes that exact: ``SignedInfo`` uses only the ``ds`` prefix and inherits nothing
        from where it lives (no ``xml:*`` attributes are imported), so its canonical form
        is the same in every document. Safe to call from several threads.
        """
        digest = base64.b64encode(hashlib.sha256(canonical).digest())
        template = self._template
        signed_info = template.signed_info[0] + digest + template.signed_info[1]
        value = base64.b64encode(self._sign_signed_info(signed_info))
        head, middle, tail = template.signature
        return head + digest + middle + value + tail

    @cached_property
    def _template(self) -> _SignatureTemplate:
        # Built on first use (a package signer never needs it); a race between threads
        # builds it twice, identically.
        kind = "rsa" if self.algorithm is SignatureMethod.RSA_SHA256 else "ecdsa"
        return _SignatureTemplate.build(_ALGORITHM_URIS[kind], self._certs_der)

    def _sign_signed_info(self, signed_info: bytes) -> bytes:
        key = self.key
        if self.algorithm is SignatureMethod.ECDSA_SHA256:
            r, s_ = decode_dss_signature(key.sign(signed_info, _ECDSA_SHA256))
            size = (key.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s_.to_bytes(size, "big")  # XML-DSig: r || s
        return key.sign(signed_info, _PKCS1V15, _SHA256_HASH)


_ALGORITHM_URIS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ecdsa": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
# Stateless, so shared by every call and thread.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PKCS1V15 = padding.PKCS1v15()
_SHA256_HASH = hashes.SHA256()
# For our own template bytes only (never for input).
_TEMPLATE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                   remove_blank_text=False, collect_ids=False)


class _SignatureTemplate:
    """A signer's ``ds:Signature`` with the digest and the signature value left out: the
    canonical ``SignedInfo`` as two halves around the digest, and the element as lxml
    writes it (last child of a root) in three parts around the digest and the value."""

    _DIGEST = "{DigestValue}"  # braces: never in base64, never escaped in XML
    _VALUE = "{SignatureValue}"

    def __init__(self, signed_info: tuple[bytes, bytes],
                 signature: tuple[bytes, bytes, bytes]) -> None:
        self.signed_info = signed_info
        self.signature = signature

    @classmethod
    def build(cls, algorithm_uri: str, certs_der: Sequence[bytes]) -> _SignatureTemplate:
        def ds(parent: etree._Element, name: str, **attrs: str) -> etree._Element:
            return etree.SubElement(parent, f"{{{DS_NS}}}{name}", attrs)

        # Any root will do: exclusive C14N of SignedInfo, and the way lxml writes an
        # element that declares its own prefix, do not depend on it. The tests compare
        # the result with signxml, xmlsec1 and the element-by-element construction.
        root = etree.Element("{urn:vdx:template}Root", nsmap={None: "urn:vdx:template"})
        signature = etree.SubElement(root, DS_SIGNATURE, nsmap={"ds": DS_NS})
        info = ds(signature, "SignedInfo")
        ds(info, "CanonicalizationMethod", Algorithm=_EXC_C14N)
        ds(info, "SignatureMethod", Algorithm=algorithm_uri)
        reference = ds(info, "Reference", URI="")
        transforms = ds(reference, "Transforms")
        ds(transforms, "Transform", Algorithm=_ENVELOPED)
        ds(transforms, "Transform", Algorithm=_EXC_C14N)
        ds(reference, "DigestMethod", Algorithm=_SHA256)
        ds(reference, "DigestValue").text = cls._DIGEST
        ds(signature, "SignatureValue").text = cls._VALUE
        data = ds(ds(signature, "KeyInfo"), "X509Data")
        for der in certs_der:
            ds(data, "X509Certificate").text = base64.b64encode(der).decode("ascii")

        digest, value = cls._DIGEST.encode(), cls._VALUE.encode()
        canonical = etree.tostring(info, method="c14n", exclusive=True, with_comments=False)
        written = etree.tostring(root, encoding="UTF-8")
        start, end = written.index(b"<ds:Signature"), b"</Root>"
        if not written.endswith(end) or canonical.count(digest) != 1 \
                or written.count(digest) != 1 or written.count(value) != 1:
            raise AssertionError("unexpected ds:Signature template")  # pragma: no cover
        element = written[start:-len(end)]
        head, rest = element.split(digest)
        middle, tail = rest.split(value)
        return cls(tuple(canonical.split(digest)), (head, middle, tail))


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
