"""Verify a package's signature the way an attacker would test it.

:meth:`Verifier.verify` runs named steps, each raising :class:`~vdx.errors.SignatureError`
with a stable code, cheapest and least trusting first:

1. ``locate``: exactly one ``ds:Signature`` in the whole tree (``signature.missing``,
   ``signature.multiple``), the last child of ``/edXML/edXMLEnvelope/edXMLHeader`` right
   after ``TraceHeaderList`` or ``MessageHeader`` (``signature.misplaced``);
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
5. ``check_xml_signature``: signxml verifies the signature value and the digest with the
   pinned certificate and the same algorithm allow-list (``signature.invalid``,
   ``signature.digest_mismatch``).

The result holds only what was signed (signxml's ``VerifyResult.signed_xml``: the
canonical document without its signature and without comments); later steps read that.
"""

from __future__ import annotations

import binascii
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509 import verification
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import (
    InvalidCertificate,
    InvalidDigest,
    InvalidSignature,
    SignXMLException,
)

from .envelope import load_tree
from .errors import SignatureError
from .pki import agency_code_of
from .schema import DS_NS
from .signing import DS_SIGNATURE, xml_parser
from .trust import TrustStore, TrustStoreError, load_crl
from .xmlsafe import EDXML_NS, element_path

__all__ = [
    "DEFAULT_POLICY", "Registered", "TrustStore", "TrustStoreError", "VerificationPolicy",
    "Verified", "Verifier", "claimed_sender", "load_crl", "verify_offline",
]

log = logging.getLogger(__name__)

_E = f"{{{EDXML_NS}}}"
_DS = f"{{{DS_NS}}}"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_HEADER_PATH = f"./{_E}edXMLEnvelope/{_E}edXMLHeader/"
_EDXML, _ENVELOPE, _HEADER = f"{_E}edXML", f"{_E}edXMLEnvelope", f"{_E}edXMLHeader"
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

    ``signed_tree`` is the canonical form of exactly what was signed: the document
    without its ``ds:Signature`` and without comments.
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


class _XMLVerifier(XMLVerifier):
    def get_root(self, data):  # noqa: ANN001, ANN201 - signxml's signature
        # signxml copies an element it is given (serialise + parse: 1.5 ms for 1 MiB)
        # so that it may modify it; but verify() only reads that root and copies it
        # again before removing the signature (tests/test_verify.py checks the tree is
        # left untouched). Our tree comes from vdx.xmlsafe, so the copy buys nothing.
        if isinstance(data, etree._Element):
            return data
        return super().get_root(data)


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
        self._config = SignatureConfiguration(
            require_x509=True,
            location=_HEADER_PATH,
            expect_references=1,
            signature_methods=frozenset(
                SIGNATURE_ALGORITHMS[n] for n in policy.signature_algorithms),
            digest_algorithms=frozenset(
                DIGEST_ALGORITHMS[n] for n in policy.digest_algorithms),
            # XML-DSig's implicit node-set-to-octets step is C14N 1.0 (signxml defaults to 1.1).
            default_reference_c14n_method=CanonicalizationMethod.CANONICAL_XML_1_0,
        )
        self._legacy_config = replace(
            self._config,
            signature_methods=self._config.signature_methods
            | {SignatureMethod.RSA_SHA1, SignatureMethod.ECDSA_SHA1},
            digest_algorithms=self._config.digest_algorithms | {DigestAlgorithm.SHA1},
        )
        # The end-entity profile: any EKU (agencies' certificates come from several CAs),
        # but a KeyUsage for signing documents. CAs get the Web PKI CA profile.
        self._ee_policy = verification.ExtensionPolicy.permit_all().require_present(
            x509.KeyUsage, verification.Criticality.AGNOSTIC, _require_signing_key_usage)
        self._ca_policy = verification.ExtensionPolicy.webpki_defaults_ca()
        # Keyed by certificate content: the registry may hand out new objects each time.
        self._chains: dict[x509.Certificate, _KnownChain] = {}

    # ---------------------------------------------------------------------- the steps --

    def verify(self, package: bytes | etree._ElementTree | etree._Element, sender_code: str,
               registered: Registered) -> Verified:
        """Verify ``package`` as sent by ``sender_code``; ``registered(code)`` returns the
        certificates registered for an agency.

        ``package`` is untrusted bytes, or a tree from :func:`vdx.envelope.load_tree`.
        Raises :class:`~vdx.errors.SignatureError` (or ``EnvelopeError`` for bytes that
        are not a valid package).
        """
        tree = _as_tree(package)
        signature = self.locate(tree)
        info = self.read_signed_info(signature, sender_code)
        certificate = self.pin_signer(info, sender_code, registered)
        self.check_certificate(certificate)
        return self.check_xml_signature(tree, certificate, info, sender_code)

    def locate(self, tree: etree._ElementTree) -> etree._Element:
        root = tree.getroot()
        signatures = list(root.iter(DS_SIGNATURE))  # everywhere, not just where we expect
        if not signatures:
            raise SignatureError("signature.missing")
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
        self._c14n_name(_one(info_parts, _C14N_METHOD, refuse), refuse)
        reference_c14n = self._check_transforms(reference_parts, refuse)
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
        return _SignedInfo(signature_algorithm, digest_algorithm, reference_c14n, key_certs)

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
                            info: _SignedInfo, sender_code: str) -> Verified:
        legacy = bool({info.signature_algorithm, info.digest_algorithm} & SHA1_ALGORITHMS)
        config = replace(self._legacy_config if legacy else self._config,
                         verification_time=self.policy.clock())
        try:
            # A fresh XMLVerifier per call: it keeps per-call state on itself.
            # No validate_schema: the package schema (schemas/edxml.xsd) already validated
            # this ds:Signature against the W3C XML-DSig schema, and read_signed_info
            # checked every element signxml reads; validating again costs ~10 %.
            result = _XMLVerifier().verify(tree.getroot(), x509_cert=cert, expect_config=config,
                                           parser=_parser(), validate_schema=False)
        except InvalidDigest as exc:
            raise SignatureError("signature.digest_mismatch", str(exc)) from exc
        except InvalidCertificate as exc:  # the clock moved between our check and signxml's
            raise SignatureError("signature.expired_certificate", str(exc)) from exc
        except (InvalidSignature, SignXMLException, etree.LxmlError, ValueError,
                TypeError) as exc:
            raise SignatureError("signature.invalid", str(exc) or type(exc).__name__) from exc
        signed = result.signed_xml  # type: ignore[union-attr]
        if signed is None:
            raise SignatureError("signature.invalid", "the signed content is not XML")
        if legacy:
            log.warning("accepted a SHA-1 signature (%s, %s) from legacy sender %s",
                        info.signature_algorithm, info.digest_algorithm, sender_code)
        return Verified(signed.getroottree(), cert, sender_code, info.signature_algorithm,
                        info.digest_algorithm, info.c14n_algorithm, legacy)

    # -------------------------------------------------------------------- internals --

    def _c14n_name(self, element: etree._Element,
                   refuse: Callable[[str, str], SignatureError]) -> str:
        name = _C14N_NAME.get(element.get("Algorithm") or "", "")
        if name not in self.policy.c14n_algorithms:
            raise refuse("signature.bad_transform",
                         f"canonicalization {element.get('Algorithm')!r} is not allowed")
        return name

    def _check_transforms(self, reference_parts: dict[str, list[etree._Element]],
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
        return self._c14n_name(elements[1], refuse) if len(elements) == 2 else "c14n"

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
                   signer_certs: Sequence[x509.Certificate] = ()) -> Verified:
    """Verify ``package`` as sent by the agency its header names, without the registry.

    ``signer_certs`` stand for the sender's registered certificates (``vdx envelope
    verify --cert``). Without them, a ``KeyInfo`` certificate counts as registered only
    if its subject carries the sender's agency code (:func:`vdx.pki.agency_code_of`), so
    the trust anchors vouch for who signed. That is weaker than the hub's pinning to the
    registry and is meant for people checking a package by hand.
    """
    tree = _as_tree(package)

    def registered(code: str) -> Sequence[x509.Certificate]:
        if signer_certs:
            return signer_certs
        # verify() calls this only after it found exactly one, well-placed signature.
        offered = (_certificate(_base64(e.text)) for e in tree.getroot().iter(_X509_CERTIFICATE))
        return [c for c in offered if c is not None and agency_code_of(c) == code]

    return verifier.verify(tree, claimed_sender(tree), registered)


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
