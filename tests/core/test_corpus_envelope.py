"""The hostile corpus: each file must be refused with exactly its code, never a crash."""

from __future__ import annotations

import pytest

import vdx
from tests.support import TESTS
from vdx.core import envelope
from vdx.errors import EnvelopeError

CORPUS = TESTS / "corpus" / "envelope"


def _cases() -> list[tuple[str, str]]:
    lines = (CORPUS / "expected.txt").read_text().splitlines()
    return [tuple(line.split()) for line in lines if line and not line.startswith("#")]


def test_every_corpus_file_has_an_expectation():
    listed = {name for name, _ in _cases()}
    assert listed == {p.name for p in CORPUS.iterdir() if p.name != "expected.txt"}
    assert len(listed) >= 20


@pytest.mark.parametrize(("name", "code"), _cases())
def test_corpus_case(name, code):
    data = (CORPUS / name).read_bytes()
    verdict = vdx.check(data)
    assert not verdict.valid
    assert verdict.problems[0].code == code
    with pytest.raises(EnvelopeError) as raised:
        vdx.parse(data)
    assert raised.value.code == code


def test_twenty_mib_text_node_is_refused():
    base = (CORPUS.parent.parent / "corpus" / "envelope" / "missing_subject.xml").read_bytes()
    data = base.replace(b"<SignerInfo>", b"<Subject>" + b"A" * (20 * 1024 * 1024)
                        + b"</Subject><SignerInfo>")
    with pytest.raises(EnvelopeError) as raised:
        envelope.load_tree(data)
    assert raised.value.code == "envelope.text_too_large"
    assert raised.value.path.endswith("/MessageHeader/Subject")


def test_twenty_mib_attachment_is_accepted():
    """Attachments are the one place where big text is expected."""
    package = vdx.DocumentPackage(
        **{**_small_document().__dict__,
           "attachments": (vdx.Attachment("big.bin", "application/octet-stream",
                                          b"\x01" * (15 * 1024 * 1024)),)})
    data = vdx.build(package)
    assert len(data) > 20 * 1024 * 1024
    assert vdx.parse(data).attachments[0].data == package.attachments[0].data


def test_doctype_in_utf16_is_refused_after_parsing():
    """The byte-level DOCTYPE scan cannot read UTF-16; the parsed tree's doctype catches it."""
    text = ('<?xml version="1.0" encoding="UTF-16"?>\n'
            '<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
            '<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&xxe;</edXML>')
    verdict = vdx.check(text.encode("utf-16"))
    assert [p.code for p in verdict.problems] == ["envelope.dtd_forbidden"]


def test_size_limit_is_configurable():
    data = (CORPUS / "missing_subject.xml").read_bytes()
    verdict = vdx.check(data, vdx.ParseLimits(max_bytes=100))
    assert verdict.problems[0].code == "envelope.too_large"
    assert f"{len(data):,}" in verdict.problems[0].message


def test_depth_and_text_limits_are_configurable():
    data = vdx.build(_small_document())
    assert vdx.check(data, vdx.ParseLimits(max_depth=3)).problems[0].code == "envelope.too_deep"
    assert vdx.check(data, vdx.ParseLimits(max_text=5)).problems[0].code == \
        "envelope.text_too_large"


def _small_document() -> vdx.DocumentPackage:
    from datetime import date

    from vdx.core import model

    return model.DocumentPackage(
        sender=model.Organization("000.00.00.G22"),
        recipients=(model.Organization("000.00.00.H41"),),
        document_id="000.00.00.G22,2026/11/01,1/VPCP",
        code=model.Code("1", "VPCP"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 1)),
        document_type=model.DocumentType(1, "Công văn"),
        subject="Thử nghiệm giới hạn",
        signer=model.SignerInfo("Nguyễn Văn A"),
    )
