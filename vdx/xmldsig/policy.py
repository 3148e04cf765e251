"""What a signature may use and what a verification returns: frozen values.

:class:`VerificationPolicy` is a package's (the hub's and the SDK's), :class:`ReceiptPolicy`
a hub receipt's; :class:`vdx.xmldsig.verify.Verifier` applies both. Their defaults are
the production policies; SHA-1 cannot be put in an allow-list. :class:`Verified` is a
package signature that held, with the only content later steps may read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from lxml import etree

from vdx.xmldsig.enveloped import C14N_ALGORITHMS, DIGEST_ALGORITHMS, SIGNATURE_ALGORITHMS
from vdx.xmldsig.pki import agency_code_of

__all__ = [
    "DEFAULT_POLICY", "RECEIPT_CODES", "RECEIPT_POLICY", "SHA1_ALGORITHMS", "ReceiptPolicy",
    "Registered", "VerificationPolicy", "Verified",
]

SHA1_ALGORITHMS = frozenset({"rsa-sha1", "ecdsa-sha1", "sha1"})


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_allow_lists(policy: VerificationPolicy | ReceiptPolicy, sha1_refused: str) -> None:
    for names, table in ((policy.signature_algorithms, SIGNATURE_ALGORITHMS),
                         (policy.digest_algorithms, DIGEST_ALGORITHMS),
                         (policy.c14n_algorithms, C14N_ALGORITHMS)):
        unknown = names - table.keys()
        if unknown:
            raise ValueError(f"unknown algorithm(s) {sorted(unknown)}; known: {sorted(table)}")
        if names & SHA1_ALGORITHMS:
            raise ValueError(sha1_refused)


@dataclass(frozen=True)
class VerificationPolicy:
    """What a package's signature may use. The defaults are the hub's production policy.

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
        _check_allow_lists(self, "SHA-1 cannot be allowed for everyone; "
                                 "name the senders in legacy_sha1_senders")


DEFAULT_POLICY = VerificationPolicy()


@dataclass(frozen=True)
class ReceiptPolicy:
    """What a hub receipt's signature may use. The defaults are the SDK's policy.

    The hub signs with RSA- or ECDSA-SHA256, a SHA-256 digest and exclusive C14N; the
    defaults also take the stronger hashes and the inclusive C14N 1.0 that a standard
    signer (signxml, xmlsec1) may choose. SHA-1 cannot be allowed, and HMAC is never
    known. ``clock`` gives "now" (aware UTC) for the hub certificate's validity.
    """

    signature_algorithms: frozenset[str] = frozenset(
        {"rsa-sha256", "rsa-sha384", "rsa-sha512", "ecdsa-sha256", "ecdsa-sha384",
         "ecdsa-sha512"})
    digest_algorithms: frozenset[str] = frozenset({"sha256", "sha384", "sha512"})
    c14n_algorithms: frozenset[str] = frozenset({"exc-c14n", "c14n"})
    clock: Callable[[], datetime] = field(default=_utcnow, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_allow_lists(self, "SHA-1 cannot be allowed for receipts")


RECEIPT_POLICY = ReceiptPolicy()
# The codes :meth:`Verifier.verify_receipt` raises. A receipt's reader needs no finer
# ones: any other refusal (an algorithm or transform outside the policy, which only the
# hub's key could have signed, and the hub never does) is reported as signature.invalid.
RECEIPT_CODES = frozenset({"signature.missing", "signature.misplaced", "signature.invalid",
                           "signature.digest_mismatch"})


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
