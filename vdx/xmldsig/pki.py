"""Development PKI: a TEST national root, agency and hub signing certificates, a CRL.

The pure functions (:func:`create_root`, :func:`issue_intermediate`,
:func:`issue_certificate`, :func:`issue_agency_certificate`, :func:`issue_hub_certificate`,
:func:`build_crl`) make keys, certificates and CRLs with ``cryptography`` and touch no
file. The ``*_ca`` / ``ca_*`` functions keep a CA directory in this layout (``certs/README.md``)::

    DIR/ca/root.pem              the root certificate (the trust anchor to hand out)
    DIR/ca/root.key              its private key                                (0600)
    DIR/ca/revoked.json          revoked serials and the last CRL number
    DIR/ca/issued/<SERIAL>.pem   a copy of every certificate issued, to revoke by serial
    DIR/agencies/<CODE>.pem      an agency's signing certificate
    DIR/agencies/<CODE>.key      its private key                                (0600)
    DIR/hub/hub.pem, hub.key     the hub's receipt-signing certificate and key  (0600)
    DIR/crl/root.crl.pem         the root's current CRL

Directories are created 0700 and keys 0600, atomically (no moment with wider rights).

**Where the agency code lives.** An agency certificate's subject is
``C=VN, organizationIdentifier=<CODE>, CN=<name>``: the code is in the X.520
``organizationIdentifier`` attribute (OID 2.5.4.97), which exists to carry an
organisation's registered identifier (eIDAS certificates use it the same way); the CN
holds the agency's human name. :func:`agency_code_of` reads it back.

**Profile** (chosen so that ``cryptography.x509.verification`` accepts the chain with the
verifier's extension policies, see :mod:`vdx.xmldsig.verify`): root with critical
BasicConstraints CA and critical KeyUsage keyCertSign+cRLSign, SKI; leaves with critical
BasicConstraints CA=false, critical KeyUsage digitalSignature+nonRepudiation, the
documentSigning extended key usage (RFC 9336), SKI and AKI. Root keys are RSA-3072 or
ECDSA P-384, leaf keys RSA-2048 or ECDSA P-256.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

ROOT_NAME = "VDX TEST National Root CA"
HUB_NAME = "VDX TEST Hub receipt signer"
AGENCY_CODE_OID = NameOID.ORGANIZATION_IDENTIFIER
# RFC 9336 id-kp-documentSigning: says what the key is for without claiming TLS purposes.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
SIGNING_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=True, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)
# Backdating absorbs clock skew between the CA and a verifier that checks "valid now".
_BACKDATE = timedelta(minutes=5)
_SAFE_CODE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,34}")


class PkiError(Exception):
    """An operation on a CA directory was refused; the message says why (for the CLI)."""


# ===================================================================== pure functions ==

def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def generate_key(ec_key: bool = False, *, root: bool = False) -> PrivateKey:
    """A new private key: RSA-2048 / P-256 for leaves, RSA-3072 / P-384 for a root."""
    if ec_key:
        return ec.generate_private_key(ec.SECP384R1() if root else ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=3072 if root else 2048)


def create_root(name: str = ROOT_NAME, *, days: int = 3650, ec_key: bool = False,
                now: datetime | None = None) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed root CA key and certificate named ``name`` (keep "TEST" in it)."""
    key = generate_key(ec_key, root=True)
    start = _now(now) - _BACKDATE
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VDX TEST PKI"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256() if isinstance(key, rsa.RSAPrivateKey) else hashes.SHA384())
    )
    return key, cert


def issue_intermediate(ca_key: PrivateKey, ca_cert: x509.Certificate, name: str, *,
                       days: int = 1825, ec_key: bool = False, now: datetime | None = None,
                       ) -> tuple[PrivateKey, x509.Certificate]:
    """A subordinate CA named ``name`` under ``ca_cert`` (which must allow one: the
    root's path length is 1), issuing leaves only (path length 0); the same profile as
    the root, so the verifier's CA policy accepts it."""
    key = generate_key(ec_key)
    start = _now(now) - _BACKDATE
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VDX TEST PKI"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def issue_certificate(
    ca_key: PrivateKey, ca_cert: x509.Certificate, subject: x509.Name,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, *,
    not_before: datetime, not_after: datetime,
    key_usage: x509.KeyUsage | None = SIGNING_KEY_USAGE,
    extended_key_usage: tuple[ObjectIdentifier, ...] | None = (DOCUMENT_SIGNING,),
) -> x509.Certificate:
    """The general leaf issuer behind the agency and hub helpers.

    Tests use it directly for certificates the helpers refuse to make (wrong key usage,
    odd validity); ``None`` leaves an extension out.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if extended_key_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)),
                                        critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def agency_subject(code: str, name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(AGENCY_CODE_OID, code),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])


def issue_agency_certificate(
    ca_key: PrivateKey, ca_cert: x509.Certificate, code: str, name: str, *,
    days: int = 730, ec_key: bool = False, now: datetime | None = None,
    key: PrivateKey | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """A signing key and certificate for agency ``code`` (see the module docstring)."""
    _check_code(code)
    key = key or generate_key(ec_key)
    start = _now(now) - _BACKDATE
    cert = issue_certificate(ca_key, ca_cert, agency_subject(code, name), key.public_key(),
                             not_before=start, not_after=start + timedelta(days=days))
    return key, cert


def issue_hub_certificate(
    ca_key: PrivateKey, ca_cert: x509.Certificate, name: str = HUB_NAME, *,
    days: int = 730, ec_key: bool = False, now: datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """The hub's receipt-signing key and certificate (no agency code in its subject)."""
    key = generate_key(ec_key)
    start = _now(now) - _BACKDATE
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VDX hub"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    cert = issue_certificate(ca_key, ca_cert, subject, key.public_key(),
                             not_before=start, not_after=start + timedelta(days=days))
    return key, cert


def agency_code_of(cert: x509.Certificate) -> str | None:
    """The agency code in ``cert``'s subject, or ``None`` when absent or ambiguous."""
    values = cert.subject.get_attributes_for_oid(AGENCY_CODE_OID)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


def build_crl(ca_key: PrivateKey, ca_cert: x509.Certificate,
              revoked: Mapping[int, datetime], *, number: int, days: int = 7,
              now: datetime | None = None) -> x509.CertificateRevocationList:
    """A CRL of ``ca_cert`` listing each serial in ``revoked`` with its revocation time."""
    start = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start - _BACKDATE)
        .next_update(start + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False)
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(when.astimezone(UTC)).build())
    return builder.sign(ca_key, hashes.SHA256())


def serial_hex(serial: int) -> str:
    """How serials are shown and named on disk: ``0x`` and lower-case hex."""
    return f"0x{serial:x}"


def parse_serial(text: str) -> int:
    """Read a serial written as ``0x…`` hex (as shown by the CLI) or as decimal digits."""
    text = text.strip().replace(":", "")
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise PkiError(f"{text!r} is not a serial number (0x-prefixed hex or decimal)") from None


def _check_code(code: str) -> None:
    # The code becomes a file name: no path separators, no leading dot.
    if not _SAFE_CODE.fullmatch(code):
        raise PkiError(f"{code!r} is not usable as an agency code (letters, digits, '.', '-', "
                       f"'_'; at most 35 characters)")


# ==================================================================== files on disk ==

def load_certificate(path: str | Path) -> x509.Certificate:
    """The first certificate in a PEM file."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_private_key(path: str | Path) -> PrivateKey:
    """An unencrypted PEM private key (RSA or EC). Costs tens of ms: load once."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PkiError(f"{path}: only RSA and EC keys are supported")
    return key


@dataclass(frozen=True)
class CaDir:
    """Paths of a CA directory (see the module docstring); creating it writes nothing."""

    path: Path

    @property
    def root_cert(self) -> Path:
        return self.path / "ca" / "root.pem"

    @property
    def root_key(self) -> Path:
        return self.path / "ca" / "root.key"

    @property
    def revoked_file(self) -> Path:
        return self.path / "ca" / "revoked.json"

    @property
    def issued_dir(self) -> Path:
        return self.path / "ca" / "issued"

    @property
    def crl_file(self) -> Path:
        return self.path / "crl" / "root.crl.pem"

    def agency_cert(self, code: str) -> Path:
        return self.path / "agencies" / f"{code}.pem"

    def agency_key(self, code: str) -> Path:
        return self.path / "agencies" / f"{code}.key"

    @property
    def hub_cert(self) -> Path:
        return self.path / "hub" / "hub.pem"

    @property
    def hub_key(self) -> Path:
        return self.path / "hub" / "hub.key"

    def load_root(self) -> tuple[PrivateKey, x509.Certificate]:
        if not self.root_key.exists():
            raise PkiError(f"{self.path} is not a CA directory (run `vdx ca init` first)")
        return load_private_key(self.root_key), load_certificate(self.root_cert)


@dataclass(frozen=True)
class IssuedFiles:
    """A certificate just written, with where its certificate and key files are."""

    certificate: x509.Certificate
    cert_path: Path
    key_path: Path

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate.serial_number)


def init_ca(path: str | Path, *, name: str = ROOT_NAME, days: int = 3650,
            ec_key: bool = False, now: datetime | None = None) -> IssuedFiles:
    """Create a CA directory with a new TEST root and an empty CRL; never overwrites."""
    ca = CaDir(Path(path))
    if ca.root_key.exists() or ca.root_cert.exists():
        raise PkiError(f"{ca.path} already holds a root CA; refusing to replace it")
    key, cert = create_root(name, days=days, ec_key=ec_key, now=now)
    _make_dirs(ca.path)
    _write_key(ca.root_key, key)
    _write_public(ca.root_cert, _pem(cert))
    _write_public(ca.revoked_file, json.dumps({"crl_number": 0, "revoked": []}, indent=2).encode())
    write_crl(ca.path, now=now)
    return IssuedFiles(cert, ca.root_cert, ca.root_key)


def issue_agency(path: str | Path, code: str, name: str, *, days: int = 730,
                 ec_key: bool = False, replace: bool = False,
                 now: datetime | None = None) -> IssuedFiles:
    """Issue and write ``agencies/<code>.pem`` and ``.key``; refuses to overwrite unless
    ``replace`` (revoke the old serial first: its copy stays in ``ca/issued``)."""
    ca = CaDir(Path(path))
    _check_code(code)
    _refuse_overwrite(ca.agency_key(code), replace)
    ca_key, ca_cert = ca.load_root()
    key, cert = issue_agency_certificate(ca_key, ca_cert, code, name, days=days,
                                         ec_key=ec_key, now=now)
    return _store_issued(ca, key, cert, ca.agency_cert(code), ca.agency_key(code))


def issue_hub(path: str | Path, *, name: str = HUB_NAME, days: int = 730,
              ec_key: bool = False, replace: bool = False,
              now: datetime | None = None) -> IssuedFiles:
    """Issue and write ``hub/hub.pem`` and ``hub/hub.key`` (same overwrite rule)."""
    ca = CaDir(Path(path))
    _refuse_overwrite(ca.hub_key, replace)
    ca_key, ca_cert = ca.load_root()
    key, cert = issue_hub_certificate(ca_key, ca_cert, name, days=days, ec_key=ec_key, now=now)
    return _store_issued(ca, key, cert, ca.hub_cert, ca.hub_key)


def revoke(path: str | Path, serial: int, *, now: datetime | None = None) -> Path:
    """Add ``serial`` (issued by this CA) to the revocation list and write a new CRL."""
    ca = CaDir(Path(path))
    if not (ca.issued_dir / f"{serial_hex(serial)}.pem").exists():
        raise PkiError(f"serial {serial_hex(serial)} was not issued by the CA in {ca.path}")
    state = _read_state(ca)
    if any(parse_serial(r["serial"]) == serial for r in state["revoked"]):
        raise PkiError(f"serial {serial_hex(serial)} is already revoked")
    state["revoked"].append({"serial": serial_hex(serial), "revoked_at": _now(now).isoformat()})
    _write_state(ca, state)
    return write_crl(ca.path, now=now)


def write_crl(path: str | Path, *, days: int = 7, now: datetime | None = None) -> Path:
    """Sign and write a fresh CRL (next CRL number) listing every revoked serial."""
    ca = CaDir(Path(path))
    ca_key, ca_cert = ca.load_root()
    state = _read_state(ca)
    state["crl_number"] += 1
    revoked = {parse_serial(r["serial"]): datetime.fromisoformat(r["revoked_at"])
               for r in state["revoked"]}
    crl = build_crl(ca_key, ca_cert, revoked, number=state["crl_number"], days=days, now=now)
    _write_public(ca.crl_file, crl.public_bytes(serialization.Encoding.PEM))
    _write_state(ca, state)
    return ca.crl_file


def _store_issued(ca: CaDir, key: PrivateKey, cert: x509.Certificate,
                  cert_path: Path, key_path: Path) -> IssuedFiles:
    _write_public(ca.issued_dir / f"{serial_hex(cert.serial_number)}.pem", _pem(cert))
    _write_key(key_path, key)
    _write_public(cert_path, _pem(cert))
    return IssuedFiles(cert, cert_path, key_path)


def _refuse_overwrite(key_path: Path, replace: bool) -> None:
    if key_path.exists() and not replace:
        raise PkiError(f"{key_path} exists; refusing to overwrite a private key "
                       f"(revoke the old certificate and pass --replace)")


def _read_state(ca: CaDir) -> dict:
    try:
        return json.loads(ca.revoked_file.read_text())
    except FileNotFoundError:
        return {"crl_number": 0, "revoked": []}


def _write_state(ca: CaDir, state: dict) -> None:
    _write_public(ca.revoked_file, json.dumps(state, indent=2).encode())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_dirs(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_key(path: Path, key: PrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    _atomic_write(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _atomic_write(path, data, 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates the file 0600, so a key is never readable by others, not even
    # between creation and rename; the rename makes replacing a file all-or-nothing.
    _make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
