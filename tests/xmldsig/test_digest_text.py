"""The attachments' text hashed where the tree keeps it (``vdx.xmldsig.digest._TreeText``):
the same bytes ``.text`` gives, the same digest libxml2's C14N gives, and no copy of the
text in Python. The differential tests (``test_verify_differential.py``) hold the whole
verifier to signxml; these hold the reading itself."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
from lxml import etree

from vdx.core.xmlsafe import EDXML_NS
from vdx.xmldsig import digest

_CTE = f"{{{EDXML_NS}}}ContentTransferEncoded"

_TEXTS = ["", "QUJD", "a&b<c>d\re\nf é ü 𝄞 ]]> \t", "x" * 70_000 + "é"]


def _document(inner: str) -> bytes:
    return (f'<e:edXML xmlns:e="{EDXML_NS}"><e:A><e:ContentTransferEncoded>{inner}'
            f'</e:ContentTransferEncoded>\n</e:A></e:edXML>').encode()


def _parsed(strip_cdata: bool) -> list[etree._Element]:
    """Attachments as a parser leaves them: text, character references, CDATA sections
    kept apart (``strip_cdata=False``) or merged, an empty one."""
    parser = etree.XMLParser(strip_cdata=strip_cdata, huge_tree=True)
    return [etree.fromstring(_document(inner), parser).find(f".//{_CTE}") for inner in (
        "QUJD", "a&amp;b&lt;c&gt;&#13;é &#x1D11E;", "ab<![CDATA[c&d<e]]>f<![CDATA[]]>g",
        "<![CDATA[only]]>", "", "y" * 3_000_000)]


def _built() -> list[etree._Element]:
    """Attachments built through lxml's API: a text, a CDATA section, none."""
    elements = []
    for text in [*_TEXTS, etree.CDATA("c&d"), None]:
        root = etree.fromstring(_document(""))
        element = root.find(f".//{_CTE}")
        element.text = text
        elements.append(element)
    return elements


@pytest.mark.parametrize("element", [*_parsed(True), *_parsed(False), *_built()],
                         ids=lambda e: repr((e.text or "")[:12]))
def test_the_views_hold_what_text_gives(element: etree._Element) -> None:
    pieces = digest._TreeText.pieces(element)
    assert pieces is not None
    assert b"".join(bytes(p) for p in pieces) == (element.text or "").encode()


def test_an_element_with_more_than_text_is_left_to_text() -> None:
    root = etree.fromstring(f'<e:edXML xmlns:e="{EDXML_NS}"><e:C>x<!--c-->y</e:C>'
                            f'<e:C>x<e:D/>y</e:C><e:C>x<?p?></e:C></e:edXML>'.encode())
    for element in root:
        assert digest._TreeText.pieces(element) is None
    assert digest._TreeText.pieces(etree.Comment("c")) is None  # not an element


@pytest.mark.parametrize("read", ["views", "text"])
@pytest.mark.parametrize("strip_cdata", [True, False])
def test_either_reading_gives_libxml2s_digest(read: str, strip_cdata: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if read == "text":  # the fallback: what lxml's .text gives
        monkeypatch.setattr(digest._TreeText, "pieces", classmethod(lambda cls, e: None))
    for element in _parsed(strip_cdata):
        root = element.getroottree().getroot()
        for exclusive in (False, True):
            plain = etree.tostring(root, method="c14n", exclusive=exclusive,
                                   with_comments=False)
            assert digest._c14n_digest(root, "sha256", exclusive, None) \
                == hashlib.sha256(plain).digest()


def test_a_large_attachment_is_hashed_without_a_copy_of_its_text() -> None:
    size = 8 << 20
    root = etree.fromstring(_document("QUJD" * (size // 4)), etree.XMLParser(huge_tree=True))
    tracemalloc.start()
    try:
        digest._c14n_digest(root, "sha256", False, None)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one chunk (1 MiB) at a time; `.text` alone would be the 8 MiB
    assert peak < 3 << 20
