"""The hub's direct receipt path (``receipts.signed_receipt``) and the cheaper ledger
append make what the round trip through bytes made: the same receipts (byte for byte
with a deterministic RSA signature), verified by signxml, xmlsec1 and the SDK, and the
same ledger entries."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from lxml import etree
from signxml import XMLVerifier
from signxml.exceptions import InvalidSignature

from tests.conftest import require_service
from tests.core.test_receipts import examples, receipts
from vdx.client.checks import verify_receipt
from vdx.core import ledger
from vdx.core.receipts import (
    Receipt,
    Rejection,
    _canonical_body,
    build_receipt,
    parse_receipt,
    receipt_from_tree,
    sign_receipt,
    signed_receipt,
)
from vdx.core.schema import DS_NS
from vdx.core.xmlsafe import parse_untrusted
from vdx.errors import SignatureError
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer

G22, H41 = "000.00.00.G22", "000.00.00.H41"
WHEN = datetime(2026, 11, 22, 3, 4, 5, 123456, tzinfo=UTC)
RID = "0b6f4a3e-8c1d-4d2e-9f00-1a2b3c4d5e6f"
SHA = hashlib.sha256(b"package").hexdigest()
_VALUE = re.compile(rb"<ds:SignatureValue>[^<]*</ds:SignatureValue>")


def _awkward() -> Receipt:
    """Every character C14N or lxml escape, a carriage return, Vietnamese and a
    character outside the BMP, in the fields a sender's bytes can reach."""
    text = "a&b <c> \"d\" 'e'\r\n\tf ]]> thiếu trường 𝄞 &amp; &#xD;"
    return Receipt("rejected", "hub&<1>", G22, SHA, document_id=text,
                   rejection=Rejection("envelope.schema", "thiếu <Subject>", "missing & bad",
                                       text, 12, "/edXML/" + text),
                   receipt_id=RID, issued_at=WHEN)


def _cases() -> dict[str, Receipt]:
    return {**examples(), "awkward": _awkward()}


@pytest.fixture(scope="module")
def ca():
    return pki.create_root(ec_key=True)


@pytest.fixture(scope="module", params=["ecdsa", "rsa"])
def hub(request, ca) -> Signer:
    """The hub's signer, its certificate followed by the root (a chain in KeyInfo)."""
    ca_key, ca_cert = ca
    key, cert = pki.issue_hub_certificate(ca_key, ca_cert, "VDX hub",
                                          ec_key=request.param == "ecdsa")
    return Signer(key, cert, [ca_cert])


@pytest.fixture(scope="module")
def rsa_hub(ca) -> Signer:
    ca_key, ca_cert = ca
    return Signer(*pki.issue_hub_certificate(ca_key, ca_cert, "VDX hub"), [ca_cert])


def reference_sign(data: bytes, signer: Signer) -> bytes:
    """What ``Signer.sign_receipt`` did before the fast path, step by step (kept here as
    the reference): parse, digest the exclusive C14N, assemble ``ds:Signature`` element
    by element, canonicalise ``SignedInfo`` in place, sign, write."""
    root = parse_untrusted(data).getroot()
    key = signer.key

    def ds(parent, name, **attrs):
        tag = f"{{{DS_NS}}}{name}"
        if parent is None:
            return etree.Element(tag, attrs, nsmap={"ds": DS_NS})
        return etree.SubElement(parent, tag, attrs)

    exc = "http://www.w3.org/2001/10/xml-exc-c14n#"
    digest = hashlib.sha256(etree.tostring(root, method="c14n", exclusive=True)).digest()
    is_ec = isinstance(key, ec.EllipticCurvePrivateKey)
    signature = ds(None, "Signature")
    info = ds(signature, "SignedInfo")
    ds(info, "CanonicalizationMethod", Algorithm=exc)
    ds(info, "SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#"
       + ("ecdsa-sha256" if is_ec else "rsa-sha256"))
    reference = ds(info, "Reference", URI="")
    transforms = ds(reference, "Transforms")
    ds(transforms, "Transform", Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature")
    ds(transforms, "Transform", Algorithm=exc)
    ds(reference, "DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    ds(reference, "DigestValue").text = base64.b64encode(digest).decode()
    root.append(signature)
    signed_info = etree.tostring(info, method="c14n", exclusive=True)
    root.remove(signature)
    if is_ec:
        r, s = decode_dss_signature(key.sign(signed_info, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        value = key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
    ds(signature, "SignatureValue").text = base64.b64encode(value).decode()
    x509_data = ds(ds(signature, "KeyInfo"), "X509Data")
    for cert in signer._certs:
        ds(x509_data, "X509Certificate").text = base64.b64encode(
            cert.public_bytes(Encoding.DER)).decode()
    root.append(signature)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _masked(signed: bytes) -> bytes:
    """``signed`` without its signature value (ECDSA signatures are randomised)."""
    return _VALUE.sub(b"<ds:SignatureValue/>", signed)


# ------------------------------------------------------------------- receipts

@pytest.mark.parametrize("name", list(_cases()))
def test_fast_path_verifies_with_signxml_and_reads_back(hub, name):
    r = _cases()[name]
    signed = signed_receipt(r, hub)
    verified = XMLVerifier().verify(signed, x509_cert=hub.certificate)
    assert receipt_from_tree(verified.signed_xml) == r
    assert parse_receipt(signed) == r  # hardened parse and schema, then the same fields
    root = etree.fromstring(signed)
    assert root[-1].tag == f"{{{DS_NS}}}Signature"
    assert len(root.findall(f".//{{{DS_NS}}}X509Certificate")) == 2  # certificate + chain


@pytest.mark.parametrize("name", list(_cases()))
def test_fast_path_is_what_the_round_trip_made(hub, name):
    r = _cases()[name]
    fast = signed_receipt(r, hub)
    before = reference_sign(build_receipt(r), hub)
    if hub.algorithm.name.startswith("RSA"):
        assert fast == before  # PKCS#1 v1.5 is deterministic: the very same bytes
    else:
        assert _masked(fast) == _masked(before)
    # The hub's bound signer takes the fast path; the bytes path still makes the same.
    assert _masked(sign_receipt(r, hub.sign_receipt)) == _masked(fast)
    assert _masked(hub.sign_receipt(build_receipt(r))) == _masked(fast)
    assert _masked(sign_receipt(r, lambda data: hub.sign_receipt(data))) == _masked(fast)


def test_the_direct_path_never_round_trips(hub, monkeypatch):
    """signed_receipt (the hub's make_receipt) never builds, parses or checks bytes."""
    import vdx.core.receipts

    def no_round_trip(*_args, **_kwargs):
        raise AssertionError("the round trip through bytes was taken")

    monkeypatch.setattr(vdx.core.receipts, "build_receipt", no_round_trip)
    monkeypatch.setattr(vdx.core.receipts, "load_receipt_tree", no_round_trip)
    r = examples()["accepted"]
    XMLVerifier().verify(signed_receipt(r, hub), x509_cert=hub.certificate)
    with pytest.raises(AssertionError, match="round trip"):  # sign_receipt: checked
        sign_receipt(r, hub.sign_receipt)


def test_fast_path_verifies_with_the_sdk(hub):
    for r in _cases().values():
        assert verify_receipt(signed_receipt(r, hub), hub.certificate) == r


def test_a_changed_fast_path_receipt_does_not_verify(hub):
    signed = signed_receipt(examples()["delivered"], hub)
    changed = signed.replace(H41.encode(), b"000.00.00.H49")
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(changed, x509_cert=hub.certificate)
    with pytest.raises(SignatureError):
        verify_receipt(changed, hub.certificate)


def test_xmlsec1_verifies_the_fast_path_and_refuses_a_change(hub, tmp_path):
    xmlsec1 = shutil.which("xmlsec1")
    if xmlsec1 is None:
        require_service("xmlsec1", "apt-get install xmlsec1")
    cert = tmp_path / "hub.pem"
    cert.write_bytes(hub.certificate.public_bytes(Encoding.PEM))

    def verify(data: bytes) -> int:
        path = tmp_path / "receipt.xml"
        path.write_bytes(data)
        return subprocess.run([xmlsec1, "--verify", "--enabled-key-data", "x509",
                               "--pubkey-cert-pem", str(cert), str(path)],
                              capture_output=True).returncode

    for r in _cases().values():
        signed = signed_receipt(r, hub)
        assert verify(signed) == 0, r.kind
        assert verify(signed.replace(b"hub", b"hux", 1)) != 0


def test_the_fast_path_still_refuses_nothing_a_receipt_allows(hub):
    """A signed receipt given back to the bytes path is refused as already signed."""
    with pytest.raises(SignatureError) as raised:
        hub.sign_receipt(signed_receipt(examples()["accepted"], hub))
    assert raised.value.code == "signature.multiple"


@settings(max_examples=300, deadline=None)
@given(receipts())
def test_canonical_writer_matches_lxml_for_any_receipt(r):
    """The direct writer is libxml2's exclusive C14N of build_receipt's tree, exactly."""
    unsigned = build_receipt(r)
    canonical = etree.tostring(etree.fromstring(unsigned), method="c14n", exclusive=True)
    assert _canonical_body(r).encode() + b"</Receipt>" == canonical


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=receipts())
def test_fast_path_is_byte_identical_for_any_receipt(rsa_hub, r):
    signed = signed_receipt(r, rsa_hub)
    assert signed == reference_sign(build_receipt(r), rsa_hub)
    assert parse_receipt(signed) == r


# ------------------------------------------------------------------- ledger

def _entries(sign):
    first = ledger.next_entry(
        None, kind="accepted", document_id="000.00.00.G22,2026/11/22,7816/VPCP-TTĐT",
        sender=G22, receipt_id=RID, receipt_sha256="a" * 64, created_at=WHEN, sign=sign)
    second = ledger.next_entry(
        first, kind="delivered", document_id='x"\\é𝄞', sender=G22, recipient=H41,
        created_at="2026-11-22T03:04:06Z", sign=sign)
    return first, second


def test_ledger_entries_hash_as_before():
    """Hashes written by the code before this change (a ledger already in a database
    must keep verifying, and new entries must chain onto it the same way)."""
    seen = []
    first, second = _entries(lambda data: seen.append(data) or b"sig:" + data)
    assert first.entry_hash == "5741e3696260b425fab232d599c7adab18915d10f1b4f25347e5d88b6b010531"
    assert second.entry_hash == "641944908e1a360f98af3fd354dcbcbe1e47ec7c9c495e89a80d7e76d1e07aa1"
    assert second.prev_hash == first.entry_hash
    assert seen == [ledger.signing_input(first.entry_hash),
                    ledger.signing_input(second.entry_hash)]
    assert second.hub_signature == b"sig:" + seen[1]
    for entry in (first, second):
        assert ledger.compute_hash(entry) == entry.entry_hash
        assert ledger.entry_content(
            entry.seq, entry.kind, entry.document_id, entry.sender, entry.recipient,
            entry.receipt_id, entry.receipt_sha256, entry.created_at, entry.prev_hash,
        ) == json.dumps([ledger.HASH_DOMAIN, entry.seq, entry.kind, entry.document_id,
                         entry.sender, entry.recipient, entry.receipt_id,
                         entry.receipt_sha256, entry.created_at, entry.prev_hash],
                        ensure_ascii=True, separators=(",", ":")).encode("ascii")


def test_ledger_signed_by_the_hub_key_verifies(hub):
    entries = _entries(ledger.make_hash_signer(hub.key))
    verify = ledger.make_hash_verifier(hub.certificate)
    assert ledger.verify_chain(entries, verify) == []
    for entry in entries:
        assert verify(ledger.signing_input(entry.entry_hash), entry.hub_signature)
