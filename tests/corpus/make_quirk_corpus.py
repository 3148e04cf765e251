"""Regenerate the live-traffic corpus: ``python tests/corpus/make_quirk_corpus.py``.

Each case is a package shaped like those the live national axis carries, written here
from the description of what was observed (not copied from any agency's package), in
``quirks/``, with a line in ``quirks/expected.txt``: the structural verdict it must get
(always ``valid``) and the warning codes ``vdx.check`` names, in any order. The hub may
still refuse such a package for its signature; the tests sign them, or have the gateway
sign them, and send them through.
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

HERE = Path(__file__).parent / "quirks"
NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
G22, H41 = "000.00.00.G22", "000.00.00.H41"

FROM = f"""<From><OrganId>{G22}</OrganId><OrganizationInCharge>Văn phòng Chính phủ</OrganizationInCharge>
          <OrganName>Văn phòng Chính phủ</OrganName></From>"""
OTHER_INFO = """<OtherInfo><Priority>0</Priority><SphereOfPromulgation>Liên thông văn bản quốc gia</SphereOfPromulgation>
          <TyperNotation>TVC</TyperNotation><PromulgationAmount>2</PromulgationAmount><PageAmount>1</PageAmount>
          <Direction>false</Direction></OtherInfo>"""
RESPONSE_FOR = f"""<ResponseFor><OrganId>{H41}</OrganId><Code>5/UBND-VX</Code>
          <PromulgationDate>2026/10/30</PromulgationDate><DocumentId>{H41},2026/10/30,5/UBND-VX</DocumentId></ResponseFor>"""
TO_PLACES = "<ToPlaces><Place>Các bộ, cơ quan ngang bộ</Place><Place>UBND các tỉnh</Place></ToPlaces>"
TRACE = f"""<TraceHeaderList><TraceHeader><OrganId>{G22}</OrganId><Timestamp>2026/11/01 08:00:00</Timestamp></TraceHeader>
      </TraceHeaderList>"""
# XML-DSig's element names in the edXML namespace, with dummy values: what EdXML102's
# builder writes for a Signature object, and what packages from the live axis carry.
PLACEHOLDER = """<Signature>
        <SignedInfo>
          <CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315" />
          <SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1" />
          <Reference URI="">
            <Transforms><Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature" /></Transforms>
            <DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1" />
            <DigestValue>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</DigestValue>
          </Reference>
        </SignedInfo>
        <SignatureValue>AAAA</SignatureValue>
        <KeyInfo><X509Data><X509SubjectName>CN=placeholder</X509SubjectName><X509Certificate>AAAA</X509Certificate></X509Data></KeyInfo>
      </Signature>"""


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cong-van.txt", "Nội dung công văn")
    return buffer.getvalue()


def document(*, sender: str = FROM, to: tuple[str, ...] = (H41,), after_signer: str = "",
             trace: str = TRACE, signature: str = "", manifest_type: str = "application/pdf",
             attachment_type: str = "application/pdf", data: bytes = b"%PDF-1.4 thu nghiem",
             trace_codes: tuple[str, ...] = ()) -> str:
    recipients = "\n        ".join(
        f"<To><OrganId>{code}</OrganId><OrganName>Cơ quan nhận</OrganName></To>" for code in to)
    if trace_codes:
        trace = "<TraceHeaderList>" + "".join(
            f"<TraceHeader><OrganId>{c}</OrganId><Timestamp>2026/11/01 08:00:00</Timestamp>"
            f"</TraceHeader>" for c in trace_codes) + "</TraceHeaderList>"
    return f"""{DECL}<edXML xmlns="{NS}">
  <edXMLEnvelope>
    <edXMLHeader>
      <MessageHeader>
        {sender}
        {recipients}
        <DocumentId>{G22},2026/11/01,12/VPCP-TTĐT</DocumentId>
        <Code><CodeNumber>12</CodeNumber><CodeNotation>VPCP-TTĐT</CodeNotation></Code>
        <PromulgationInfo><Place>Hà Nội</Place><PromulgationDate>2026/11/01</PromulgationDate></PromulgationInfo>
        <DocumentType><Type>1</Type><TypeDetail>0</TypeDetail><TypeName>Công văn</TypeName></DocumentType>
        <Subject>Về việc kết nối, liên thông phần mềm quản lý văn bản</Subject>
        <SignerInfo><Competence>KT. BỘ TRƯỞNG</Competence><Position>Thứ trưởng</Position><FullName>Nguyễn Văn A</FullName></SignerInfo>
        <DueDate>2026/11/30</DueDate>{after_signer}
      </MessageHeader>
      {trace}
      {signature}
    </edXMLHeader>
    <edXMLBody>
      <edXMLManifest version="1.0">
        <Reference><ContentId>cid:1</ContentId><ContentType>{manifest_type}</ContentType>
          <Description>Công văn</Description><AttachmentName>cong-van.pdf</AttachmentName></Reference>
      </edXMLManifest>
    </edXMLBody>
  </edXMLEnvelope>
  <AttachmentEncoded>
    <Attachment><ContentId>cid:1</ContentId><AttachmentName>cong-van.pdf</AttachmentName>
      <Description>Công văn</Description><ContentType>{attachment_type}</ContentType>
      <ContentTransferEncoded>{base64.b64encode(data).decode()}</ContentTransferEncoded></Attachment>
  </AttachmentEncoded>
</edXML>
"""


def status(*, signature: str = "") -> str:
    """A status as EdXML102's StatusXmlBuilder writes one: edXML-prefixed elements under
    a default-namespace root, an empty TraceHeaderList and a placeholder Signature."""
    return f"""{DECL}<edXML xmlns="{NS}">
  <edXML:edXMLEnvelope xmlns:edXML="{NS}">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From><edXML:OrganId>{H41}</edXML:OrganId><edXML:OrganizationInCharge>UBND Tỉnh Nghệ An</edXML:OrganizationInCharge>
          <edXML:OrganName>UBND Tỉnh Nghệ An</edXML:OrganName></edXML:From>
        <edXML:ResponseFor><edXML:OrganId>{G22}</edXML:OrganId><edXML:Code>12/VPCP-TTĐT</edXML:Code>
          <edXML:DocumentId>{G22},2026/11/01,12/VPCP-TTĐT</edXML:DocumentId>
          <edXML:PromulgationDate>2026/11/01</edXML:PromulgationDate></edXML:ResponseFor>
        <edXML:StaffInfo><edXML:Department>Văn thư</edXML:Department><edXML:Staff>Trần Thị B</edXML:Staff></edXML:StaffInfo>
        <edXML:StatusCode>03</edXML:StatusCode>
        <edXML:Description>Đã tiếp nhận</edXML:Description>
        <edXML:Timestamp>2026/11/02 08:30:00</edXML:Timestamp>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList />
      {signature}
    </edXML:edXMLHeader>
  </edXML:edXMLEnvelope>
</edXML>
"""


def cases() -> dict[str, tuple[str, tuple[str, ...]]]:
    """file name -> (package, the warning codes vdx.check must name)."""
    last = f"\n        {OTHER_INFO}\n        {RESPONSE_FOR}\n        <SteeringType>1</SteeringType>\n        {TO_PLACES}"
    return {
        "to_places_last.xml": (document(after_signer=last), ("quirk.to_places_last",)),
        "to_places_after_steering_type.xml": (document(
            after_signer=f"\n        <SteeringType>1</SteeringType>\n        {TO_PLACES}"),
            ("quirk.to_places_last",)),
        "empty_response_for.xml": (document(
            after_signer=f"\n        {TO_PLACES}\n        {OTHER_INFO}\n        <ResponseFor/>"
                         f"\n        <SteeringType>0</SteeringType>"),
            ("quirk.empty_response_for",)),
        "trace_without_organ_id.xml": (document(trace="""<TraceHeaderList>
        <TraceHeader><Timestamp>2026/11/01 08:00:00</Timestamp></TraceHeader></TraceHeaderList>"""),
            ("quirk.trace_without_organ_id",)),
        "trace_organ_id_null.xml": (document(trace_codes=("null",)),
                                    ("quirk.trace_without_organ_id",)),
        # EdXML102's TraceHeaderList writes its Bussiness block before the trace headers.
        "business_before_trace.xml": (document(trace=f"""<TraceHeaderList>
        <Bussiness><BussinessDocType>0</BussinessDocType><BussinessDocReason>Văn bản điện tử mới</BussinessDocReason>
          <Paper>0</Paper><StaffInfo><Department>Văn thư</Department><Staff>Trần Thị B</Staff></StaffInfo></Bussiness>
        <TraceHeader><OrganId>{G22}</OrganId><Timestamp>2026/11/01 08:00:00</Timestamp></TraceHeader>
      </TraceHeaderList>"""), ("quirk.business_before_trace",)),
        "placeholder_signature.xml": (document(signature=PLACEHOLDER),
                                      ("quirk.placeholder_signature",)),
        "no_signature.xml": (document(), ()),
        "gateway_identifier.xml": (document(sender=FROM.replace(G22, "vxp.saas.03")),
                                   ("quirk.nonstandard_identifier",)),
        "older_identifiers.xml": (document(to=("01.02.G22", "001.00.20.TT2"),
                                           trace_codes=("001.00.20.TT2",)),
                                  ("quirk.nonstandard_identifier",) * 3),
        "manifest_type_differs.xml": (document(manifest_type="application/pdf",
                                               attachment_type="application/zip",
                                               data=_zip_bytes()),
                                      ("quirk.manifest_type_differs",)),
        "sender_is_recipient.xml": (document(to=(G22,)), ("quirk.sender_is_recipient",)),
        "sender_unnamed.xml": (document(sender=f"<From><OrganId>{G22}</OrganId></From>"),
                               ("quirk.sender_unnamed",)),
        "status_as_edxml102_writes_it.xml": (status(signature=PLACEHOLDER),
                                             ("quirk.placeholder_signature",)),
        # Everything at once, as a package from the live axis may well be.
        "live_traffic.xml": (document(
            sender="<From><OrganId>vxp.saas.03</OrganId></From>",
            to=("vxp.saas.03", "01.02.G22"), after_signer=last.replace(
                RESPONSE_FOR, "<ResponseFor/>"),
            trace="""<TraceHeaderList>
        <TraceHeader><Timestamp>2026/11/01 08:00:00</Timestamp></TraceHeader>
        <TraceHeader><OrganId>null</OrganId><Timestamp>2026/11/01 08:00:01</Timestamp></TraceHeader>
      </TraceHeaderList>""", signature=PLACEHOLDER, manifest_type="application/zip"),
            ("quirk.to_places_last", "quirk.empty_response_for", "quirk.sender_unnamed",
             "quirk.sender_is_recipient", "quirk.trace_without_organ_id",
             "quirk.trace_without_organ_id", "quirk.placeholder_signature",
             "quirk.nonstandard_identifier", "quirk.nonstandard_identifier",
             "quirk.nonstandard_identifier", "quirk.manifest_type_differs")),
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    lines = []
    for name, (text, warnings) in sorted(cases().items()):
        (HERE / name).write_bytes(text.encode("utf-8"))
        lines.append(" ".join((name, "valid", *warnings)))
    (HERE / "expected.txt").write_text(
        "# file  verdict  warning codes (regenerate: make_quirk_corpus.py)\n"
        + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
