"""Trust anchors, intermediate CAs and CRLs: what :mod:`vdx.xmldsig.verify` chains signers to.

A :class:`TrustStore` is loaded once (from a directory, see ``certs/README.md``) and never
changes; the verifier relies on that to remember chains it has verified. Revocation is
checked for every certificate of a chain but its anchor
(:meth:`TrustStore.check_revocation`): a revoked intermediate CA revokes all under it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509 import verification

from vdx.errors import SignatureError


class TrustStoreError(ValueError):
    """A trust directory or CRL cannot be used (a configuration error, not a package's)."""


@dataclass(frozen=True)
class TrustStore:
    """Trust anchors, intermediate CAs and CRLs, loaded once.

    Every CRL's signature is checked against a CA certificate of the store when the store
    is built; one that no CA here signed is refused.
    """

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    _store: verification.Store = field(init=False, repr=False, compare=False)
    _crl_by_issuer: dict[x509.Certificate, x509.CertificateRevocationList] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.anchors:
            raise TrustStoreError("no trust anchor (self-signed CA certificate) was given")
        object.__setattr__(self, "_store", verification.Store(list(self.anchors)))
        by_issuer: dict[x509.Certificate, x509.CertificateRevocationList] = {}
        for crl in self.crls:
            issuer = next((ca for ca in (*self.anchors, *self.intermediates)
                           if ca.subject == crl.issuer
                           and crl.is_signature_valid(ca.public_key())), None)  # type: ignore[arg-type]
            if issuer is None:
                raise TrustStoreError(f"no CA in the trust store signed the CRL of "
                                      f"{crl.issuer.rfc4514_string()}")
            current = by_issuer.get(issuer)
            if current is None or _crl_number(crl) > _crl_number(current):
                by_issuer[issuer] = crl
        object.__setattr__(self, "_crl_by_issuer", by_issuer)

    @classmethod
    def from_dir(cls, path: str | Path,
                 extra_crls: Sequence[x509.CertificateRevocationList] = ()) -> TrustStore:
        """Load ``DIR``, ``DIR/ca`` and ``DIR/crl``: certificates from ``*.pem``, ``*.crt``,
        ``*.cer`` and CRLs from ``*.crl``/``*.crl.pem`` (PEM or DER).

        Self-signed CA certificates become anchors, other CA certificates intermediates;
        end-entity certificates are ignored, so a development CA directory works as is.
        """
        base = Path(path)
        if not base.is_dir():
            raise TrustStoreError(f"{base} is not a directory")
        anchors, intermediates, crls = [], [], list(extra_crls)
        for directory in (base, base / "ca", base / "crl"):
            for file in sorted(directory.glob("*")) if directory.is_dir() else ():
                if file.name.endswith((".crl", ".crl.pem")):
                    crls.append(load_crl(file))
                elif file.suffix in (".pem", ".crt", ".cer"):
                    for cert in _load_certificates(file):
                        if not _is_ca(cert):
                            continue
                        (anchors if cert.subject == cert.issuer else intermediates).append(cert)
        if not anchors:
            raise TrustStoreError(f"no trust anchor (self-signed CA certificate) in {base}")
        return cls(tuple(anchors), tuple(intermediates), tuple(crls))

    def crl_for(self, issuer: x509.Certificate) -> x509.CertificateRevocationList | None:
        """The newest CRL signed by ``issuer``, if the store has one."""
        return self._crl_by_issuer.get(issuer)

    def check_revocation(self, chain: Sequence[x509.Certificate], now: datetime, *,
                         require_crl: bool = True) -> None:
        """Refuse ``chain`` (signer first, trust anchor last, as verified) if any of its
        certificates but the anchor is revoked, or its revocation status is unknown.

        Each certificate is looked up in the newest CRL of the certificate above it, from
        the anchor down: a revoked intermediate CA is reported as such, and it refuses
        every certificate under it. Raises :class:`~vdx.errors.SignatureError`:
        ``signature.revoked_certificate``, or ``signature.revocation_unknown`` for an
        issuer without a CRL (when ``require_crl``) or with one that is not current.
        """
        for depth in range(len(chain) - 2, -1, -1):
            cert, issuer = chain[depth], chain[depth + 1]
            what = "the signer certificate" if depth == 0 else (
                f"the intermediate CA {cert.subject.rfc4514_string()}")
            crl = self.crl_for(issuer)
            if crl is None:
                if require_crl:
                    raise SignatureError("signature.revocation_unknown",
                                         f"the trust store has no CRL of "
                                         f"{issuer.subject.rfc4514_string()}, which issued "
                                         f"{what}")
                continue
            next_update = crl.next_update_utc
            if next_update is None or next_update < now or crl.last_update_utc > now:
                raise SignatureError("signature.revocation_unknown",
                                     f"the CRL of {crl.issuer.rfc4514_string()} is not current "
                                     f"(next update {next_update})")
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                under = "" if depth == 0 else ": every certificate it issued is refused"
                raise SignatureError("signature.revoked_certificate",
                                     f"{what}, serial 0x{cert.serial_number:x}, was revoked "
                                     f"on {entry.revocation_date_utc:%Y-%m-%d %H:%M} UTC{under}")

    @property
    def store(self) -> verification.Store:
        return self._store


def load_crl(path: str | Path) -> x509.CertificateRevocationList:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise TrustStoreError(f"{path}: not a CRL ({exc})") from exc


def _load_certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        if b"-----BEGIN" in data:
            return []  # a key or something else in PEM: not ours to load
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise TrustStoreError(f"{path}: not a certificate ({exc})") from exc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1
