"""The development PKI: certificate profile, files and permissions, revocation."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.support.sigkit import G22, H41, H49, World
from vdx.xmldsig import pki

pytest_plugins = ("tests.support.sigfixtures",)  # the PKI world and verifier fixtures


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_root_is_a_test_ca_with_ca_extensions(world: World) -> None:
    root = world.root_cert
    assert "TEST" in root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert root.subject == root.issuer
    basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert isinstance(world.root_key, rsa.RSAPrivateKey) and world.root_key.key_size == 3072


def test_agency_certificate_profile(world: World) -> None:
    cert = world.agencies[G22].cert
    assert pki.agency_code_of(cert) == G22
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"Agency {G22}"
    assert cert.issuer == world.root_cert.subject
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign and not usage.value.key_encipherment
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [pki.DOCUMENT_SIGNING]
    assert isinstance(world.agencies[G22].key, rsa.RSAPrivateKey)
    assert world.agencies[G22].key.key_size == 2048
    ec_key = world.agencies[H49].key
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey) and ec_key.curve.name == "secp256r1"
    cert.verify_directly_issued_by(world.root_cert)


def test_agency_code_of_is_none_when_absent_or_ambiguous(world: World) -> None:
    assert pki.agency_code_of(world.root_cert) is None
    hub = pki.load_certificate(pki.CaDir(world.ca_dir).hub_cert)
    assert pki.agency_code_of(hub) is None
    twice = x509.Name([x509.NameAttribute(pki.AGENCY_CODE_OID, G22),
                       x509.NameAttribute(pki.AGENCY_CODE_OID, H41)])
    key = pki.generate_key(ec_key=True)
    now = datetime.now(UTC)
    cert = pki.issue_certificate(world.root_key, world.root_cert, twice, key.public_key(),
                                 not_before=now, not_after=now + timedelta(days=1))
    assert pki.agency_code_of(cert) is None


def test_days_sets_the_validity(tmp_path, world: World) -> None:
    _, cert = pki.issue_agency_certificate(world.root_key, world.root_cert, H41, "x", days=30,
                                           ec_key=True)
    assert timedelta(days=29) < cert.not_valid_after_utc - datetime.now(UTC) \
        < timedelta(days=31)


def test_ca_directory_layout_and_permissions(world: World) -> None:
    ca = pki.CaDir(world.ca_dir)
    for key in (ca.root_key, ca.agency_key(G22), ca.agency_key(H41), ca.hub_key):
        assert _mode(key) == 0o600, key
    for directory in (ca.root_key.parent, ca.agency_key(G22).parent, ca.hub_key.parent,
                      ca.crl_file.parent, ca.issued_dir):
        assert _mode(directory) == 0o700, directory
    assert pki.load_certificate(ca.root_cert) == world.root_cert
    assert pki.load_certificate(ca.agency_cert(G22)) == world.agencies[G22].cert
    issued = {p.name for p in ca.issued_dir.iterdir()}
    assert f"{pki.serial_hex(world.agencies[G22].cert.serial_number)}.pem" in issued
    assert f"{pki.serial_hex(world.revoked.cert.serial_number)}.pem" in issued
    assert not [p for p in ca.path.rglob(".*")]  # no temporary files left behind


def test_init_refuses_to_replace_a_root(world: World) -> None:
    with pytest.raises(pki.PkiError, match="already holds a root"):
        pki.init_ca(world.ca_dir)


def test_issue_refuses_to_overwrite_a_key(world: World) -> None:
    before = pki.CaDir(world.ca_dir).agency_key(H41).read_bytes()
    with pytest.raises(pki.PkiError, match="refusing to overwrite"):
        pki.issue_agency(world.ca_dir, H41, "again")
    assert pki.CaDir(world.ca_dir).agency_key(H41).read_bytes() == before


@pytest.mark.parametrize("code", ["../evil", "a/b", ".hidden", "", "x" * 36])
def test_issue_refuses_codes_that_are_not_file_names(world: World, code: str) -> None:
    with pytest.raises(pki.PkiError, match="not usable as an agency code"):
        pki.issue_agency(world.ca_dir, code, "x")


def test_operations_need_a_ca(tmp_path) -> None:
    with pytest.raises(pki.PkiError, match="not a CA directory"):
        pki.issue_agency(tmp_path, G22, "x")


def test_revocation_lists_the_serial_in_a_signed_crl(world: World) -> None:
    ca = pki.CaDir(world.ca_dir)
    crl = x509.load_pem_x509_crl(ca.crl_file.read_bytes())
    assert crl.is_signature_valid(world.root_cert.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(world.revoked.cert.serial_number)
    assert crl.get_revoked_certificate_by_serial_number(
        world.agencies[G22].cert.serial_number) is None
    state = json.loads(ca.revoked_file.read_text())
    assert [r["serial"] for r in state["revoked"]] == [
        pki.serial_hex(world.revoked.cert.serial_number)]


def test_revoke_refuses_unknown_and_repeated_serials(world: World) -> None:
    with pytest.raises(pki.PkiError, match="was not issued"):
        pki.revoke(world.ca_dir, 12345)
    with pytest.raises(pki.PkiError, match="already revoked"):
        pki.revoke(world.ca_dir, world.revoked.cert.serial_number)


def test_crl_numbers_increase_and_next_update_is_set(tmp_path) -> None:
    pki.init_ca(tmp_path / "ca", ec_key=True)
    ca = pki.CaDir(tmp_path / "ca")
    assert _mode(ca.path) == 0o700

    def number() -> int:
        crl = x509.load_pem_x509_crl(ca.crl_file.read_bytes())
        assert crl.next_update_utc > datetime.now(UTC) + timedelta(days=6)
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    first = number()
    pki.write_crl(ca.path)
    assert number() == first + 1
    issued = pki.issue_agency(ca.path, G22, "x")
    pki.revoke(ca.path, issued.certificate.serial_number)
    assert number() == first + 2


@pytest.mark.parametrize("text,expected", [
    ("0x1f", 31), ("31", 31), ("0X1F", 31), ("1f:2e", None), ("zz", None)])
def test_parse_serial(text: str, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(pki.PkiError):
            pki.parse_serial(text)
    else:
        assert pki.parse_serial(text) == expected
    assert pki.parse_serial(pki.serial_hex(2**150 + 7)) == 2**150 + 7
