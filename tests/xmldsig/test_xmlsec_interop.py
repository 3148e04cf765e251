"""Interoperability with the independent xmlsec1 tool, both ways.

Packages signed here must verify with ``xmlsec1 --verify --enabled-key-data x509
--pubkey-cert-pem CERT``; packages signed by ``xmlsec1 --sign`` from a template must
verify here (including the C14N 1.0 and RSA-SHA1 shape observed on the national axis).
xmlsec1 is the Debian package ``xmlsec1``; without it these tests skip, or fail under
``CI=true``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import require_service
from tests.support.sigkit import (
    C14N,
    DS,
    EXC_C14N,
    G22,
    H49,
    E,
    World,
    package,
    to_bytes,
    tree_of,
)
from vdx.errors import SignatureError
from vdx.xmldsig import pki
from vdx.xmldsig.verify import VerificationPolicy, Verifier

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"

pytest_plugins = ("tests.support.sigfixtures",)  # the PKI world and verifier fixtures


@pytest.fixture(scope="module")
def xmlsec1() -> str:
    path = shutil.which("xmlsec1")
    if path is None:
        require_service("xmlsec1", "install the Debian package xmlsec1 (apt-get install xmlsec1)")
    return path  # type: ignore[return-value]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _xmlsec_verify(xmlsec1: str, cert: Path, data: bytes, tmp_path: Path) -> bool:
    file = tmp_path / "signed.xml"
    file.write_bytes(data)
    result = _run(xmlsec1, "--verify", "--enabled-key-data", "x509", "--pubkey-cert-pem",
                  str(cert), str(file))
    return result.returncode == 0


@pytest.mark.parametrize("code,trace", [(G22, True), (G22, False), (H49, True)])
def test_xmlsec1_verifies_what_we_sign(xmlsec1: str, world: World, tmp_path: Path,
                                       code: str, trace: bool) -> None:
    cert = pki.CaDir(world.ca_dir).agency_cert(code)
    signed = world.agencies[code].signer.sign(package(code, trace=trace))
    assert _xmlsec_verify(xmlsec1, cert, signed, tmp_path)


def test_xmlsec1_refuses_what_we_signed_then_changed(xmlsec1: str, world: World,
                                                     tmp_path: Path) -> None:
    cert = pki.CaDir(world.ca_dir).agency_cert(G22)
    signed = world.agencies[G22].signer.sign(package())
    tampered = signed.replace("Về việc tổ chức".encode(), "Về việc hủy bỏ".encode())
    assert tampered != signed
    assert not _xmlsec_verify(xmlsec1, cert, tampered, tmp_path)


def _template(code: str, *, c14n: str, signature_method: str, digest_method: str) -> bytes:
    """An unsigned package with an empty ds:Signature where edXML places it."""
    tree = tree_of(package(code))
    header = tree.getroot().find(f"{E}edXMLEnvelope/{E}edXMLHeader")

    def sub(parent: etree._Element, name: str, **attrib: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{DS}}}{name}", attrib)

    signature = etree.SubElement(header, f"{{{DS}}}Signature", nsmap={"ds": DS})
    info = sub(signature, "SignedInfo")
    sub(info, "CanonicalizationMethod", Algorithm=c14n)
    sub(info, "SignatureMethod", Algorithm=signature_method)
    reference = sub(info, "Reference", URI="")
    transforms = sub(reference, "Transforms")
    sub(transforms, "Transform", Algorithm=ENVELOPED)
    sub(transforms, "Transform", Algorithm=c14n)
    sub(reference, "DigestMethod", Algorithm=digest_method)
    sub(reference, "DigestValue")
    sub(signature, "SignatureValue")
    sub(sub(signature, "KeyInfo"), "X509Data")
    return to_bytes(tree)


def _xmlsec_sign(xmlsec1: str, world: World, code: str, template: bytes,
                 tmp_path: Path) -> bytes:
    ca = pki.CaDir(world.ca_dir)
    source, out = tmp_path / "template.xml", tmp_path / "out.xml"
    source.write_bytes(template)
    result = _run(xmlsec1, "--sign", "--privkey-pem",
                  f"{ca.agency_key(code)},{ca.agency_cert(code)}", "--output", str(out),
                  str(source))
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


@pytest.mark.parametrize("code,c14n,method", [
    (G22, EXC_C14N, RSA_SHA256),
    (G22, C14N, RSA_SHA256),       # the canonicalization national packages use
    (H49, EXC_C14N, ECDSA_SHA256),
])
def test_we_verify_what_xmlsec1_signs(xmlsec1: str, world: World, verifier: Verifier,
                                      tmp_path: Path, code: str, c14n: str,
                                      method: str) -> None:
    signed = _xmlsec_sign(xmlsec1, world, code,
                          _template(code, c14n=c14n, signature_method=method,
                                    digest_method=SHA256), tmp_path)
    result = verifier.verify(signed, code, world.registered)
    assert result.certificate == world.agencies[code].cert
    assert result.signed_tree.getroot().find(f"{E}edXMLEnvelope/{E}edXMLHeader/"
                                             f"{{{DS}}}Signature") is None
    tampered = signed.replace("Về việc tổ chức".encode(), "Về việc hủy bỏ".encode())
    with pytest.raises(SignatureError) as err:
        verifier.verify(tampered, code, world.registered)
    assert err.value.code == "signature.digest_mismatch"


def test_xmlsec1_sha1_package_needs_a_legacy_permission(xmlsec1: str, world: World,
                                                        verifier: Verifier,
                                                        tmp_path: Path) -> None:
    """The shape seen on the national axis: C14N 1.0, RSA-SHA1, SHA-1 digest."""
    signed = _xmlsec_sign(xmlsec1, world, G22,
                          _template(G22, c14n=C14N, signature_method=RSA_SHA1,
                                    digest_method=SHA1), tmp_path)
    with pytest.raises(SignatureError) as err:
        verifier.verify(signed, G22, world.registered)
    assert err.value.code == "signature.weak_algorithm"
    legacy = Verifier(world.trust, VerificationPolicy(legacy_sha1_senders=frozenset({G22})))
    assert legacy.verify(signed, G22, world.registered).legacy_sha1
