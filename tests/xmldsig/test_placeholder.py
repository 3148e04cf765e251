"""Placeholder signatures: the verifier's verdicts, and signing in their place."""

from __future__ import annotations

import pytest
from lxml import etree

import vdx
from tests.support import TESTS
from tests.support.sigkit import DS, G22, E, World, package, tree_of
from vdx.core.quirks import placeholder_signatures
from vdx.errors import SignatureError
from vdx.xmldsig.verify import Verifier

pytest_plugins = ("tests.support.sigfixtures",)  # the PKI world and verifier fixtures

QUIRKS = TESTS / "corpus" / "quirks"
PLACEHOLDER_TEXT = "\n      <Signature>"


def _header(root: etree._Element) -> etree._Element:
    return root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")


def _c14n(data: bytes) -> bytes:
    return etree.tostring(etree.fromstring(data), method="c14n")


def _textually_removed(data: bytes) -> bytes:
    """The placeholder cut out of the text with the indentation before it, by hand."""
    text = data.decode()
    start = text.index(PLACEHOLDER_TEXT)
    end = text.index("</Signature>", start) + len("</Signature>")
    return (text[:start] + text[end:]).encode()


def _signature_taken_out(signed: bytes) -> bytes:
    """The canonical form of ``signed`` without its ``ds:Signature`` and the indentation
    that led to it: the package the signer was given, less what the signer removed."""
    root = etree.fromstring(signed)
    (signature,) = root.iter(f"{{{DS}}}Signature")
    signature.getprevious().tail = signature.tail
    signature.getparent().remove(signature)
    return etree.tostring(root, method="c14n")


@pytest.mark.parametrize("name", ["placeholder_signature.xml",
                                  "status_as_edxml102_writes_it.xml", "live_traffic.xml"])
def test_signing_takes_out_exactly_the_placeholder(world: World, name):
    data = (QUIRKS / name).read_bytes()
    signed = world.agencies[G22].signer.sign(data)  # any key: what is removed is the point
    assert _signature_taken_out(signed) == _c14n(_textually_removed(data))
    assert placeholder_signatures(etree.fromstring(signed)) == []
    assert vdx.parse(signed) == vdx.parse(data)  # the values are untouched
    assert "quirk.placeholder_signature" not in {w.code for w in vdx.check(signed).warnings}


def test_signing_a_package_without_placeholder_removes_nothing(world: World):
    data = (QUIRKS / "no_signature.xml").read_bytes()
    signed = world.agencies[G22].signer.sign(data)
    assert _signature_taken_out(signed) == _c14n(data)


def test_a_placeholder_beside_a_real_signature_is_not_signed_over(world: World):
    """It was signed with the package: taking it out would break the signature."""
    signed = tree_of(world.agencies[G22].signer.sign(package()))
    etree.SubElement(_header(signed.getroot()), f"{E}Signature")
    with pytest.raises(SignatureError) as raised:
        world.agencies[G22].signer.sign(etree.tostring(signed))
    assert raised.value.code == "signature.multiple"


def test_only_the_placeholder_at_the_signatures_place_is_removed(world: World):
    root = etree.fromstring((QUIRKS / "no_signature.xml").read_bytes())
    message = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader")
    etree.SubElement(message, f"{E}Signature")  # not where a signature goes
    data = etree.tostring(root)
    signed = world.agencies[G22].signer.sign(data)
    assert _signature_taken_out(signed) == _c14n(data)  # the stray element is kept


def test_two_placeholders_are_refused(world: World):
    root = etree.fromstring((QUIRKS / "placeholder_signature.xml").read_bytes())
    etree.SubElement(_header(root), f"{E}Signature")
    data = etree.tostring(root)
    assert [p.code for p in vdx.check(data).problems] == ["envelope.schema"]
    with pytest.raises(SignatureError) as raised:
        world.agencies[G22].signer.sign(data)
    assert raised.value.code == "signature.multiple"


@pytest.mark.parametrize("name", ["placeholder_signature.xml", "status_as_edxml102_writes_it.xml"])
def test_the_signer_signs_in_the_placeholders_place(world: World, verifier: Verifier, name):
    data = (QUIRKS / name).read_bytes()
    sender = vdx.parse(data).sender.organ_id
    signed = world.agencies[sender].signer.sign(data)
    header = _header(tree_of(signed).getroot())
    assert [etree.QName(c).localname for c in header if isinstance(c.tag, str)] == [
        "MessageHeader", "TraceHeaderList", "Signature"]
    assert header[-1].tag == f"{{{DS}}}Signature"
    assert vdx.check(signed).valid
    verified = verifier.verify(signed, sender, world.registered)
    assert vdx.core.envelope.from_tree(verified.signed_tree) == vdx.parse(data)


def test_the_verifier_names_a_placeholder(world: World, verifier: Verifier):
    data = (QUIRKS / "placeholder_signature.xml").read_bytes()
    with pytest.raises(SignatureError) as raised:
        verifier.verify(data, G22, world.registered)
    assert raised.value.code == "signature.placeholder"
    assert raised.value.path.endswith("/edXMLHeader/Signature")
    assert "gateway" in raised.value.message


def test_a_placeholder_beside_a_signature_is_refused_as_two(world: World, verifier: Verifier):
    signed = tree_of(world.agencies[G22].signer.sign(package()))
    etree.SubElement(_header(signed.getroot()), f"{E}Signature")
    data = etree.tostring(signed)
    assert vdx.check(data).valid  # structurally a package, with a warning
    assert "quirk.placeholder_signature" in {w.code for w in vdx.check(data).warnings}
    with pytest.raises(SignatureError) as raised:
        verifier.verify(data, G22, world.registered)
    assert raised.value.code == "signature.multiple"
    assert "placeholder" in raised.value.message


def test_unsigned_is_still_missing(world: World, verifier: Verifier):
    with pytest.raises(SignatureError) as raised:
        verifier.verify((QUIRKS / "no_signature.xml").read_bytes(), G22, world.registered)
    assert raised.value.code == "signature.missing"
