"""The edXML signature policy: who must have signed a package, or a hub receipt, and how.

:meth:`Verifier.verify` checks a package in named steps, each raising
:class:`~vdx.errors.SignatureError` with a stable code, cheapest and least trusting first:

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
   neither it nor any intermediate CA above it on its issuer's CRL
   (``signature.revoked_certificate``; no fresh CRL: ``signature.revocation_unknown``);
5. ``check_xml_signature``: the signature value with the pinned certificate's key, then
   the document's digest (``signature.invalid``, ``signature.digest_mismatch``):
   :func:`vdx.xmldsig.enveloped.check_enveloped_signature`, the generic XML-DSig engine.

:meth:`Verifier.verify_receipt` checks a hub receipt by the same steps under
:data:`~vdx.xmldsig.policy.RECEIPT_POLICY`: the signature is the last child of the
receipt, its signer is the hub certificate the caller expects, and its reader is promised
fewer codes. The policies are frozen values (:mod:`vdx.xmldsig.policy`).

The result holds only what was signed: the document without its ``ds:Signature``, its
comments and the nodes outside its root element, as a tree: a copy, or the caller's own
tree with ``consume=True``. Later steps read that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.x509 import verification
from lxml import etree

from vdx.core.envelope import load_tree
from vdx.core.quirks import placeholder_signatures
from vdx.core.receipts import load_receipt_tree
from vdx.core.xmlsafe import EDXML_NS, element_path
from vdx.errors import SignatureError
from vdx.xmldsig.enveloped import (
    C14N_METHOD,
    DIGEST_METHOD,
    DIGEST_NAMES,
    DIGEST_VALUE,
    KEY_INFO,
    REFERENCE,
    SIGNATURE_METHOD,
    SIGNATURE_NAMES,
    SIGNATURE_VALUE,
    SIGNED_INFO,
    X509_CERTIFICATE,
    X509_DATA,
    c14n_name,
    check_enveloped_signature,
    children,
    lenient_base64,
    one,
    reference_c14n,
)
from vdx.xmldsig.pki import agency_code_of
from vdx.xmldsig.policy import (
    DEFAULT_POLICY,
    RECEIPT_CODES,
    RECEIPT_POLICY,
    SHA1_ALGORITHMS,
    ReceiptPolicy,
    Registered,
    VerificationPolicy,
    Verified,
)
from vdx.xmldsig.sign import DS_SIGNATURE
from vdx.xmldsig.trust import TrustStore, TrustStoreError, load_crl

__all__ = [
    "DEFAULT_POLICY", "RECEIPT_CODES", "RECEIPT_POLICY", "ReceiptPolicy", "Registered",
    "TrustStore", "TrustStoreError", "VerificationPolicy", "Verified", "Verifier",
    "claimed_sender", "load_crl", "verify_offline",
]

log = logging.getLogger(__name__)

_E = f"{{{EDXML_NS}}}"
_EDXML, _ENVELOPE, _HEADER = f"{_E}edXML", f"{_E}edXMLEnvelope", f"{_E}edXMLHeader"
_HEADER_SHAPES = ([f"{_E}MessageHeader", DS_SIGNATURE],
                  [f"{_E}MessageHeader", f"{_E}TraceHeaderList", DS_SIGNATURE])


@dataclass(frozen=True)
class _SignedInfo:
    signature_algorithm: str
    digest_algorithm: str
    c14n_algorithm: str
    key_certs: tuple[bytes, ...]  # DER of each KeyInfo/X509Data/X509Certificate
    signature: etree._Element = field(repr=False, compare=False)  # the located ds:Signature


class Verifier:
    """Verifies packages against one trust store and policy, and hub receipts against the
    hub's certificate (:meth:`verify_receipt`); safe to share across threads.

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
            # the first (schema: only) envelope and header: where signxml, the reference, looks
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

        parts = children(signature)
        info_parts = children(one(parts, SIGNED_INFO, refuse))
        references = info_parts.get(REFERENCE, [])
        if len(references) != 1 or references[0].get("URI") != "":
            raise refuse("signature.misplaced",
                         f"the signature must carry exactly one Reference with URI=\"\" (the "
                         f"whole document); found {len(references)} "
                         f"({', '.join(repr(r.get('URI')) for r in references)})")
        reference_parts = children(references[0])
        allowed = self.policy.c14n_algorithms
        c14n_name(one(info_parts, C14N_METHOD, refuse), allowed, refuse)
        c14n_algorithm = reference_c14n(reference_parts, allowed, refuse)
        signature_method = one(info_parts, SIGNATURE_METHOD, refuse)
        digest_method = one(reference_parts, DIGEST_METHOD, refuse)
        signature_algorithm = SIGNATURE_NAMES.get(signature_method.get("Algorithm") or "", "")
        digest_algorithm = DIGEST_NAMES.get(digest_method.get("Algorithm") or "", "")
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
        one(reference_parts, DIGEST_VALUE, refuse)
        if not lenient_base64(one(parts, SIGNATURE_VALUE, refuse).text):
            raise refuse("signature.invalid", "SignatureValue is empty or not base64")
        key_infos = parts.get(KEY_INFO, ())
        if len(key_infos) > 1:
            raise refuse("signature.invalid", "the signature holds more than one ds:KeyInfo")
        key_certs = tuple(lenient_base64(cert.text) for key_info in key_infos
                          for data in key_info.iterchildren(X509_DATA)
                          for cert in data.iterchildren(X509_CERTIFICATE))
        return _SignedInfo(signature_algorithm, digest_algorithm, c14n_algorithm, key_certs,
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
        self.trust.check_revocation(known.chain, now, require_crl=self.policy.require_crl)
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

    # -------------------------------------------------------------------- receipts --

    @staticmethod
    def verify_receipt(receipt: bytes | etree._ElementTree, hub_certificate: x509.Certificate,
                       policy: ReceiptPolicy = RECEIPT_POLICY, *,
                       consume: bool = False) -> etree._ElementTree:
        """The signed content of a hub receipt, if ``hub_certificate`` signed it.

        ``receipt`` is untrusted bytes (read by :func:`vdx.core.receipts.load_receipt_tree`,
        which raises :class:`~vdx.errors.EnvelopeError` for anything but a schema-valid
        receipt) or a tree it returned; ``consume`` as for :meth:`verify`. No trust
        store is needed: the caller knows the hub's certificate. The steps are a
        package's, under the receipt's policy:

        1. locate: the root's ``ds:Signature`` child (``signature.missing``), its last
           child (``signature.misplaced``; the schema allows it nowhere else);
        2. read_signed_info: one ``SignedInfo`` whose C14N and signature method
           ``policy`` allows, one ``SignatureValue`` (``signature.invalid``). Nothing
           of the ``Reference`` is read before the value verifies: until then it may be
           anyone's edit, reported as what it is, a signature that does not verify;
        3. pin the signer: ``hub_certificate``; ``KeyInfo`` is not read;
        4. check the certificate: valid now (``signature.invalid``); the caller trusts
           it, so no chain nor CRL;
        5. check the XML signature
           (:func:`~vdx.xmldsig.enveloped.check_enveloped_signature`): the value with
           the hub's key, a ``KeyValue`` in ``KeyInfo`` that is not that key
           (``signature.invalid``), a ``Reference`` to only a part of the receipt
           (``signature.misplaced``), its transforms and digest method within
           ``policy``, then the digest (``signature.digest_mismatch``).

        Only :data:`RECEIPT_CODES` are raised; any other refusal is ``signature.invalid``.
        """
        consume = consume or isinstance(receipt, bytes)
        tree = load_receipt_tree(receipt) if isinstance(receipt, bytes) else receipt
        try:
            signature = _locate_receipt_signature(tree.getroot())
            algorithm = _read_receipt_signed_info(signature, policy)
            _check_hub_certificate(hub_certificate, policy.clock())
            signed, _reference = check_enveloped_signature(
                tree, signature, _last_child, hub_certificate.public_key(), algorithm,
                c14n_algorithms=policy.c14n_algorithms,
                digest_algorithms=policy.digest_algorithms, consume=consume)
        except SignatureError as exc:
            if exc.code in RECEIPT_CODES:
                raise
            raise SignatureError("signature.invalid", f"receipt: {exc.message}") from exc
        return signed

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
                            min(c.not_valid_after_utc for c in chain))
        _bounded_put(self._chains, cert, known)
        return known


@dataclass(frozen=True)
class _KnownChain:
    """A chain cryptography verified for its first certificate; it stays valid while every
    certificate in it is (the trust store never changes). Its revocation is checked on
    every use."""

    chain: tuple[x509.Certificate, ...]
    valid_from: datetime
    valid_until: datetime

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
        offered = (_certificate(lenient_base64(e.text))
                   for e in tree.getroot().iter(X509_CERTIFICATE))
        return [c for c in offered if c is not None and agency_code_of(c) == code]

    return verifier.verify(tree, claimed_sender(tree), registered,
                           consume=consume or isinstance(package, bytes))


def _edxml_signature(root: etree._Element) -> etree._Element:
    # Verifier.locate() checked that this path leads to the one ds:Signature (so it does
    # in a copy too)
    return root.find(_ENVELOPE).find(_HEADER).find(DS_SIGNATURE)


def _require_signing_key_usage(policy: object, cert: x509.Certificate,
                               key_usage: x509.KeyUsage | None) -> None:
    # Signature shape of an ExtensionPolicy validator: cryptography calls it on the leaf
    # while building the chain, and we call it directly for a precise error code.
    if key_usage is None or not (key_usage.digital_signature or key_usage.content_commitment):
        raise ValueError("KeyUsage allows neither digitalSignature nor nonRepudiation")


def _certificate(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None  # an unreadable certificate cannot be a registered one


def _as_tree(package: bytes | etree._ElementTree | etree._Element) -> etree._ElementTree:
    if isinstance(package, bytes):
        return load_tree(package)
    if isinstance(package, etree._Element):
        return package.getroottree()
    return package


# ------------------------------------------------------------ a receipt's steps --

def _locate_receipt_signature(root: etree._Element) -> etree._Element:
    signature = root.find(DS_SIGNATURE)
    if signature is None:
        raise SignatureError("signature.missing", "the receipt is not signed")
    if signature is not root[-1]:  # a comment or PI after it: the hub never writes one
        raise SignatureError("signature.misplaced", "ds:Signature is not the last child "
                             "of the receipt")
    return signature


def _read_receipt_signed_info(signature: etree._Element, policy: ReceiptPolicy) -> str:
    """The short name of the signature method, once what checking the value needs is
    there and allowed."""
    parts = children(signature)
    info_parts = children(one(parts, SIGNED_INFO, SignatureError))
    c14n_name(one(info_parts, C14N_METHOD, SignatureError), policy.c14n_algorithms,
              SignatureError)
    method = one(info_parts, SIGNATURE_METHOD, SignatureError)
    algorithm = SIGNATURE_NAMES.get(method.get("Algorithm") or "", "")
    if algorithm not in policy.signature_algorithms:
        raise SignatureError("signature.weak_algorithm", f"signature method "
                             f"{method.get('Algorithm')!r} is not allowed")
    one(parts, SIGNATURE_VALUE, SignatureError)
    return algorithm


def _check_hub_certificate(certificate: x509.Certificate, now: datetime) -> None:
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SignatureError("signature.invalid", f"the hub certificate is valid only from "
                             f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                             f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def _last_child(root: etree._Element) -> etree._Element:
    # _locate_receipt_signature checked that the signature is the root's last child
    # (so it is in a copy too)
    return root[-1]
