"""Model ⇄ bytes: parse(build(x)) == x for every value the schema allows."""

from __future__ import annotations

from datetime import date, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vdx
from tests.support import TESTS
from vdx.core import model
from vdx.core.model import VIETNAM_TZ

CORPUS = TESTS / "corpus" / "envelope"

# Characters XML 1.0 can carry (no controls but tab/newline, no surrogates). Carriage
# returns are excluded: XML parsers normalise them to newlines by specification.
_xml_char = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"
) | st.sampled_from("\t\n")
text = st.text(_xml_char, max_size=30)
nonblank = text.filter(lambda s: s.strip(" \t\n") != "")  # XML's whitespace, not Unicode's
opt_text = st.none() | text
small_int = st.integers(min_value=-(2**31), max_value=2**31 - 1)
opt_int = st.none() | small_int
codes_102 = st.from_regex(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}", fullmatch=True)
codes_qd20 = st.from_regex(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,3}){0,4}", fullmatch=True)
agency = codes_102 | codes_qd20
days = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.replace(microsecond=0, tzinfo=VIETNAM_TZ))
organ_ids = nonblank.map(lambda s: s.strip(" \t\n")[:64]).filter(lambda s: s.strip(" \t\n"))


def organizations(code=agency):
    return st.builds(model.Organization, code, opt_text, opt_text, opt_text, opt_text,
                     opt_text, opt_text, opt_text)


staff = st.builds(model.StaffInfo, text, text, opt_text, opt_text, opt_text, opt_text)
response_for = st.builds(model.ResponseFor, organ_ids, text, nonblank, st.none() | days)
# A trace header may name no agency (live traffic): None is written as no OrganId.
trace = st.lists(st.builds(model.TraceHeader, st.none() | organ_ids, moments),
                 max_size=3).map(tuple)
business = st.builds(
    model.Business,
    doc_type=st.integers(0, 3), document_id=st.none() | nonblank, reason=opt_text,
    paper=st.none() | st.integers(0, 1),
    document_info=st.none() | st.builds(
        model.BusinessDocumentInfo, text, text,
        st.none() | st.lists(st.builds(model.Receiver, organ_ids, small_int), max_size=3).map(
            tuple)),
    replacements=st.none(),
    staff_info=st.none() | staff,
) | st.builds(
    model.Business, doc_type=st.just(3),
    replacements=st.lists(st.builds(model.ReplacementInfo, nonblank, st.lists(
        organ_ids, max_size=3).map(tuple)), min_size=1, max_size=2).map(tuple))
attachments = st.lists(
    st.builds(model.Attachment, nonblank, nonblank.map(lambda s: s.strip() or "x"),
              st.binary(max_size=64), st.uuids().map(lambda u: f"cid:{u}"), opt_text),
    max_size=3, unique_by=lambda a: a.content_id).map(tuple)
documents = st.builds(
    model.DocumentPackage,
    sender=organizations(), recipients=st.lists(organizations(), min_size=1, max_size=3).map(
        tuple),
    document_id=nonblank, code=st.builds(model.Code, nonblank, text),
    promulgation=st.builds(model.PromulgationInfo, text, days),
    document_type=st.builds(model.DocumentType, small_int, text, opt_int),
    subject=nonblank, signer=st.builds(model.SignerInfo, text, opt_text, opt_text),
    content=opt_text, due_date=st.none() | days,
    to_places=st.none() | st.lists(text, max_size=3).map(tuple),
    other_info=st.none() | st.builds(
        model.OtherInfo, opt_int, opt_text, opt_text, opt_int, opt_int, st.none() | st.booleans(),
        st.none() | st.lists(text, max_size=3).map(tuple)),
    response_for=st.lists(response_for, max_size=2).map(tuple),
    steering_type=opt_int, trace=trace, business=st.none() | business,
    attachments=attachments,
)
statuses = st.builds(
    model.StatusPackage, sender=organizations(), response_for=response_for, staff=staff,
    status_code=st.sampled_from(model.STATUS_CODES), description=text, timestamp=moments,
    trace=trace,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_document_round_trip(package):
    parsed = vdx.parse(vdx.build(package))
    for field in package.__dataclass_fields__:
        assert getattr(parsed, field) == getattr(package, field), field
    assert parsed == package


@settings(max_examples=100, deadline=None)
@given(statuses)
def test_status_round_trip(package):
    assert vdx.parse(vdx.build(package)) == package


def test_building_takes_files(tmp_path):
    pdf = tmp_path / "Quyết định 12.pdf"
    pdf.write_bytes(b"%PDF-1.7\n\x00\xff binary")
    attachment = model.Attachment.from_file(pdf)
    assert (attachment.name, attachment.content_type) == ("Quyết định 12.pdf", "application/pdf")
    package = model.DocumentPackage(
        sender=model.Organization("000.00.00.G22"),
        recipients=(model.Organization("000.00.00.H41"),),
        document_id="000.00.00.G22,2026/11/22,12/QĐ-TTg", code=model.Code("12", "QĐ-TTg"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(2, "Quyết định"), subject="Ban hành quy chế",
        signer=model.SignerInfo("Nguyễn Văn A"), attachments=(attachment,),
    )
    parsed = vdx.parse(vdx.build(package))
    (got,) = parsed.attachments
    assert got.data == pdf.read_bytes()
    assert parsed.manifest == (model.ManifestReference(
        attachment.content_id, "application/pdf", "Quyết định 12.pdf"),)


def _with_document_id_moved(data: bytes, *, keep_first: bool) -> bytes:
    from lxml import etree

    root = etree.fromstring(data)
    ns = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"
    header = root.find(f"{ns}edXMLEnvelope/{ns}edXMLHeader/{ns}MessageHeader")
    doc_id = header.find(f"{ns}DocumentId")
    copy = etree.SubElement(header, f"{ns}DocumentId")
    copy.text = doc_id.text
    if not keep_first:
        header.remove(doc_id)
    return etree.tostring(root)


def test_legacy_document_id_position_is_accepted():
    """Older packages put DocumentId at the end of the header; newer ones after To."""
    package = vdx.parse((CORPUS / "missing_subject.xml").read_bytes().replace(
        b"<SignerInfo>", b"<Subject>s</Subject><SignerInfo>"))
    legacy = _with_document_id_moved(vdx.build(package), keep_first=False)
    assert vdx.parse(legacy) == package


def test_document_id_in_both_places_is_refused():
    package = vdx.parse((CORPUS / "missing_subject.xml").read_bytes().replace(
        b"<SignerInfo>", b"<Subject>s</Subject><SignerInfo>"))
    twice = _with_document_id_moved(vdx.build(package), keep_first=True)
    assert [p.code for p in vdx.check(twice).problems] == ["envelope.schema"]


def test_check_reports_every_layer_in_one_pass():
    """A schema error does not hide what the layers under it find: consistency,
    attachments and identifiers are read from the tree whatever the schema said."""
    status = vdx.build(model.StatusPackage(
        sender=model.Organization("000.00.00.H41", organ_name="UBND tỉnh Nghệ An"),
        response_for=model.ResponseFor("000.00.00.G22", "1/VPCP",
                                       "000.00.00.G22,2026/11/01,1/VPCP"),
        staff=model.StaffInfo("Văn thư", "B"), status_code="03", description="Đã tiếp nhận",
        timestamp=datetime(2026, 11, 2, 8, 30, tzinfo=VIETNAM_TZ)))
    broken = (status.replace(b"<edXML:Description>", b"<edXML:Descr>")
              .replace(b"</edXML:Description>", b"</edXML:Descr>")
              .replace(b">000.00.00.H41<", b">H41 / 01<")
              .replace(b"</edXML:edXMLEnvelope>",
                       b"</edXML:edXMLEnvelope><edXML:AttachmentEncoded/>"))
    verdict = vdx.check(broken)
    assert [p.code for p in verdict.problems] == [
        "envelope.schema", "envelope.inconsistent", "envelope.bad_identifier"]
    assert verdict.package is None and not verdict.valid
