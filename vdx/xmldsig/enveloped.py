"""The enveloped XML-DSig signature over a whole document, checked with a known key.

This module knows XML-DSig, not edXML: which certificate is the signer's, which
algorithms a document may use and where its ``ds:Signature`` must sit are the caller's
policy (:class:`vdx.xmldsig.verify.Verifier`, for packages and for hub receipts).

:func:`check_enveloped_signature` supports one shape, the one edXML packages and hub
receipts use: one ``Reference URI=""`` (the whole document), the enveloped-signature
transform, then at most one exclusive or inclusive C14N without comments. It checks the
``SignatureValue`` over the canonical ``SignedInfo`` with the caller's key
(``cryptography``: RSA PKCS#1 v1.5, or ECDSA whose XML-DSig value is ``r || s``), then
reads the ``Reference`` from that signed ``SignedInfo`` only, then compares its
``DigestValue`` with the digest of the document without its ``ds:Signature``.

The digest is computed on the tree itself, with its signature detached
(:mod:`vdx.xmldsig.digest`: attachments are hashed in chunks, read where the tree keeps
them): beyond the tree there is one chunk of an attachment's text at a time, plus the
copy of the tree that is the result unless the caller hands its tree over
(``consume=True``). The result holds only
what was signed: the document without its ``ds:Signature``, its comments and the nodes
outside its root element (the node-set the digest covered).

signxml is the reference this engine is held to: ``tests/xmldsig/test_verify_differential.py.py``
and ``tests/xmldsig/test_receipt_verify_fast.py.py`` require the same verdicts and the same signed
content. Pure: trees, keys and bytes in, a tree or a
:class:`~vdx.errors.SignatureError` out.
"""

from __future__ import annotations

import binascii
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from vdx.core.schema import DS_NS
from vdx.errors import SignatureError
from vdx.xmldsig.digest import signed_content
from vdx.xmldsig.sign import xml_parser

__all__ = [
    "C14N_ALGORITHMS", "C14N_NAMES", "DIGEST_ALGORITHMS", "DIGEST_NAMES", "ENVELOPED",
    "SIGNATURE_ALGORITHMS", "SIGNATURE_NAMES", "SignedReference", "c14n_name",
    "check_enveloped_signature", "children", "lenient_base64", "one", "reference_c14n",
]

_DS = f"{{{DS_NS}}}"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
# The XML-DSig elements a policy reads too (Clark names).
(SIGNED_INFO, C14N_METHOD, SIGNATURE_METHOD, REFERENCE, TRANSFORMS, TRANSFORM,
 DIGEST_METHOD, DIGEST_VALUE, SIGNATURE_VALUE, KEY_INFO, X509_DATA,
 X509_CERTIFICATE) = (f"{_DS}{name}" for name in (
    "SignedInfo", "CanonicalizationMethod", "SignatureMethod", "Reference", "Transforms",
    "Transform", "DigestMethod", "DigestValue", "SignatureValue", "KeyInfo", "X509Data",
    "X509Certificate"))

# Short names (used in policies, logs and the CLI) of the algorithms this module knows.
SIGNATURE_ALGORITHMS: dict[str, SignatureMethod] = {
    "rsa-sha256": SignatureMethod.RSA_SHA256, "rsa-sha384": SignatureMethod.RSA_SHA384,
    "rsa-sha512": SignatureMethod.RSA_SHA512, "ecdsa-sha256": SignatureMethod.ECDSA_SHA256,
    "ecdsa-sha384": SignatureMethod.ECDSA_SHA384, "ecdsa-sha512": SignatureMethod.ECDSA_SHA512,
    "rsa-sha1": SignatureMethod.RSA_SHA1, "ecdsa-sha1": SignatureMethod.ECDSA_SHA1,
}
DIGEST_ALGORITHMS: dict[str, DigestAlgorithm] = {
    "sha256": DigestAlgorithm.SHA256, "sha384": DigestAlgorithm.SHA384,
    "sha512": DigestAlgorithm.SHA512, "sha1": DigestAlgorithm.SHA1,
}
# Only the comment-free forms exist here: a WithComments variant would let comments
# (which we strip from what later steps read) carry signed meaning.
C14N_ALGORITHMS: dict[str, CanonicalizationMethod] = {
    "c14n": CanonicalizationMethod.CANONICAL_XML_1_0,
    "exc-c14n": CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    "c14n11": CanonicalizationMethod.CANONICAL_XML_1_1,
}
# Algorithm URI -> short name ("" for any URI not above)
SIGNATURE_NAMES = {m.value: n for n, m in SIGNATURE_ALGORITHMS.items()}
DIGEST_NAMES = {m.value: n for n, m in DIGEST_ALGORITHMS.items()}
C14N_NAMES = {m.value: n for n, m in C14N_ALGORITHMS.items()}
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_INCLUSIVE_NAMESPACES = f"{{{_EXC_C14N}}}InclusiveNamespaces"
_DSIG11 = "{http://www.w3.org/2009/xmldsig11#}"
_KEY_VALUE, _RSA_KEY_VALUE, _MODULUS, _EXPONENT = (
    f"{_DS}{name}" for name in ("KeyValue", "RSAKeyValue", "Modulus", "Exponent"))
_EC_KEY_VALUE, _NAMED_CURVE, _EC_PUBLIC_KEY, _DER_KEY_VALUE = (
    f"{_DSIG11}{name}" for name in ("ECKeyValue", "NamedCurve", "PublicKey",
                                     "DEREncodedKeyValue"))
_NAMED_CURVES = {  # dsig11:NamedCurve URIs, by cryptography's curve name
    "urn:oid:1.2.840.10045.3.1.7": "secp256r1", "urn:oid:1.3.132.0.34": "secp384r1",
    "urn:oid:1.3.132.0.35": "secp521r1", "urn:oid:1.2.840.10045.3.1.1": "secp192r1",
    "urn:oid:1.3.132.0.33": "secp224r1",
}
_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "rsa-sha256": hashes.SHA256, "rsa-sha384": hashes.SHA384, "rsa-sha512": hashes.SHA512,
    "ecdsa-sha256": hashes.SHA256, "ecdsa-sha384": hashes.SHA384,
    "ecdsa-sha512": hashes.SHA512, "rsa-sha1": hashes.SHA1, "ecdsa-sha1": hashes.SHA1,
}
_XML_WHITESPACE = " \t\r\n"


# ------------------------------------------------------------------ the check --

@dataclass(frozen=True)
class SignedReference:
    """The one ``Reference`` of a ``SignedInfo`` whose signature value verified."""

    c14n_algorithm: str   # of the Reference's transforms ("c14n" when none is listed)
    digest_algorithm: str
    digest: bytes = field(repr=False)
    exclusive: bool
    prefixes: list[str] | None


def check_enveloped_signature(
        tree: etree._ElementTree, signature: etree._Element,
        locate: Callable[[etree._Element], etree._Element], key: object,
        signature_algorithm: str, *, c14n_algorithms: Collection[str],
        digest_algorithms: Collection[str] | None, consume: bool,
        expect: tuple[str, str] | None = None,
) -> tuple[etree._ElementTree, SignedReference]:
    """Check the enveloped signature ``signature`` of ``tree`` with ``key``; return the
    signed content (see :func:`vdx.xmldsig.digest.signed_content`) and the signed
    ``Reference``.

    The caller has read and allowed what checking the value needs: ``signature`` holds
    one ``SignedInfo`` with one ``CanonicalizationMethod`` and one ``SignatureMethod``
    (``signature_algorithm`` is its short name), and one ``SignatureValue``.
    ``locate(root)`` finds the signature again under a root (in a copy of the tree,
    unless ``consume``). ``key`` is the public key the caller expects, the only one
    used: ``KeyInfo`` is never believed.

    In order, each refusal a :class:`~vdx.errors.SignatureError`:

    1. the ``SignatureValue`` over the canonical ``SignedInfo`` (``signature.invalid``);
    2. each ``KeyValue`` or ``DEREncodedKeyValue`` in ``KeyInfo`` must be ``key``
       (``signature.invalid``);
    3. the signed ``SignedInfo`` (what its canonical form says) must hold exactly one
       ``Reference`` with a ``URI`` (``signature.invalid``), to the whole document:
       ``URI=""`` (``signature.misplaced``), with the enveloped transform then at most
       one C14N of ``c14n_algorithms`` (``signature.bad_transform``) and a digest method
       of ``digest_algorithms`` (``signature.weak_algorithm``; ``None``: any this module
       knows, the caller checked); if given, ``expect`` is its ``(c14n, digest)`` names
       (``signature.invalid``);
    4. the digest of the document without its ``ds:Signature`` against the signed
       ``DigestValue``, in constant time (``signature.digest_mismatch``).

    C14N or parsing failures are ``signature.invalid``. With ``consume=False`` the
    caller's tree is never changed; with ``consume=True`` it becomes the result if the
    signature holds and is put back as it was if it does not.
    """
    try:
        canonical_info = _verify_signature_value(signature, key, signature_algorithm)
        _check_key_values(signature, key)
        reference = _read_signed_reference(canonical_info, children(signature)[SIGNED_INFO][0],
                                           c14n_algorithms, digest_algorithms)
        if expect is not None and (reference.c14n_algorithm,
                                   reference.digest_algorithm) != expect:  # pragma: no cover
            raise SignatureError("signature.invalid", "SignedInfo names other algorithms "
                                                      "once canonicalised")
        signed = signed_content(tree, locate, reference.digest_algorithm, reference.digest,
                                 reference.exclusive, reference.prefixes, consume)
    except (etree.LxmlError, ValueError, TypeError) as exc:  # C14N or parsing failed
        raise SignatureError("signature.invalid", str(exc) or type(exc).__name__) from exc
    return signed, reference


# ------------------------------------------------- reading what a policy allows --

def c14n_name(element: etree._Element, allowed: Collection[str],
              refuse: Callable[[str, str], SignatureError]) -> str:
    """The short name of the C14N ``element`` (a ``CanonicalizationMethod`` or
    ``Transform``) names, if ``allowed``; else ``refuse("signature.bad_transform", …)``."""
    name = C14N_NAMES.get(element.get("Algorithm") or "", "")
    if name not in allowed:
        raise refuse("signature.bad_transform",
                     f"canonicalization {element.get('Algorithm')!r} is not allowed")
    return name


def reference_c14n(reference_parts: dict[str, list[etree._Element]], allowed: Collection[str],
                   refuse: Callable[[str, str], SignatureError]) -> str:
    """The C14N of a ``Reference`` (its :func:`children`): its transforms must be the
    enveloped-signature transform, then at most one ``allowed`` C14N
    (``refuse("signature.bad_transform", …)``); ``"c14n"`` when none is listed."""
    transforms = reference_parts.get(TRANSFORMS, [])
    elements = [t for t in transforms[0] if isinstance(t.tag, str)] if transforms else []
    algorithms = [t.get("Algorithm") for t in elements]
    if (len(transforms) != 1 or any(t.tag != TRANSFORM for t in elements)
            or not algorithms or algorithms[0] != ENVELOPED or len(algorithms) > 2):
        raise refuse("signature.bad_transform",
                     f"the transforms must be enveloped-signature, then at most one "
                     f"canonicalization; found {algorithms}")
    # XML-DSig's node-set-to-octets default when no C14N transform is listed.
    return c14n_name(elements[1], allowed, refuse) if len(elements) == 2 else "c14n"



def children(parent: etree._Element) -> dict[str, list[etree._Element]]:
    """The child elements of ``parent`` by tag, in document order."""
    groups: dict[str, list[etree._Element]] = {}
    for child in parent:
        if isinstance(child.tag, str):  # comments and PIs are not structure
            groups.setdefault(child.tag, []).append(child)
    return groups


def one(parts: dict[str, list[etree._Element]], tag: str,
        refuse: Callable[[str, str], SignatureError]) -> etree._Element:
    """The one ``tag`` child in ``parts`` (:func:`children`); else
    ``refuse("signature.invalid", …)``."""
    found = parts.get(tag, ())
    if len(found) != 1:
        raise refuse("signature.invalid", f"the signature must hold exactly one "
                     f"ds:{etree.QName(tag).localname}; found {len(found)}")
    return found[0]


def lenient_base64(text: str | None) -> bytes:
    """Decoded base64 or ``b""`` for none or bad padding.

    Lenient as signxml and xmlsec1 are (characters outside the alphabet, such as line
    breaks, are skipped): this only decides "empty or broken", and which registered
    certificate KeyInfo points at, never what is trusted.
    """
    try:
        return binascii.a2b_base64(text or "")
    except binascii.Error:
        return b""


# -------------------------------------------------------------------- internals --


def _read_signed_reference(canonical_info: bytes, signed_info: etree._Element,
                           c14n_algorithms: Collection[str],
                           digest_algorithms: Collection[str] | None) -> SignedReference:
    """The digest value and how to canonicalise the document for it (exclusive?
    inclusive prefixes?), read from the ``SignedInfo`` whose signature was just
    verified: what its canonical form ``canonical_info`` says.

    That form is parsed again when ``signed_info`` holds a comment, a
    processing instruction or an entity reference, so that one inside ``DigestValue``
    cannot make us read another value than the one signed. Without them (receipts,
    packages as signers write them) the element itself says exactly what its canonical
    form says (the same elements, attribute values and text, CDATA read as text), and
    it is read instead (parsing again costs about as much as the rest of this).
    """
    if next(signed_info.iter(etree.Comment, etree.ProcessingInstruction, etree.Entity),
            None) is not None:
        signed_info = etree.fromstring(canonical_info, _parser())
    parts = children(signed_info)
    references = parts.get(REFERENCE, [])
    if len(references) != 1 or references[0].get("URI") is None:
        raise SignatureError("signature.invalid", f"the signed SignedInfo must hold exactly "
                             f"one Reference with a URI; found {len(references)}")
    if references[0].get("URI") != "":
        # A Reference to a part of the document: the rest of it is not signed.
        raise SignatureError("signature.misplaced", f"the signed Reference is to "
                             f"{references[0].get('URI')!r}, not to the whole document "
                             f"(URI=\"\")")
    reference_parts = children(references[0])
    c14n = reference_c14n(reference_parts, c14n_algorithms, SignatureError)
    digest_method = one(reference_parts, DIGEST_METHOD, SignatureError)
    digest = DIGEST_NAMES.get(digest_method.get("Algorithm") or "", "")
    if not digest or (digest_algorithms is not None and digest not in digest_algorithms):
        raise SignatureError("signature.weak_algorithm", f"digest algorithm "
                             f"{digest_method.get('Algorithm')!r} is not allowed")
    transforms = [t for t in reference_parts[TRANSFORMS][0] if isinstance(t.tag, str)]
    # No C14N transform: XML-DSig's node-set-to-octets step, inclusive C14N 1.0.
    exclusive, prefixes = _c14n_options(transforms[1]) if len(transforms) == 2 \
        else (False, None)
    value = one(reference_parts, DIGEST_VALUE, SignatureError).text
    if value is None:
        raise SignatureError("signature.invalid", "DigestValue is empty")
    return SignedReference(c14n, digest, binascii.a2b_base64(value), exclusive, prefixes)


def _c14n_options(method: etree._Element) -> tuple[bool, list[str] | None]:
    """``(exclusive, inclusive_ns_prefixes)`` of a ``CanonicalizationMethod`` or C14N
    ``Transform``. C14N 1.1 is computed as 1.0: lxml has no 1.1, and signxml, the
    reference, computes it so too; no default policy allows it."""
    exclusive = (method.get("Algorithm") or "").startswith(_EXC_C14N)
    if not len(method):  # the usual case: no InclusiveNamespaces (nor anything else)
        return exclusive, None
    inclusive = method.find(f"{_INCLUSIVE_NAMESPACES}[@PrefixList]")
    return exclusive, None if inclusive is None else inclusive.get("PrefixList", "").split(" ")


def _verify_signature_value(signature: etree._Element, key: object, algorithm: str) -> bytes:
    """Check ``SignatureValue`` over the canonical ``SignedInfo`` with ``key`` (the pinned
    certificate's); return that canonical ``SignedInfo``.

    ``SignedInfo`` is canonicalised where it is: lxml canonicalises an element as the
    root of a document that declares every namespace in scope (without ``xml:*``
    attributes of ancestors): the form signers sign and other verifiers (signxml,
    xmlsec1) check, with no copy of ``ds:Signature``.
    """
    parts = children(signature)
    tail = signature.tail
    if tail and tail.strip(_XML_WHITESPACE):
        # No signer writes it, and signxml, the reference, refuses it: so do we.
        raise SignatureError("signature.invalid", "text follows ds:Signature")
    signed_info = parts[SIGNED_INFO][0]
    exclusive, prefixes = _c14n_options(children(signed_info)[C14N_METHOD][0])
    canonical = etree.tostring(signed_info, method="c14n", exclusive=exclusive,
                               with_comments=False, inclusive_ns_prefixes=prefixes)
    value = binascii.a2b_base64(parts[SIGNATURE_VALUE][0].text or "")
    digest = _SIGNATURE_HASHES[algorithm]()
    try:
        if algorithm.startswith("rsa-") and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, canonical, padding.PKCS1v15(), digest)
        elif algorithm.startswith("ecdsa-") and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.key_size + 7) // 8
            if len(value) != 2 * size:  # XML-DSig's ECDSA value is r || s, each `size` bytes
                raise SignatureError("signature.invalid", f"an ECDSA SignatureValue on "
                                     f"{key.curve.name} has {2 * size} bytes, not {len(value)}")
            key.verify(encode_dss_signature(int.from_bytes(value[:size], "big"),
                                            int.from_bytes(value[size:], "big")),
                       canonical, ec.ECDSA(digest))
        else:
            raise SignatureError("signature.invalid", f"the signer certificate's key cannot "
                                 f"make {algorithm} signatures")
    except InvalidSignature as exc:
        raise SignatureError("signature.invalid", "the signature value does not verify with "
                             "the expected certificate") from exc
    return canonical


def _check_key_values(signature: etree._Element, key: object) -> None:
    """Every ``KeyValue`` or ``DEREncodedKeyValue`` in ``KeyInfo`` must be ``key``: two
    keys in one ``KeyInfo`` are an ambiguity a reader should not have to resolve. Neither
    is ever used to verify."""
    for key_info in signature.iterchildren(KEY_INFO):
        for element in key_info.iterchildren(_KEY_VALUE, _DER_KEY_VALUE):
            matches = (_der_key_matches if element.tag == _DER_KEY_VALUE
                       else _key_value_matches)(element, key)
            if not matches:
                raise SignatureError("signature.invalid", f"KeyInfo holds a "
                                     f"{etree.QName(element).localname} that is not the "
                                     f"signer certificate's key")


def _key_value_matches(key_value: etree._Element, key: object) -> bool:
    if isinstance(key, rsa.RSAPublicKey):
        rsa_value = key_value.find(_RSA_KEY_VALUE)
        numbers = key.public_numbers()
        return rsa_value is not None and (
            _base64_int(rsa_value.find(_MODULUS)), _base64_int(rsa_value.find(_EXPONENT))
        ) == (numbers.n, numbers.e)
    if isinstance(key, ec.EllipticCurvePublicKey):
        ec_value = key_value.find(_EC_KEY_VALUE)
        curve = None if ec_value is None else ec_value.find(_NAMED_CURVE)
        point = None if ec_value is None else ec_value.find(_EC_PUBLIC_KEY)
        if curve is None or point is None \
                or _NAMED_CURVES.get(curve.get("URI") or "") != key.curve.name:
            return False
        xy = lenient_base64(point.text)[1:]  # an uncompressed point: 04 || x || y
        numbers = key.public_numbers()
        half = len(xy) // 2
        return (int.from_bytes(xy[:half], "big"), int.from_bytes(xy[half:], "big")) == (
            numbers.x, numbers.y)
    return False


def _der_key_matches(element: etree._Element, key: object) -> bool:
    try:
        offered = load_der_public_key(lenient_base64(element.text))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return offered.public_bytes(*spki) == key.public_bytes(*spki)  # type: ignore[attr-defined]


def _base64_int(element: etree._Element | None) -> int | None:
    return None if element is None else int.from_bytes(lenient_base64(element.text), "big")


_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers must not be shared between threads; one per thread saves setting
    # up a parser context on every call.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = xml_parser()
    return parser

