"""Signing: placement, algorithms, schema validity, and keys loaded once."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

import vdx
from tests.support.sigkit import (
    DS,
    EXC_C14N,
    G22,
    H49,
    NS,
    E,
    World,
    package,
    signature_of,
    tree_of,
)
from vdx.errors import EnvelopeError, SignatureError
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer
from vdx.xmldsig.verify import Verifier

pytest_plugins = ("tests.support.sigfixtures",)  # the PKI world and verifier fixtures


def _header_tags(signed: bytes) -> list[str]:
    header = tree_of(signed).getroot().find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    return [etree.QName(c).localname for c in header if isinstance(c.tag, str)]


@pytest.mark.parametrize("trace,expected", [
    (True, ["MessageHeader", "TraceHeaderList", "Signature"]),
    (False, ["MessageHeader", "Signature"]),
])
def test_signature_goes_right_after_trace_or_message_header(world: World, trace: bool,
                                                            expected: list[str]) -> None:
    signed = world.agencies[G22].signer.sign(package(trace=trace))
    assert _header_tags(signed) == expected
    assert vdx.check(signed).valid, vdx.check(signed).problems


def test_rsa_signature_shape(world: World) -> None:
    agency = world.agencies[G22]
    signature = signature_of(tree_of(agency.signer.sign(package())))

    def alg(path: str) -> list[str]:
        return signature.xpath(f"{path}/@Algorithm", namespaces=NS)

    assert alg("ds:SignedInfo/ds:CanonicalizationMethod") == [EXC_C14N]
    assert alg("ds:SignedInfo/ds:SignatureMethod") == [
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert signature.xpath("ds:SignedInfo/ds:Reference/@URI", namespaces=NS) == [""]
    assert alg("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform") == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature", EXC_C14N]
    assert alg("ds:SignedInfo/ds:Reference/ds:DigestMethod") == [
        "http://www.w3.org/2001/04/xmlenc#sha256"]
    certs = signature.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()", namespaces=NS)
    assert [base64.b64decode(c) for c in certs] == [agency.cert.public_bytes(Encoding.DER)]
    assert signature.find(f"{{{DS}}}KeyInfo/{{{DS}}}KeyValue") is None  # no ambiguous key


def test_ecdsa_key_signs_with_ecdsa_sha256(world: World, verifier: Verifier) -> None:
    signed = world.agencies[H49].signer.sign(package(H49))
    algorithm = signature_of(tree_of(signed)).xpath(
        "ds:SignedInfo/ds:SignatureMethod/@Algorithm", namespaces=NS)
    assert algorithm == ["http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"]
    assert verifier.verify(signed, H49, world.registered).signature_algorithm == "ecdsa-sha256"


def test_signed_package_parses_to_the_same_values(world: World) -> None:
    unsigned = package()
    assert vdx.parse(world.agencies[G22].signer.sign(unsigned)) == vdx.parse(unsigned)


def test_signer_signs_many_packages_without_reloading_its_key(
        world: World, verifier: Verifier, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = pki.CaDir(world.ca_dir)
    signer = Signer.from_files(ca.agency_key(G22), ca.agency_cert(G22))

    def no_loading(*args, **kwargs):
        raise AssertionError("a key was loaded while signing")

    monkeypatch.setattr("signxml.signer.load_pem_private_key", no_loading)
    monkeypatch.setattr("vdx.xmldsig.pki.load_private_key", no_loading)
    for subject in ("một", "hai", "ba"):
        signed = signer.sign(package(subject=subject))
        assert verifier.verify(signed, G22, world.registered).sender_code == G22


def test_from_files_takes_the_rest_of_the_pem_as_chain(world: World, tmp_path) -> None:
    ca = pki.CaDir(world.ca_dir)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.agency_cert(G22).read_bytes() + ca.root_cert.read_bytes())
    signed = Signer.from_files(ca.agency_key(G22), bundle).sign(package())
    certs = signature_of(tree_of(signed)).xpath(
        "ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    assert len(certs) == 2


def test_key_must_match_certificate(world: World) -> None:
    with pytest.raises(ValueError, match="does not belong"):
        Signer(world.agencies[G22].key, world.agencies[H49].cert)


def test_refuses_to_sign_twice(world: World) -> None:
    signer = world.agencies[G22].signer
    with pytest.raises(SignatureError) as err:
        signer.sign(signer.sign(package()))
    assert err.value.code == "signature.multiple"


@pytest.mark.parametrize("data,code", [
    (b"", "envelope.empty"),
    (b"<x/>", "envelope.wrong_root"),
    (b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>', "envelope.dtd_forbidden"),
    (f'<edXML xmlns="{vdx.core.xmlsafe.EDXML_NS}"/>'.encode(), "envelope.schema"),
])
def test_refuses_what_is_not_a_package(world: World, data: bytes, code: str) -> None:
    with pytest.raises(EnvelopeError) as err:
        world.agencies[G22].signer.sign(data)
    assert err.value.code == code


def test_signer_copies_documents_as_signxml_would(world: World) -> None:
    """The deep copy that replaces signxml's serialise-and-parse yields the same bytes."""
    from signxml import XMLSigner

    from vdx.xmldsig.sign import _Signer

    root = tree_of(package()).getroot()
    ours = _Signer(world.agencies[G22].signer.algorithm).get_root(root)
    theirs = XMLSigner().get_root(root)
    assert ours is not root and ours.getparent() is None
    for exclusive in (True, False):
        assert etree.tostring(ours, method="c14n", exclusive=exclusive) == \
            etree.tostring(theirs, method="c14n", exclusive=exclusive)
