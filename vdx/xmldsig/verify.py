"""Verify a package's signature the way an attacker would test it.

:meth:`Verifier.verify` runs named steps, each raising :class:`~vdx.errors.SignatureError`
with a stable code, cheapest and least trusting first:

1. ``locate``: exactly one ``ds:Signature`` in the whole tree (``signature.missing``,
   ``signature.multiple``; an edXML-namespace placeholder in its place, which legacy
   software writes, is ``signature.placeholder`` alone and ``signature.multiple`` beside
   a real one), the last child of ``/edXML/edXMLEnvelope/edXMLHeader`` right after
   ``TraceHeaderList`` or ``MessageHeader`` (``signature.misplaced``);
2. ``read_signed_info``: one ``Reference`` with ``URI=""`` (``signature.misplaced``),
   transforms enveloped then optionally one C14N, no comments (``signature.bad_transform``),
   allow-listed algorithms; SHA-1 only for a legacy sender, logged; HMAC never
   (``signature.weak_algorithm``); a non-empty base64 ``SignatureValue``
   (``signature.invalid``);
3. ``pin_signer``: a ``KeyInfo`` certificate must *equal* one registered for the sender,
   and its agency code (if any) must be the sender's (``signature.wrong_signer``). From
   here on only the registered certificate is used: ``KeyInfo`` is a pointer, never trusted;
4. ``check_certificate``: valid now (``signature.expired_certificate``), key usage
   digitalSignature or nonRepudiation (``signature.key_usage``), a chain to a trust anchor
   built and verified by ``cryptography.x509.verification`` (``signature.untrusted_certificate``),
   not on its issuer's CRL (``signature.revoked_certificate``; no fresh CRL:
   ``signature.revocation_unknown``);
5. ``check_xml_signature``: the ``SignatureValue`` over the canonical ``SignedInfo``,
   with the pinned certificate's key (``cryptography``: RSA PKCS#1 v1.5, or ECDSA whose
   XML-DSig value is ``r || s``); a ``KeyValue`` beside the certificate must be its key
   (``signature.invalid``); then the ``DigestValue``, read from that canonical
   ``SignedInfo``, against the digest of the document without its ``ds:Signature``
   (``signature.digest_mismatch``, compared in constant time).

Step 5 is this module's own (:func:`check_enveloped_signature`, which
:func:`vdx.client.checks.verify_receipt` uses too, for hub receipts). signxml, which did it
before, serialised and re-parsed the whole document three times and canonicalised it into
one bytes object (about 5x the package in memory); it stays as the reference that
``tests/test_verify_differential.py`` and ``tests/test_receipt_verify_fast.py`` compare
with. Here the digest comes from libxml2's C14N of the tree with its signature
detached, except each attachment's text, which is escaped and hashed in chunks (libxml2
would first take twice its size): beyond the tree, one copy of one attachment's text at a
time, plus the copy of the tree that is the result unless ``consume=True``. Only the
structure steps 1 and 2 pinned is supported: one ``Reference URI=""``, enveloped, then
exclusive or inclusive C14N without comments (C14N 1.1, if a policy allows it, is
computed as 1.0, as signxml did).

The result holds only what was signed: the document without its ``ds:Signature``, its
comments and the nodes outside its root element (the node-set the digest covered), as a
tree: a copy, or the caller's own tree with ``consume=True``. Later steps read that.
"""

from __future__ import annotations

import binascii
import copy
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from cryptography.x509 import verification
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from vdx.core.envelope import load_tree
from vdx.core.quirks import placeholder_signatures
from vdx.core.schema import DS_NS
from vdx.core.xmlsafe import EDXML_NS, element_path
from vdx.errors import SignatureError
from vdx.xmldsig.pki import agency_code_of
from vdx.xmldsig.sign import DS_SIGNATURE, xml_parser
from vdx.xmldsig.trust import TrustStore, TrustStoreError, load_crl

__all__ = [
    "DEFAULT_POLICY", "Registered", "TrustStore", "TrustStoreError", "VerificationPolicy",
    "Verified", "Verifier", "claimed_sender", "load_crl", "verify_offline",
]

log = logging.getLogger(__name__)

_E = f"{{{EDXML_NS}}}"
_DS = f"{{{DS_NS}}}"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_EDXML, _ENVELOPE, _HEADER = f"{_E}edXML", f"{_E}edXMLEnvelope", f"{_E}edXMLHeader"
_ATTACHMENT_TEXT = f"{_E}ContentTransferEncoded"
_HEADER_SHAPES = ([f"{_E}MessageHeader", DS_SIGNATURE],
                  [f"{_E}MessageHeader", f"{_E}TraceHeaderList", DS_SIGNATURE])
(_SIGNED_INFO, _C14N_METHOD, _SIGNATURE_METHOD, _REFERENCE, _TRANSFORMS, _TRANSFORM,
 _DIGEST_METHOD, _DIGEST_VALUE, _SIGNATURE_VALUE, _KEY_INFO, _X509_DATA,
 _X509_CERTIFICATE) = (f"{_DS}{name}" for name in (
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
SHA1_ALGORITHMS = frozenset({"rsa-sha1", "ecdsa-sha1", "sha1"})
_SIGNATURE_NAME = {m.value: n for n, m in SIGNATURE_ALGORITHMS.items()}
_DIGEST_NAME = {m.value: n for n, m in DIGEST_ALGORITHMS.items()}
_C14N_NAME = {m.value: n for n, m in C14N_ALGORITHMS.items()}
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_INCLUSIVE_NAMESPACES = f"{{{_EXC_C14N}}}InclusiveNamespaces"
_DSIG11 = "{http://www.w3.org/2009/xmldsig11#}"
_KEY_VALUE, _RSA_KEY_VALUE, _MODULUS, _EXPONENT = (
    f"{_DS}{name}" for name in ("KeyValue", "RSAKeyValue", "Modulus", "Exponent"))
_EC_KEY_VALUE, _NAMED_CURVE, _EC_PUBLIC_KEY, _DER_KEY_VALUE = (
    f"{_DSIG11}{name}" for name in ("ECKeyValue", "NamedCurve", "PublicKey",
                                     "DEREncodedKeyValue"))
_NAMED_CURVES = {  # dsig11:NamedCurve URIs signxml knew, by cryptography's curve name
    "urn:oid:1.2.840.10045.3.1.7": "secp256r1", "urn:oid:1.3.132.0.34": "secp384r1",
    "urn:oid:1.3.132.0.35": "secp521r1", "urn:oid:1.2.840.10045.3.1.1": "secp192r1",
    "urn:oid:1.3.132.0.33": "secp224r1",
}
_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "rsa-sha256": hashes.SHA256, "rsa-sha384": hashes.SHA384, "rsa-sha512": hashes.SHA512,
    "ecdsa-sha256": hashes.SHA256, "ecdsa-sha384": hashes.SHA384,
    "ecdsa-sha512": hashes.SHA512, "rsa-sha1": hashes.SHA1, "ecdsa-sha1": hashes.SHA1,
}
_DIGEST_HASHES = {"sha256": "sha256", "sha384": "sha384", "sha512": "sha512", "sha1": "sha1"}
_XML_WHITESPACE = " \t\r\n"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class VerificationPolicy:
    """What a signature may use. The defaults are the hub's production policy.

    SHA-1 cannot be put in the allow-lists; it is accepted only from the agencies in
    ``legacy_sha1_senders``, and every such acceptance is logged as a warning.
    ``require_crl`` refuses a certificate whose issuer has no CRL in the trust store.
    ``clock`` gives "now" (aware UTC) for validity and CRL freshness; tests inject it.
    """

    signature_algorithms: frozenset[str] = frozenset(
        {"rsa-sha256", "rsa-sha384", "rsa-sha512", "ecdsa-sha256", "ecdsa-sha384"})
    digest_algorithms: frozenset[str] = frozenset({"sha256", "sha384", "sha512"})
    c14n_algorithms: frozenset[str] = frozenset({"c14n", "exc-c14n"})
    legacy_sha1_senders: frozenset[str] = frozenset()
    require_crl: bool = True
    clock: Callable[[], datetime] = field(default=_utcnow, compare=False, repr=False)

    def __post_init__(self) -> None:
        for names, table in ((self.signature_algorithms, SIGNATURE_ALGORITHMS),
                             (self.digest_algorithms, DIGEST_ALGORITHMS),
                             (self.c14n_algorithms, C14N_ALGORITHMS)):
            unknown = names - table.keys()
            if unknown:
                raise ValueError(f"unknown algorithm(s) {sorted(unknown)}; known: {sorted(table)}")
            if names & SHA1_ALGORITHMS:
                raise ValueError("SHA-1 cannot be allowed for everyone; "
                                 "name the senders in legacy_sha1_senders")


DEFAULT_POLICY = VerificationPolicy()


@dataclass(frozen=True)
class Verified:
    """A signature that passed every check, and the only content later steps may read.

    ``signed_tree`` holds exactly what was signed: the document without its
    ``ds:Signature``, without comments and without the nodes outside its root element.
    """

    signed_tree: etree._ElementTree = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    sender_code: str
    signature_algorithm: str
    digest_algorithm: str
    c14n_algorithm: str
    legacy_sha1: bool = False

    @property
    def signer(self) -> str:
        """The signer certificate's subject, e.g. ``CN=…,2.5.4.97=000.00.00.G22,C=VN``."""
        return self.certificate.subject.rfc4514_string()

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def summary(self) -> dict[str, object]:
        """Plain values for people and JSON (the CLI prints this)."""
        return {
            "sender": self.sender_code,
            "signer": self.signer,
            "agency_code": agency_code_of(self.certificate),
            "serial": f"0x{self.serial:x}",
            "not_after": self.certificate.not_valid_after_utc.isoformat(),
            "signature_algorithm": self.signature_algorithm,
            "digest_algorithm": self.digest_algorithm,
            "c14n_algorithm": self.c14n_algorithm,
            "legacy_sha1": self.legacy_sha1,
        }


Registered = Callable[[str], Sequence[x509.Certificate]]


@dataclass(frozen=True)
class _SignedInfo:
    signature_algorithm: str
    digest_algorithm: str
    c14n_algorithm: str
    key_certs: tuple[bytes, ...]  # DER of each KeyInfo/X509Data/X509Certificate
    signature: etree._Element = field(repr=False, compare=False)  # the located ds:Signature


class Verifier:
    """Verifies packages against one trust store and policy; safe to share across threads.

    A certificate chain that verified is remembered (per pinned certificate, while every
    certificate of the chain is within its validity period): the trust store is
    immutable, so the result cannot change inside that window. Validity, key usage and
    revocation are still checked on every call.
    """

    def __init__(self, trust: TrustStore, policy: VerificationPolicy = DEFAULT_POLICY) -> None:
        self.trust = trust
        self.policy = policy
        # The end-entity profile: any EKU (agencies' certificates come from several CAs),
        # but a KeyUsage for signing documents. CAs get the Web PKI CA profile.
        self._ee_policy = verification.ExtensionPolicy.permit_all().require_present(
            x509.KeyUsage, verification.Criticality.AGNOSTIC, _require_signing_key_usage)
        self._ca_policy = verification.ExtensionPolicy.webpki_defaults_ca()
        # Keyed by certificate content: the registry may hand out new objects each time.
        self._chains: dict[x509.Certificate, _KnownChain] = {}

    # ---------------------------------------------------------------------- the steps --

    def verify(self, package: bytes | etree._ElementTree | etree._Element, sender_code: str,
               registered: Registered, *, consume: bool = False) -> Verified:
        """Verify ``package`` as sent by ``sender_code``; ``registered(code)`` returns the
        certificates registered for an agency.

        ``package`` is untrusted bytes, or a tree from :func:`vdx.core.envelope.load_tree`.
        Raises :class:`~vdx.errors.SignatureError` (or ``EnvelopeError`` for bytes that
        are not a valid package).

        A tree is only read: ``signed_tree`` is then a copy of it (one more copy of the
        package in memory while both live). With ``consume=True`` the caller hands the
        tree over instead: if the signature holds, ``signed_tree`` *is* that tree, with
        its ``ds:Signature``, comments and the nodes outside the root element taken out,
        and nothing is copied; if it does not, the ``ds:Signature`` is put back where it
        was (lxml may drop namespace declarations on it that its ancestors make
        redundant). Bytes are always consumed: their tree is private.
        """
        consume = consume or isinstance(package, bytes)
        tree = _as_tree(package)
        signature = self.locate(tree)
        info = self.read_signed_info(signature, sender_code)
        certificate = self.pin_signer(info, sender_code, registered)
        self.check_certificate(certificate)
        return self.check_xml_signature(tree, certificate, info, sender_code, consume=consume)

    def locate(self, tree: etree._ElementTree) -> etree._Element:
        root = tree.getroot()
        signatures = list(root.iter(DS_SIGNATURE))  # everywhere, not just where we expect
        placeholders = placeholder_signatures(root)
        if not signatures and placeholders:
            raise SignatureError(
                "signature.placeholder", "the package's only signature is an edXML-namespace "
                "placeholder; sign it with the agency's key (a gateway system or folder "
                "bridge configured with the key replaces the placeholder and signs)",
                line=placeholders[0].sourceline, path=element_path(placeholders[0]))
        if not signatures:
            raise SignatureError("signature.missing")
        if placeholders:
            # Signed along with the package, so harmless to the digest; but two elements
            # that both look like the signature leave readers to guess which one counts.
            raise SignatureError(
                "signature.multiple", "the package carries an edXML-namespace placeholder "
                "Signature beside its ds:Signature; remove the placeholder before signing "
                "(vdx.xmldsig.sign.Signer does)",
                line=placeholders[0].sourceline, path=element_path(placeholders[0]))
        if len(signatures) > 1:
            raise SignatureError(
                "signature.multiple", f"the package carries {len(signatures)} ds:Signature "
                f"elements; exactly one is allowed",
                line=signatures[1].sourceline, path=element_path(signatures[1]))
        signature = signatures[0]
        header = signature.getparent()
        envelope = None if header is None else header.getparent()
        placed = (
            root.tag == _EDXML and envelope is not None and envelope.getparent() is root
            # the first (schema: only) envelope and header, as signxml will look there
            and root.find(_ENVELOPE) is envelope and envelope.find(_HEADER) is header
            and [c.tag for c in header if isinstance(c.tag, str)] in _HEADER_SHAPES
        )
        if not placed:
            raise SignatureError(
                "signature.misplaced", "ds:Signature must be the last child of "
                "/edXML/edXMLEnvelope/edXMLHeader, right after TraceHeaderList or MessageHeader",
                line=signature.sourceline, path=element_path(signature))
        return signature

    def read_signed_info(self, signature: etree._Element, sender_code: str) -> _SignedInfo:
        def refuse(code: str, message: str) -> SignatureError:
            return SignatureError(code, message, line=signature.sourceline,
                                  path=element_path(signature))

        parts = _children(signature)
        info_parts = _children(_one(parts, _SIGNED_INFO, refuse))
        references = info_parts.get(_REFERENCE, [])
        if len(references) != 1 or references[0].get("URI") != "":
            raise refuse("signature.misplaced",
                         f"the signature must carry exactly one Reference with URI=\"\" (the "
                         f"whole document); found {len(references)} "
                         f"({', '.join(repr(r.get('URI')) for r in references)})")
        reference_parts = _children(references[0])
        allowed = self.policy.c14n_algorithms
        _c14n_name(_one(info_parts, _C14N_METHOD, refuse), allowed, refuse)
        reference_c14n = _reference_c14n(reference_parts, allowed, refuse)
        signature_method = _one(info_parts, _SIGNATURE_METHOD, refuse)
        digest_method = _one(reference_parts, _DIGEST_METHOD, refuse)
        signature_algorithm = _SIGNATURE_NAME.get(signature_method.get("Algorithm") or "", "")
        digest_algorithm = _DIGEST_NAME.get(digest_method.get("Algorithm") or "", "")
        legacy_ok = sender_code in self.policy.legacy_sha1_senders
        for name, allowed, element in (
                (signature_algorithm, self.policy.signature_algorithms, signature_method),
                (digest_algorithm, self.policy.digest_algorithms, digest_method)):
            if name not in allowed and not (legacy_ok and name in SHA1_ALGORITHMS):
                uri = element.get("Algorithm") or ""
                why = ("HMAC proves nothing about who signed" if "hmac" in uri.lower()
                       else "SHA-1 is accepted only from named legacy senders"
                       if name in SHA1_ALGORITHMS else "it is not in the policy's allow-list")
                raise refuse("signature.weak_algorithm", f"algorithm {uri!r} is refused: {why}")
        _one(reference_parts, _DIGEST_VALUE, refuse)
        if not _base64(_one(parts, _SIGNATURE_VALUE, refuse).text):
            raise refuse("signature.invalid", "SignatureValue is empty or not base64")
        key_infos = parts.get(_KEY_INFO, ())
        if len(key_infos) > 1:
            raise refuse("signature.invalid", "the signature holds more than one ds:KeyInfo")
        key_certs = tuple(_base64(cert.text) for key_info in key_infos
                          for data in key_info.iterchildren(_X509_DATA)
                          for cert in data.iterchildren(_X509_CERTIFICATE))
        return _SignedInfo(signature_algorithm, digest_algorithm, reference_c14n, key_certs,
                           signature)

    def pin_signer(self, info: _SignedInfo, sender_code: str,
                   registered: Registered) -> x509.Certificate:
        if not info.key_certs:
            raise SignatureError("signature.wrong_signer",
                                 "KeyInfo/X509Data carries no signer certificate")
        candidates = tuple(registered(sender_code))
        if not candidates:
            raise SignatureError("signature.wrong_signer",
                                 f"no certificate is registered for {sender_code}")
        # Equality with a registered certificate (same DER): KeyInfo only says which
        # registered certificate to use; nothing in it is believed.
        offered = [cert for cert in map(_certificate, info.key_certs) if cert is not None]
        pinned = next((c for c in candidates if c in offered), None)
        if pinned is None:
            shown = offered[0].subject.rfc4514_string() if offered else "no readable certificate"
            raise SignatureError(
                "signature.wrong_signer", f"KeyInfo names {shown}, which is not a certificate "
                f"registered for {sender_code}")
        code = agency_code_of(pinned)
        if code is not None and code != sender_code:
            raise SignatureError(
                "signature.wrong_signer",
                f"the registered certificate belongs to agency {code}, not {sender_code}")
        return pinned

    def check_certificate(self, cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """Validity, key usage, chain and revocation of ``cert``; returns the chain."""
        now = self.policy.clock()
        if now < cert.not_valid_before_utc:
            raise SignatureError("signature.expired_certificate",
                                 f"the signer certificate is valid only from "
                                 f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
        if now > cert.not_valid_after_utc:
            raise SignatureError("signature.expired_certificate",
                                 f"the signer certificate expired on "
                                 f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        try:
            _require_signing_key_usage(
                None, cert, cert.extensions.get_extension_for_class(x509.KeyUsage).value)
        except (x509.ExtensionNotFound, ValueError) as exc:
            raise SignatureError("signature.key_usage",
                                 "the signer certificate's KeyUsage allows neither "
                                 "digitalSignature nor nonRepudiation") from exc
        known = self._chain(cert, now)
        self._check_revocation(cert, known, now)
        return known.chain

    def check_xml_signature(self, tree: etree._ElementTree, cert: x509.Certificate,
                            info: _SignedInfo, sender_code: str, *,
                            consume: bool = False) -> Verified:
        """The signature value over ``SignedInfo``, then the digest of the document.

        The canonical document is never built whole: the digest hashes the C14N of the
        tree itself (``consume``, see :meth:`verify`) or of a copy, with its
        ``ds:Signature`` detached (the enveloped transform), and that tree, without
        comments, is the result.
        """
        # digest_algorithms=None: read_signed_info checked the digest against the policy
        # (legacy SHA-1 senders included); the signed SignedInfo must name the same.
        signed, _reference = check_enveloped_signature(
            tree, info.signature, _edxml_signature, cert.public_key(),
            info.signature_algorithm, c14n_algorithms=self.policy.c14n_algorithms,
            digest_algorithms=None, consume=consume,
            expect=(info.c14n_algorithm, info.digest_algorithm))
        legacy = bool({info.signature_algorithm, info.digest_algorithm} & SHA1_ALGORITHMS)
        if legacy:
            log.warning("accepted a SHA-1 signature (%s, %s) from legacy sender %s",
                        info.signature_algorithm, info.digest_algorithm, sender_code)
        return Verified(signed, cert, sender_code, info.signature_algorithm,
                        info.digest_algorithm, info.c14n_algorithm, legacy)

    # -------------------------------------------------------------------- internals --

    def _chain(self, cert: x509.Certificate, now: datetime) -> _KnownChain:
        cached = self._chains.get(cert)
        if cached is not None and cached.covers(now):
            return cached
        verifier = (
            verification.PolicyBuilder().store(self.trust.store).time(now)
            .extension_policies(ee_policy=self._ee_policy, ca_policy=self._ca_policy)
            .build_client_verifier()
        )
        try:
            chain = tuple(verifier.verify(cert, list(self.trust.intermediates)).chain)
        except verification.VerificationError as exc:
            raise SignatureError("signature.untrusted_certificate",
                                 f"no valid chain to a trust anchor: {exc}") from exc
        if len(chain) < 2:
            raise SignatureError("signature.untrusted_certificate",
                                 "the signer certificate is itself a trust anchor")
        known = _KnownChain(chain, max(c.not_valid_before_utc for c in chain),
                            min(c.not_valid_after_utc for c in chain),
                            self.trust.crl_for(chain[1]))
        _bounded_put(self._chains, cert, known)
        return known

    def _check_revocation(self, cert: x509.Certificate, known: _KnownChain,
                          now: datetime) -> None:
        crl = known.crl
        if crl is None:
            if self.policy.require_crl:
                raise SignatureError("signature.revocation_unknown",
                                     f"the trust store has no CRL of "
                                     f"{known.chain[1].subject.rfc4514_string()}")
            return
        next_update = crl.next_update_utc
        if next_update is None or next_update < now or crl.last_update_utc > now:
            raise SignatureError("signature.revocation_unknown",
                                 f"the CRL of {crl.issuer.rfc4514_string()} is not current "
                                 f"(next update {next_update})")
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise SignatureError("signature.revoked_certificate",
                                 f"serial 0x{cert.serial_number:x} was revoked on "
                                 f"{entry.revocation_date_utc:%Y-%m-%d %H:%M} UTC")


@dataclass(frozen=True)
class _KnownChain:
    """A chain cryptography verified for its first certificate; it stays valid while every
    certificate in it is (the trust store never changes), and so does its issuer's CRL."""

    chain: tuple[x509.Certificate, ...]
    valid_from: datetime
    valid_until: datetime
    crl: x509.CertificateRevocationList | None

    def covers(self, now: datetime) -> bool:
        return self.valid_from <= now <= self.valid_until


_CACHE_SIZE = 4096


def _bounded_put(cache: dict, key: object, value: object) -> None:
    # Registered certificates are few; clearing a full cache keeps memory bounded
    # without an LRU's bookkeeping. Races between threads only cost a recomputation.
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


def claimed_sender(tree: etree._ElementTree) -> str:
    """The sender the (not yet verified) header names: only to choose certificates."""
    found = tree.getroot().findtext(
        f"{_ENVELOPE}/{_HEADER}/{_E}MessageHeader/{_E}From/{_E}OrganId")
    return (found or "").strip()


def verify_offline(package: bytes | etree._ElementTree, verifier: Verifier,
                   signer_certs: Sequence[x509.Certificate] = (), *,
                   consume: bool = False) -> Verified:
    """Verify ``package`` as sent by the agency its header names, without the registry.

    ``signer_certs`` stand for the sender's registered certificates (``vdx envelope
    verify --cert``). Without them, a ``KeyInfo`` certificate counts as registered only
    if its subject carries the sender's agency code (:func:`vdx.xmldsig.pki.agency_code_of`), so
    the trust anchors vouch for who signed. That is weaker than the hub's pinning to the
    registry and is meant for people checking a package by hand. ``consume``: as for
    :meth:`Verifier.verify` (bytes are always consumed).
    """
    tree = _as_tree(package)

    def registered(code: str) -> Sequence[x509.Certificate]:
        if signer_certs:
            return signer_certs
        # verify() calls this only after it found exactly one, well-placed signature.
        offered = (_certificate(_base64(e.text)) for e in tree.getroot().iter(_X509_CERTIFICATE))
        return [c for c in offered if c is not None and agency_code_of(c) == code]

    return verifier.verify(tree, claimed_sender(tree), registered,
                           consume=consume or isinstance(package, bytes))


# ------------------------------------------------------------- step 5, the crypto --

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
    """Step 5 for any enveloped signature over a whole document (``Reference URI=""``):
    :meth:`Verifier.check_xml_signature` for packages, :func:`vdx.client.checks.verify_receipt`
    for hub receipts.

    ``signature`` is the document's ``ds:Signature`` (its ``SignedInfo``,
    ``CanonicalizationMethod``, ``SignatureMethod`` and ``SignatureValue`` present and
    ``signature_algorithm`` the allowed name of its method: the caller read them);
    ``locate(root)`` finds it again under a root (in a copy of the tree, unless
    ``consume``); ``key`` is the pinned certificate's public key, the only one used.

    In order: the ``SignatureValue`` over the canonical ``SignedInfo`` with ``key``
    (``signature.invalid``); each ``KeyValue`` beside the certificate must be ``key``
    (``signature.invalid``); the signed ``SignedInfo`` (its canonical form, parsed
    again) must hold one ``Reference URI=""`` (``signature.misplaced``) with the
    enveloped transform then at most one C14N of ``c14n_algorithms``
    (``signature.bad_transform``), a digest method of ``digest_algorithms``
    (``signature.weak_algorithm``; ``None``: any known, the caller checked) and, if given,
    the ``expect`` ``(c14n, digest)`` names (``signature.invalid``); then the digest of
    the document without its ``ds:Signature`` against its ``DigestValue``
    (``signature.digest_mismatch``, in constant time). C14N or parsing failures are
    ``signature.invalid``.

    Returns the signed content (see :func:`_signed_content`) and the ``Reference``.
    """
    try:
        canonical_info = _verify_signature_value(signature, key, signature_algorithm)
        _check_key_values(signature, key)
        reference = _read_signed_reference(canonical_info, _children(signature)[_SIGNED_INFO][0],
                                           c14n_algorithms, digest_algorithms)
        if expect is not None and (reference.c14n_algorithm,
                                   reference.digest_algorithm) != expect:  # pragma: no cover
            raise SignatureError("signature.invalid", "SignedInfo names other algorithms "
                                                      "once canonicalised")
        signed = _signed_content(tree, locate, reference.digest_algorithm, reference.digest,
                                 reference.exclusive, reference.prefixes, consume)
    except (etree.LxmlError, ValueError, TypeError) as exc:  # C14N or parsing failed
        raise SignatureError("signature.invalid", str(exc) or type(exc).__name__) from exc
    return signed, reference


def _edxml_signature(root: etree._Element) -> etree._Element:
    # Verifier.locate() checked that this path leads to the one ds:Signature (so it does
    # in a copy too)
    return root.find(_ENVELOPE).find(_HEADER).find(DS_SIGNATURE)


def _c14n_name(element: etree._Element, allowed: Collection[str],
               refuse: Callable[[str, str], SignatureError]) -> str:
    name = _C14N_NAME.get(element.get("Algorithm") or "", "")
    if name not in allowed:
        raise refuse("signature.bad_transform",
                     f"canonicalization {element.get('Algorithm')!r} is not allowed")
    return name


def _reference_c14n(reference_parts: dict[str, list[etree._Element]], allowed: Collection[str],
                    refuse: Callable[[str, str], SignatureError]) -> str:
    """Enveloped first, then at most one allowed C14N; returns the C14N's name."""
    transforms = reference_parts.get(_TRANSFORMS, [])
    elements = [t for t in transforms[0] if isinstance(t.tag, str)] if transforms else []
    algorithms = [t.get("Algorithm") for t in elements]
    if (len(transforms) != 1 or any(t.tag != _TRANSFORM for t in elements)
            or not algorithms or algorithms[0] != ENVELOPED or len(algorithms) > 2):
        raise refuse("signature.bad_transform",
                     f"the transforms must be enveloped-signature, then at most one "
                     f"canonicalization; found {algorithms}")
    # XML-DSig's node-set-to-octets default when no C14N transform is listed.
    return _c14n_name(elements[1], allowed, refuse) if len(elements) == 2 else "c14n"


def _read_signed_reference(canonical_info: bytes, signed_info: etree._Element,
                           c14n_algorithms: Collection[str],
                           digest_algorithms: Collection[str] | None) -> SignedReference:
    """The digest value and how to canonicalise the document for it (exclusive?
    inclusive prefixes?), read from the ``SignedInfo`` whose signature was just
    verified: what its canonical form ``canonical_info`` says.

    That form is parsed again (as signxml did) when ``signed_info`` holds a comment, a
    processing instruction or an entity reference, so that one inside ``DigestValue``
    cannot make us read another value than the one signed. Without them (receipts,
    packages as signers write them) the element itself says exactly what its canonical
    form says (the same elements, attribute values and text, CDATA read as text), and
    it is read instead (parsing again costs about as much as the rest of this).
    """
    if next(signed_info.iter(etree.Comment, etree.ProcessingInstruction, etree.Entity),
            None) is not None:
        signed_info = etree.fromstring(canonical_info, _parser())
    parts = _children(signed_info)
    references = parts.get(_REFERENCE, [])
    if len(references) != 1 or references[0].get("URI") != "":
        raise SignatureError("signature.misplaced", "the signed SignedInfo does not hold exactly "
                                             "one Reference with URI=\"\"")
    reference_parts = _children(references[0])
    c14n = _reference_c14n(reference_parts, c14n_algorithms, SignatureError)
    digest_method = _one(reference_parts, _DIGEST_METHOD, SignatureError)
    digest = _DIGEST_NAME.get(digest_method.get("Algorithm") or "", "")
    if not digest or (digest_algorithms is not None and digest not in digest_algorithms):
        raise SignatureError("signature.weak_algorithm", f"digest algorithm "
                      f"{digest_method.get('Algorithm')!r} is not allowed")
    transforms = [t for t in reference_parts[_TRANSFORMS][0] if isinstance(t.tag, str)]
    # No C14N transform: XML-DSig's node-set-to-octets step, inclusive C14N 1.0.
    exclusive, prefixes = _c14n_options(transforms[1]) if len(transforms) == 2 \
        else (False, None)
    value = _one(reference_parts, _DIGEST_VALUE, SignatureError).text
    if value is None:
        raise SignatureError("signature.invalid", "DigestValue is empty")
    return SignedReference(c14n, digest, binascii.a2b_base64(value), exclusive, prefixes)


def _c14n_options(method: etree._Element) -> tuple[bool, list[str] | None]:
    """``(exclusive, inclusive_ns_prefixes)`` of a ``CanonicalizationMethod`` or C14N
    ``Transform``, read as signxml read them. C14N 1.1 is computed as 1.0 (lxml has no
    1.1; signxml did the same), which the default policy does not allow anyway."""
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
    attributes of ancestors), which is what signxml got from its standalone copy of
    ``ds:Signature``.
    """
    parts = _children(signature)
    tail = signature.tail
    if tail and tail.strip(_XML_WHITESPACE):
        # signxml parsed ds:Signature serialised with its tail: text there failed it
        raise SignatureError("signature.invalid", "text follows ds:Signature")
    signed_info = parts[_SIGNED_INFO][0]
    exclusive, prefixes = _c14n_options(_children(signed_info)[_C14N_METHOD][0])
    canonical = etree.tostring(signed_info, method="c14n", exclusive=exclusive,
                               with_comments=False, inclusive_ns_prefixes=prefixes)
    value = binascii.a2b_base64(parts[_SIGNATURE_VALUE][0].text or "")
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
                             "the registered certificate") from exc
    return canonical


def _check_key_values(signature: etree._Element, key: object) -> None:
    """A ``KeyValue`` or ``DEREncodedKeyValue`` beside the certificate must be the pinned
    certificate's key: two keys in one ``KeyInfo`` are an ambiguity (signxml refused a
    mismatching first one; every one is checked here). Neither is ever used to verify."""
    for key_info in signature.iterchildren(_KEY_INFO):
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
        xy = _base64(point.text)[1:]  # an uncompressed point: 04 || x || y
        numbers = key.public_numbers()
        half = len(xy) // 2
        return (int.from_bytes(xy[:half], "big"), int.from_bytes(xy[half:], "big")) == (
            numbers.x, numbers.y)
    return False


def _der_key_matches(element: etree._Element, key: object) -> bool:
    try:
        offered = load_der_public_key(_base64(element.text))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return offered.public_bytes(*spki) == key.public_bytes(*spki)  # type: ignore[attr-defined]


def _base64_int(element: etree._Element | None) -> int | None:
    return None if element is None else int.from_bytes(_base64(element.text), "big")


def _signed_content(tree: etree._ElementTree,
                    locate: Callable[[etree._Element], etree._Element], digest_name: str,
                    expected: bytes, exclusive: bool, prefixes: list[str] | None,
                    consume: bool) -> etree._ElementTree:
    """Hash the C14N of ``tree`` without its ``ds:Signature`` (``locate(root)``, under the
    root of ``tree`` or of its copy), compare it with ``expected``, and return the signed
    content as a tree: ``tree`` itself (``consume``) or a copy (the caller's tree is then
    never modified).

    The node-set hashed is signxml's: the root element and everything in it (nodes
    outside the root element are not signed), minus ``ds:Signature``, minus comments
    (C14N without comments). The tree returned holds exactly that node-set.
    """
    root = tree.getroot() if consume else copy.deepcopy(tree.getroot())
    detached = _DetachedSignature(locate(root))
    try:
        digest = _c14n_digest(root, digest_name, exclusive, prefixes)
        if not hmac.compare_digest(digest, expected):
            raise SignatureError("signature.digest_mismatch",
                                 "the document's digest is not the signed DigestValue")
    except BaseException:
        if consume:
            detached.restore()
        raise
    outside = [*root.itersiblings(preceding=True), *root.itersiblings()]
    if outside:  # top-level comments and processing instructions (never in a copy)
        etree.Element("unsigned").extend(outside)
    etree.strip_tags(root, etree.Comment)
    return root.getroottree()


class _DetachedSignature:
    """The enveloped-signature transform, done on the tree: ``ds:Signature`` is taken out
    of its parent and the text that followed it stays where it was (appended to the
    previous sibling's tail or to the parent's text, as signxml did)."""

    def __init__(self, signature: etree._Element) -> None:
        self.signature = signature
        self.parent = parent = signature.getparent()
        self.index = parent.index(signature)
        self.previous = previous = signature.getprevious()
        self.tail = tail = signature.tail
        self.before = previous.tail if previous is not None else parent.text
        if tail:
            if previous is not None:
                previous.tail = (self.before or "") + tail
            else:
                parent.text = (self.before or "") + tail
        signature.tail = None
        parent.remove(signature)

    def restore(self) -> None:
        """Put the signature back (lxml may drop namespace declarations it made
        redundant: the infoset is the same, the serialisation need not be)."""
        self.parent.insert(self.index, self.signature)
        self.signature.tail = self.tail
        if self.previous is not None:
            self.previous.tail = self.before
        else:
            self.parent.text = self.before


def _c14n_digest(root: etree._Element, digest_name: str, exclusive: bool,
                 prefixes: list[str] | None) -> bytes:
    """The digest of the C14N (without comments) of ``root`` as it is now.

    libxml2 canonicalises everything except the attachments' text: for a text node it
    allocates about twice its size (normalised copy, output buffer) before anything
    reaches Python, and lxml has no C14N output that streams (``write_c14n`` hands the
    whole node to ``write()`` at once, after those copies). Each ``ContentTransferEncoded``
    (up to the package size; every other text is bounded by ``ParseLimits.max_text``)
    is swapped, while libxml2 runs, for a stand-in that canonicalises to the same tags
    around a random marker (:class:`_Splice`); its text is then escaped and hashed here
    in chunks in place of the marker: one copy of the text (``.text``) instead of three.
    The tree is changed while this runs and put back after.
    """
    hasher = hashlib.new(_DIGEST_HASHES[digest_name])
    splice = _Splice(root)
    try:
        canonical = etree.tostring(root, method="c14n", exclusive=exclusive,
                                   with_comments=False, inclusive_ns_prefixes=prefixes)
    finally:
        splice.restore()
    view, position = memoryview(canonical), 0
    for marker, element in splice.swapped:  # in document order, as C14N wrote them
        at = canonical.index(marker, position)
        hasher.update(view[position:at])
        _hash_c14n_text(hasher, element.text)
        position = at + len(marker)
    hasher.update(view[position:])
    return hasher.digest()


_CHUNK = 1 << 20  # characters of an attachment's text escaped and hashed at a time


def _hash_c14n_text(hasher: hashlib._Hash, text: str | None) -> None:
    """Hash ``text`` as C14N writes a text node (& < > and CR escaped), chunk by chunk."""
    text = text or ""
    for start in range(0, len(text), _CHUNK):
        chunk = text[start:start + _CHUNK]
        if "&" in chunk or "<" in chunk or ">" in chunk or "\r" in chunk:
            chunk = (chunk.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                     .replace("\r", "&#xD;"))
        hasher.update(chunk.encode("utf-8"))


class _Splice:
    """Swap each ``ContentTransferEncoded`` that holds only text for a stand-in that C14N
    writes with the same tags (same name and prefix, no attributes, the same namespaces
    in scope) around a random marker; :meth:`restore` swaps them back.

    An element that does not fit (attributes, children, namespaces of its own, or a
    stand-in that would get another prefix) stays: libxml2 canonicalises it. A marker
    is 128 random bits: the document cannot contain it, so its first occurrence after
    the previous one is the stand-in's.
    """

    def __init__(self, root: etree._Element) -> None:
        self.swapped: list[tuple[bytes, etree._Element]] = []  # (marker, element)
        self._in_place: list[tuple[etree._Element, etree._Element]] = []  # (stand-in, element)
        try:
            for element in list(root.iter(_ATTACHMENT_TEXT)):
                self._swap(element)
        except BaseException:
            self.restore()
            raise

    def _swap(self, element: etree._Element) -> None:
        parent = element.getparent()
        if parent is None or len(element) or len(element.attrib) \
                or not _declares_nothing(element, parent):
            return
        # Its namespace is looked up in scope by URI: it may come with another prefix.
        stand_in = etree.SubElement(parent, element.tag)
        if stand_in.prefix != element.prefix or stand_in.nsmap != parent.nsmap:
            parent.remove(stand_in)
            return
        marker = secrets.token_hex(16)
        stand_in.text, stand_in.tail = marker, element.tail
        parent.replace(element, stand_in)  # the element leaves with its tail
        self.swapped.append((marker.encode("ascii"), element))
        self._in_place.append((stand_in, element))

    def restore(self) -> None:
        while self._in_place:
            stand_in, element = self._in_place.pop()
            stand_in.getparent().replace(stand_in, element)


def _declares_nothing(element: etree._Element, parent: etree._Element) -> bool:
    """True if ``element`` has the namespaces in scope its parent has (so C14N writes no
    namespace declaration on it, nor on a stand-in without declarations)."""
    if element.nsmap != parent.nsmap:
        return False
    if None not in parent.nsmap or element.prefix is None:
        return True
    # nsmap does not show xmlns="" (the default namespace undeclared); XPath does
    return (sorted(element.xpath("namespace::*"), key=repr)
            == sorted(parent.xpath("namespace::*"), key=repr))


def _require_signing_key_usage(policy: object, cert: x509.Certificate,
                               key_usage: x509.KeyUsage | None) -> None:
    # Signature shape of an ExtensionPolicy validator: cryptography calls it on the leaf
    # while building the chain, and we call it directly for a precise error code.
    if key_usage is None or not (key_usage.digital_signature or key_usage.content_commitment):
        raise ValueError("KeyUsage allows neither digitalSignature nor nonRepudiation")


def _children(parent: etree._Element) -> dict[str, list[etree._Element]]:
    groups: dict[str, list[etree._Element]] = {}
    for child in parent:
        if isinstance(child.tag, str):  # comments and PIs are not structure
            groups.setdefault(child.tag, []).append(child)
    return groups


def _one(parts: dict[str, list[etree._Element]], tag: str,
         refuse: Callable[[str, str], SignatureError]) -> etree._Element:
    found = parts.get(tag, ())
    if len(found) != 1:
        raise refuse("signature.invalid", f"the signature must hold exactly one "
                     f"ds:{etree.QName(tag).localname}; found {len(found)}")
    return found[0]


def _base64(text: str | None) -> bytes:
    """Decoded base64 or ``b""`` for none or bad padding.

    Lenient like signxml and xmlsec1 (characters outside the alphabet, such as line
    breaks, are skipped): this only decides "empty or broken", and which registered
    certificate KeyInfo points at, never what is trusted.
    """
    try:
        return binascii.a2b_base64(text or "")
    except binascii.Error:
        return b""


def _certificate(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None  # an unreadable certificate cannot be a registered one


_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers must not be shared between threads; one per thread saves setting
    # up a parser context on every call.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = xml_parser()
    return parser


def _as_tree(package: bytes | etree._ElementTree | etree._Element) -> etree._ElementTree:
    if isinstance(package, bytes):
        return load_tree(package)
    if isinstance(package, etree._Element):
        return package.getroottree()
    return package
