"""Hub receipts: schema in both validators, round trip, constructors, signing."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import xmlschema
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml import XMLSigner, XMLVerifier
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from vdx.core import ledger, schema
from vdx.core.model import STATUS_CODES
from vdx.core.receipts import (
    KINDS,
    RECEIPT_NS,
    Receipt,
    Rejection,
    answer_id,
    answers,
    build_receipt,
    format_utc,
    parse_receipt,
    parse_utc,
    receipt_from_tree,
    sign_receipt,
)
from vdx.errors import CATALOGUE, EnvelopeError, RoutingError, VdxError

SHA = hashlib.sha256(b"package").hexdigest()
WHEN = datetime(2026, 11, 22, 3, 4, 5, 123456, tzinfo=UTC)
RID = "0b6f4a3e-8c1d-4d2e-9f00-1a2b3c4d5e6f"
DID = "5e2c8f10-7a6b-4c3d-8e9f-0a1b2c3d4e5f"
G22, H41 = "000.00.00.G22", "000.00.00.H41"
DOC = "000.00.00.G22,2026/11/22,7816/VPCP-TTĐT"


def examples() -> dict[str, Receipt]:
    common = {"receipt_id": RID, "issued_at": WHEN}
    return {
        "accepted": Receipt.accepted("hub-1", G22, DOC, SHA, **common),
        "accepted_status": Receipt.accepted("hub-1", H41, DOC, SHA, status_code="03", **common),
        "rejected": Receipt.rejected(
            "hub-1", G22, EnvelopeError("envelope.schema", "Subject: missing", line=12,
                                        path="/edXML/edXMLEnvelope"), SHA, **common),
        "rejected_code": Receipt.rejected("hub-1", G22, "routing.unknown_recipient", SHA,
                                          detail="000.00.00.H99 is not registered",
                                          document_id=DOC, **common),
        "delivered": Receipt.delivered("hub-1", G22, DOC, H41, DID, SHA, **common),
        "duplicate": Receipt.duplicate("hub-1", G22, DOC, SHA, recipient=H41,
                                       delivery_id=DID, **common),
        "status": Receipt.status_relayed("hub-1", G22, DOC, H41, "06", SHA, **common),
    }


@pytest.fixture(scope="module")
def xsd():
    return xmlschema.XMLSchema10(str(schema.schema_path("receipt.xsd")))


# ------------------------------------------------------------------- schema

def test_schema_loads_in_both_validators_and_imports_xmldsig(xsd):
    assert xsd.target_namespace == RECEIPT_NS
    assert list(xsd.elements) == ["Receipt"]
    assert "{http://www.w3.org/2000/09/xmldsig#}Signature" in xsd.maps.elements
    etree.XMLSchema(etree.parse(str(schema.schema_path("receipt.xsd"))))


@pytest.mark.parametrize("name", list(examples()))
def test_examples_are_valid_in_both_validators_and_round_trip(xsd, name):
    r = examples()[name]
    data = build_receipt(r)
    tree = etree.fromstring(data).getroottree()
    assert schema.is_valid(tree, "receipt.xsd")
    assert xsd.is_valid(tree)
    assert parse_receipt(data) == r


def _mutate(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


_D = build_receipt(examples()["delivered"])
_R = build_receipt(examples()["rejected"])
INVALID = {
    "delivered_without_recipient": _mutate(_D, f"<Recipient>{H41}</Recipient>".encode(), b""),
    "bad_uuid": _mutate(_D, RID.encode(), RID.upper().encode()),
    "uppercase_sha": _mutate(_D, SHA.encode(), SHA.upper().encode()),
    "local_time": _mutate(_D, b"123456Z", b"123456+07:00"),
    "seven_digit_fraction": _mutate(_D, b"123456Z", b"1234567Z"),
    "status_code_99": _mutate(build_receipt(examples()["status"]), b">06<", b">99<"),
    "two_kinds": _mutate(_D, b"</Delivered>", b"</Delivered><Accepted><DocumentId>x</DocumentId>"
                                              b"</Accepted>"),
    "no_kind": _mutate(_D, b"<Delivered>", b"<Ignored>").replace(b"</Delivered>", b"</Ignored>"),
    "code_with_space": _mutate(_D, G22.encode(), b"000.00 .G22"),
    "blank_document_id": _mutate(_D, DOC.encode(), b"   "),
    "error_code_uppercase": _mutate(_R, b"envelope.schema", b"Envelope.Schema"),
    "line_zero": _mutate(_R, b"<Line>12</Line>", b"<Line>0</Line>"),
    "rejected_without_english": _mutate(_R, b"<MessageEn>", b"<Detail>").replace(
        b"</MessageEn>", b"</Detail>"),
    "signature_not_last": _mutate(
        _D, b"<HubId>",
        b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/><HubId>'),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_receipts_are_refused_by_both_validators(xsd, name):
    tree = etree.fromstring(INVALID[name]).getroottree()
    assert not schema.is_valid(tree, "receipt.xsd")
    assert not xsd.is_valid(tree)
    with pytest.raises(EnvelopeError) as caught:
        parse_receipt(INVALID[name])
    assert caught.value.code == "envelope.bad_receipt"


def test_schema_error_names_the_element_without_the_namespace():
    with pytest.raises(EnvelopeError) as caught:
        parse_receipt(INVALID["delivered_without_recipient"])
    err = caught.value
    assert err.path == "/Receipt/Delivered/DeliveryId"
    assert "expected Recipient" in err.message and RECEIPT_NS not in err.message


# ------------------------------------------------------------------- hostile input

@pytest.mark.parametrize("data, code", [
    (b"", "envelope.empty"),
    (b"<Receipt", "envelope.not_xml"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><Receipt/>', "envelope.dtd_forbidden"),
    (b"<edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'/>", "envelope.bad_receipt"),
    (b"<Receipt/>", "envelope.bad_receipt"),  # right name, no namespace
    (_mutate(_D, DOC.encode(), b"000.00.00.G22<!-- -->,2026/11/22"), "envelope.bad_receipt"),
    (_mutate(_D, b"<HubId>", b"<?pi x?><HubId>"), "envelope.bad_receipt"),
    (b"<a>" * 40 + b"</a>" * 40, "envelope.too_deep"),
])
def test_hostile_bytes_get_a_named_error(data, code):
    with pytest.raises(EnvelopeError) as caught:
        parse_receipt(data)
    assert caught.value.code == code


def test_a_comment_cannot_truncate_a_value():
    # The classic XML-DSig comment attack: "A<!---->B" is "AB" to the signature and the
    # schema but "A" to a naive reader. Receipts refuse comments inside the root.
    with pytest.raises(EnvelopeError, match="comments"):
        parse_receipt(_mutate(_D, f"<Recipient>{H41}".encode(),
                              b"<Recipient>000.00.00.H4<!---->1"))


# ------------------------------------------------------------------- values

def test_rejection_of_an_error_carries_both_summaries_and_the_detail():
    error = RoutingError("routing.sender_mismatch", "published by 000.00.00.H41", path="/x")
    j = Rejection.of(error)
    spec = CATALOGUE["routing.sender_mismatch"]
    assert (j.code, j.message_vi, j.message_en) == (error.code, spec.vi, spec.en)
    assert (j.detail, j.line, j.path) == ("published by 000.00.00.H41", None, "/x")


def test_rejection_drops_a_detail_that_repeats_the_summary():
    assert Rejection.of(EnvelopeError("envelope.empty")).detail is None


def test_rejection_cleans_and_bounds_any_detail():
    j = Rejection.of("envelope.not_xml", "bad \x00 byte\ud800" + "x" * 10_000)
    assert j.detail.startswith("bad \ufffd byte\ufffd") and len(j.detail) == 4096
    assert parse_receipt(build_receipt(Receipt.rejected("h", G22, "envelope.not_xml", SHA,
                                                        detail=j.detail))).rejection == j


def test_rejection_needs_a_catalogued_code():
    with pytest.raises(ValueError, match="catalogue"):
        Rejection.of("envelope.no_such_thing")


@pytest.mark.parametrize("kind, facts, message", [
    ("delivered", {"document_id": DOC, "recipient": H41}, "needs delivery_id"),
    ("status", {"document_id": DOC, "recipient": H41}, "needs status_code"),
    ("rejected", {"document_id": DOC}, "needs rejection"),
    ("accepted", {"document_id": DOC, "recipient": H41}, "cannot carry recipient"),
    ("rejected", {"rejection": Rejection.of("envelope.empty"), "status_code": "01"},
     "cannot carry status_code"),
    ("filed", {"document_id": DOC}, "kind must be one of"),
])
def test_receipt_refuses_facts_its_kind_does_not_have(kind, facts, message):
    with pytest.raises(ValueError, match=message):
        Receipt(kind, "hub-1", G22, SHA, **facts)


@pytest.mark.parametrize("field, value", [
    ("receipt_id", RID.upper()), ("hub_id", "hub 1"), ("sender", ""), ("sender", "000.00.00.Н41"),
    ("package_sha256", "ab"),
    ("issued_at", datetime(2026, 1, 1)), ("document_id", " \t"), ("document_id", "a\x01"),
    ("status_code", "07"),
])
def test_receipt_checks_what_the_schema_checks(field, value):
    facts = {"document_id": DOC, "receipt_id": RID, "issued_at": WHEN} | {field: value}
    with pytest.raises(ValueError):
        Receipt("accepted", facts.pop("hub_id", "hub-1"), facts.pop("sender", G22),
                facts.pop("package_sha256", SHA), **facts)


def test_issued_at_is_kept_in_utc():
    local = WHEN.astimezone(timezone(timedelta(hours=7)))
    r = Receipt.accepted("hub-1", G22, DOC, SHA, issued_at=local)
    assert r.issued_at.tzinfo is UTC and r.issued_at == WHEN
    assert b"<IssuedAt>2026-11-22T03:04:05.123456Z</IssuedAt>" in build_receipt(r)


def test_constructors_fill_in_a_fresh_id_and_the_time():
    a, b = Receipt.accepted("hub-1", G22, DOC, SHA), Receipt.accepted("hub-1", G22, DOC, SHA)
    assert a.receipt_id != b.receipt_id
    assert abs(a.issued_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert a.kind in KINDS and a.addressee == G22 and a.error_code is None
    assert examples()["rejected"].error_code == "envelope.schema"


@pytest.mark.parametrize("text", ["2026-11-22T03:04:05Z", "0001-01-01T00:00:00Z",
                                  "2026-11-22T03:04:05.000001Z"])
def test_utc_format_round_trips(text):
    assert format_utc(parse_utc(text)) == text


# ------------------------------------------------------------------- property

_xml_char = st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: c in "\t\n\r" or ("\x20" <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd")
    or c >= "\U00010000")
_codes = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
_texts = st.text(_xml_char, min_size=1, max_size=80).filter(lambda s: s.strip(" \t\n\r"))
_uuids = st.uuids().map(str)
_shas = st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())
_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                      timezones=st.just(UTC))
_rejections = st.builds(
    Rejection, code=st.sampled_from(sorted(CATALOGUE)), message_vi=_texts, message_en=_texts,
    detail=st.none() | _texts, line=st.none() | st.integers(1, 10**12),
    path=st.none() | _texts)
_status = st.sampled_from(STATUS_CODES)


@st.composite
def receipts(draw) -> Receipt:
    kind = draw(st.sampled_from(KINDS))
    maybe = lambda s: draw(st.none() | s)  # noqa: E731
    facts = {
        "accepted": lambda: {"document_id": draw(_texts), "status_code": maybe(_status)},
        "rejected": lambda: {"document_id": maybe(_texts), "rejection": draw(_rejections)},
        "delivered": lambda: {"document_id": draw(_texts), "recipient": draw(_codes),
                              "delivery_id": draw(_uuids), "status_code": maybe(_status)},
        "duplicate": lambda: {"document_id": draw(_texts), "recipient": maybe(_codes),
                              "delivery_id": maybe(_uuids), "status_code": maybe(_status)},
        "status": lambda: {"document_id": draw(_texts), "recipient": draw(_codes),
                           "delivery_id": maybe(_uuids), "status_code": draw(_status)},
    }[kind]()
    return Receipt(kind, draw(_codes), draw(_codes), draw(_shas), **facts,
                   receipt_id=draw(_uuids), issued_at=draw(_times))


@settings(max_examples=300, deadline=None)
@given(receipts())
def test_parse_of_build_is_identity(r):
    assert parse_receipt(build_receipt(r)) == r


@settings(max_examples=60, deadline=None)
@given(receipts())
def test_both_validators_accept_every_built_receipt(xsd, r):
    tree = etree.fromstring(build_receipt(r)).getroottree()
    assert schema.is_valid(tree, "receipt.xsd")
    assert xsd.is_valid(tree)


# ------------------------------------------------------------------- signing

@pytest.fixture(scope="module")
def hub_key():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "VDX TEST hub")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert


def _enveloped_signer(key, cert):
    """What the hub's signer does for receipts (the settings of vdx.xmldsig.sign): signxml
    appends the enveloped signature as the last child of the root when no placeholder
    says otherwise."""
    def sign(data: bytes) -> bytes:
        root = etree.fromstring(data)
        signed = XMLSigner(
            signature_algorithm=SignatureMethod.ECDSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        ).sign(root, key=key, cert=[cert])
        return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return sign


@pytest.mark.parametrize("name", list(examples()))
def test_signed_receipt_is_valid_verifies_and_reads_back(hub_key, xsd, name):
    key, cert = hub_key
    r = examples()[name]
    signed = sign_receipt(r, _enveloped_signer(key, cert))
    tree = etree.fromstring(signed).getroottree()
    assert xsd.is_valid(tree)
    assert etree.QName(tree.getroot()[-1]).localname == "Signature"
    verified = XMLVerifier().verify(signed, x509_cert=cert)
    assert receipt_from_tree(verified.signed_xml) == r
    assert parse_receipt(signed) == r


def test_sign_receipt_refuses_a_signer_that_misbehaves(hub_key):
    key, cert = hub_key
    r = examples()["delivered"]
    good = _enveloped_signer(key, cert)
    with pytest.raises(ValueError, match="did not append"):
        sign_receipt(r, lambda data: data)
    with pytest.raises(ValueError, match="changed"):
        sign_receipt(r, lambda data: good(data.replace(H41.encode(), b"000.00.00.H49")))
    with pytest.raises(VdxError):
        sign_receipt(r, lambda data: b"<not-a-receipt/>")


def test_ledger_fields_describe_the_signed_receipt(hub_key):
    key, cert = hub_key
    r = examples()["delivered"]
    signed = sign_receipt(r, _enveloped_signer(key, cert))
    fields = r.ledger_fields(signed)
    assert fields["receipt_sha256"] == hashlib.sha256(signed).hexdigest()
    entry = ledger.next_entry(None, sign=ledger.make_hash_signer(key), **fields)
    assert (entry.kind, entry.receipt_id, entry.recipient) == ("delivered", RID, H41)
    assert entry.created_at == format_utc(WHEN)


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed")
def test_a_third_party_verifies_a_signed_receipt_with_xmlsec1(hub_key, tmp_path):
    key, cert = hub_key
    signed = sign_receipt(examples()["rejected"], _enveloped_signer(key, cert))
    (tmp_path / "receipt.xml").write_bytes(signed)
    (tmp_path / "hub.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ok = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", "hub.pem", "receipt.xml"],
                        cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "receipt.xml").write_bytes(signed.replace(b"000.00.00.G22", b"000.00.00.G23"))
    bad = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", "hub.pem", "receipt.xml"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0


# ------------------------------------------------------------------- answers

def test_an_answer_is_named_after_its_submission_and_found_by_it():
    rid = answer_id(G22, "m1", SHA)
    assert uuid.UUID(rid).version == 5 and rid == answer_id(G22, "m1", SHA)
    assert len({rid, answer_id(G22, "m2", SHA), answer_id(H41, "m1", SHA),
                answer_id(G22, "m1", hashlib.sha256(b"other").hexdigest())}) == 4
    first = Receipt.accepted("hub-1", G22, DOC, SHA, receipt_id=rid)
    again = Receipt.duplicate("hub-1", G22, DOC, SHA, receipt_id=answer_id(G22, "m2", SHA))
    assert answers(first, G22, "m1", SHA) and not answers(first, G22, "m2", SHA)
    assert answers(again, G22, "m2", SHA) and not answers(again, G22, "m1", SHA)
    assert not answers(first, G22, "m1", hashlib.sha256(b"other").hexdigest())
    delivered = Receipt.delivered("hub-1", G22, DOC, H41, DID, SHA)
    assert not answers(delivered, G22, "m1", SHA)  # not an answer at all


def test_an_older_hubs_random_ids_are_matched_on_the_sha256_alone():
    older = Receipt.accepted("hub-1", G22, DOC, SHA, receipt_id=RID)  # version 4
    assert answers(older, G22, "m1", SHA) and answers(older, G22, "m2", SHA)
    assert not answers(older, G22, "m1", hashlib.sha256(b"other").hexdigest())
