"""The hub's receipt signatures (assembled directly, not through signxml) are standard
XML-DSig: signxml and xmlsec1 both verify them, and both refuse a changed receipt."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from signxml import XMLVerifier
from signxml.exceptions import InvalidSignature

from tests.conftest import require_service
from vdx.core.receipts import Receipt, parse_receipt, sign_receipt
from vdx.errors import SignatureError
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer


@pytest.fixture(scope="module", params=["ecdsa", "rsa"])
def hub_signer(request):
    key, root = pki.create_root(ec_key=True)
    hub_key, hub_cert = pki.issue_hub_certificate(key, root, "VDX hub",
                                                  ec_key=request.param == "ecdsa")
    return Signer(hub_key, hub_cert)


RECEIPTS = [
    Receipt.accepted("hub-1", "000.00.00.G22", "000.00.00.G22,2026/11/22,1/A", "a" * 64),
    Receipt.rejected("hub-1", "000.00.00.G22", "envelope.schema", "b" * 64,
                     detail="Subject: thiếu trường <Subject> & \"khác\""),
]


@pytest.mark.parametrize("receipt", RECEIPTS, ids=lambda r: r.kind)
def test_signxml_verifies_and_the_receipt_reads_back(hub_signer, receipt):
    signed = sign_receipt(receipt, hub_signer.sign_receipt)
    XMLVerifier().verify(signed, x509_cert=hub_signer.certificate)
    assert parse_receipt(signed) == receipt
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(signed.replace(b">hub-1<", b">hub-2<"),
                             x509_cert=hub_signer.certificate)


def test_xmlsec1_verifies_and_refuses_a_change(hub_signer, tmp_path):
    xmlsec1 = shutil.which("xmlsec1")
    if xmlsec1 is None:
        require_service("xmlsec1", "apt-get install xmlsec1")
    cert = tmp_path / "hub.pem"
    cert.write_bytes(hub_signer.certificate.public_bytes(Encoding.PEM))
    signed = sign_receipt(RECEIPTS[1], hub_signer.sign_receipt)
    good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
    good.write_bytes(signed)
    bad.write_bytes(signed.replace(b"envelope.schema", b"envelope.not_xml"))

    def verify(path):
        return subprocess.run([xmlsec1, "--verify", "--enabled-key-data", "x509",
                               "--pubkey-cert-pem", str(cert), str(path)],
                              capture_output=True).returncode

    assert verify(good) == 0
    assert verify(bad) != 0


def test_a_signed_receipt_is_not_signed_twice(hub_signer):
    signed = sign_receipt(RECEIPTS[0], hub_signer.sign_receipt)
    with pytest.raises(SignatureError) as raised:
        hub_signer.sign_receipt(signed)
    assert raised.value.code == "signature.multiple"
