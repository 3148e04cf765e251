"""The parse limits' quick look in C must never miss what the walk over every node refuses.

``vdx.core.xmlsafe._check_limits`` first asks XPath and lxml's C iterators whether a tree may
exceed its limits, and walks it in Python (``_walk_limits``) only then. Here both are run
on the same trees: whenever the walk alone refuses, ``_check_limits`` refuses with the
same code, line and path.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from vdx.core.xmlsafe import (
    EDXML_NS,
    ParseLimits,
    _check_limits,
    _walk_limits,
    parse_untrusted,
)
from vdx.errors import EnvelopeError

SMALL = ParseLimits(max_bytes=1 << 20, max_depth=6, max_text=40, max_attribute=20)
E = f"{{{EDXML_NS}}}"


def _refusal(check) -> tuple | None:  # noqa: ANN001
    try:
        check()
    except EnvelopeError as exc:
        return exc.code, exc.problem.line, exc.problem.path
    return None


def assert_same(data: bytes, limits: ParseLimits) -> tuple | None:
    root = etree.fromstring(data, etree.XMLParser(huge_tree=True, resolve_entities=False))
    walked = _refusal(lambda: _walk_limits(root, limits))
    for size in (len(data), None):
        assert _refusal(lambda size=size: _check_limits(root, limits, size)) == walked, size
    return walked


def _nest(depth: int, inner: str = "x") -> str:
    return "<a>" * depth + inner + "</a>" * depth


@pytest.mark.parametrize("document,code", [
    (_nest(6), None),
    (_nest(7), "envelope.too_deep"),
    (_nest(6, "<!--c--><?p d?>"), None),              # levels are elements
    ("<r>" + "x" * 40 + "</r>", None),
    ("<r>" + "x" * 41 + "</r>", "envelope.text_too_large"),
    ("<r><a/>" + "y" * 41 + "</r>", "envelope.text_too_large"),        # a tail
    ("<r><!--c-->" + "y" * 41 + "</r>", "envelope.text_too_large"),    # a comment's tail
    ("<r><?p d?>" + "y" * 41 + "</r>", "envelope.text_too_large"),     # a PI's tail
    ("<r>" + "&amp;" * 41 + "</r>", "envelope.text_too_large"),
    ("<r>" + "&#x10000;" * 41 + "</r>", "envelope.text_too_large"),
    ("<r><![CDATA[" + "z" * 41 + "]]></r>", "envelope.text_too_large"),
    (f'<r xmlns:e="{EDXML_NS}"><e:ContentTransferEncoded>{"Q" * 99}'
     f'</e:ContentTransferEncoded></r>', None),                        # attachments: exempt
    (f'<r xmlns:e="{EDXML_NS}"><e:ContentTransferEncoded>Q<!--c-->{"Q" * 99}'
     f'</e:ContentTransferEncoded></r>', "envelope.text_too_large"),   # but not after a child
    ('<r a="' + "v" * 20 + '"/>', None),
    ('<r a="' + "v" * 21 + '"/>', "envelope.attribute_too_large"),
    ('<r><b c="1" d="' + "&#233;" * 21 + '"/></r>', "envelope.attribute_too_large"),
    ('<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="x"/></r>',
     "envelope.xinclude_forbidden"),
    ('<r><i xmlns="http://www.w3.org/2003/XInclude"/></r>', "envelope.xinclude_forbidden"),
    # several violations: the first in document order, as the walk finds it
    ('<r a="' + "v" * 21 + '">' + _nest(7) + "</r>", "envelope.attribute_too_large"),
    ("<r>" + _nest(7) + '<b a="' + "v" * 21 + '"/></r>', "envelope.too_deep"),
    ("<r><a>" + "t" * 41 + "</a>" + _nest(7) + "</r>", "envelope.text_too_large"),
])
def test_quick_look_agrees_with_the_walk(document: str, code: str | None) -> None:
    refused = assert_same(document.encode(), SMALL)
    assert (refused[0] if refused else None) == code


def test_a_small_document_skips_the_text_and_attribute_checks() -> None:
    # what makes that sound: no node holds more characters than its document has bytes
    data = b'<r a="&#x10FFFF;&amp;">&#x10FFFF;&lt;<![CDATA[x]]>\r\n</r>'
    root = etree.fromstring(data)
    assert len(root.text) <= len(data) and len(root.get("a")) <= len(data)
    assert assert_same(data, ParseLimits(max_text=len(data) - 1, max_attribute=2)) is None


def test_parse_untrusted_still_refuses_deep_packages() -> None:
    with pytest.raises(EnvelopeError) as err:
        parse_untrusted(_nest(65).encode())
    assert err.value.code == "envelope.too_deep"


_NAMES = st.sampled_from(["a", "b", f"{E}ContentTransferEncoded",
                          "{http://www.w3.org/2001/XInclude}include"])
_TEXT = st.none() | st.text("xyz&<é\r\n", max_size=60)


@st.composite
def trees(draw, depth: int = 0) -> etree._Element:  # noqa: ANN001
    element = etree.Element(draw(_NAMES) if depth else "r")
    for i in range(draw(st.integers(0, 2))):
        element.set(f"k{i}", draw(st.text("vé&", max_size=30)))
    element.text = draw(_TEXT)
    for _ in range(draw(st.integers(0, 3 if depth < 8 else 0))):
        kind = draw(st.sampled_from(["element", "element", "comment", "pi"]))
        if kind == "element":
            child = draw(trees(depth + 1))
        elif kind == "comment":
            child = etree.Comment("c")
        else:
            child = etree.ProcessingInstruction("p", "d")
        child.tail = draw(_TEXT)
        element.append(child)
    return element


@settings(max_examples=300, deadline=None)
@given(tree=trees(), max_depth=st.integers(0, 9), max_text=st.integers(0, 60),
       max_attribute=st.integers(0, 30))
def test_generated_trees_agree_with_the_walk(tree: etree._Element, max_depth: int,
                                             max_text: int, max_attribute: int) -> None:
    data = etree.tostring(tree, encoding="UTF-8")
    assert_same(data, ParseLimits(max_depth=max_depth, max_text=max_text,
                                  max_attribute=max_attribute))
