"""Parse untrusted bytes into an XML tree without being hurt by them.

The parser never reads a DTD, never expands or fetches an entity, never touches the
network and never processes XInclude. Size, depth, text and attribute limits are checked
by us (libxml2's own limits are lifted with ``huge_tree`` because a legitimate package may
carry a 20 MiB base64 attachment), and each refusal has its own catalogue code. What the
tree would cost (how many nodes, attributes and namespace declarations) is counted before
it is built (:mod:`vdx.core.xmlcount`), and any failure of lxml while parsing or checking
is a refusal too (``envelope.too_complex``), never an exception of another kind.

Text of ``ContentTransferEncoded`` (attachments) is bounded only by the total size: it is
the one place where a large text node is expected, and it is never copied into Python here.
Every other text (an element's, or the tail of an element, comment or processing
instruction) is bounded by ``max_text``. The limits are checked by a quick look in C
(XPath, lxml's iterators, and the document's size: a node holds no more characters than
the bytes it came from); only a tree that may exceed them is walked node by node in
Python, to name the first violation.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

from vdx.core.xmlcount import check_counts
from vdx.errors import EnvelopeError

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
XINCLUDE_NAMESPACES = frozenset(
    {"http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude"}
)
# Tags are "{namespace}name" strings: a prefix test is ~10x cheaper than etree.QName.
_XINCLUDE_TAGS = tuple(f"{{{ns}}}" for ns in XINCLUDE_NAMESPACES)
_XINCLUDE_ANY = tuple(f"{{{ns}}}*" for ns in XINCLUDE_NAMESPACES)
_ATTACHMENT_TEXT = f"{{{EDXML_NS}}}ContentTransferEncoded"
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


@dataclass(frozen=True)
class ParseLimits:
    """Limits applied to every untrusted package; the defaults suit national traffic."""

    max_bytes: int = 64 * 1024 * 1024
    max_depth: int = 64
    max_text: int = 1024 * 1024
    max_attribute: int = 4096
    # What a package may cost before its tree is built. Real packages (the EdXML SDK's
    # samples, the quirks corpus, live-shaped traffic) have at most ~325 nodes, 7
    # attributes and 3 namespace declarations; a tree at these limits stays under ~30 MB.
    max_elements: int = 100_000  # elements, comments and processing instructions
    max_attributes: int = 10_000  # in the whole package, namespace declarations aside
    max_namespaces: int = 1_000  # namespace declarations in the whole package


DEFAULT_LIMITS = ParseLimits()


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,
        collect_ids=False,
        remove_comments=False,
    )


def parse_untrusted(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> etree._ElementTree:
    """Return the parsed tree of ``data`` or raise :class:`EnvelopeError`.

    Only checks that the bytes are safe, well-formed XML within ``limits``; the root and
    the schema are checked by the caller.
    """
    if not data:
        raise EnvelopeError("envelope.empty")
    if len(data) > limits.max_bytes:
        raise EnvelopeError(
            "envelope.too_large",
            f"the package is {len(data):,} bytes; the limit is {limits.max_bytes:,}",
        )
    _refuse_junk_and_doctype(data)
    check_counts(data, limits)
    try:
        # A fresh parser per call: lxml parsers are not thread-safe and cost ~1 µs to make.
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from exc
    except (etree.LxmlError, MemoryError) as exc:
        raise _too_complex("parsing", exc) from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise EnvelopeError("envelope.dtd_forbidden", line=1)
    try:
        _check_limits(root, limits, len(data))
    except (etree.LxmlError, MemoryError, RecursionError) as exc:
        raise _too_complex("checking the limits", exc) from exc
    return tree


def _too_complex(stage: str, exc: BaseException) -> EnvelopeError:
    return EnvelopeError("envelope.too_complex",
                         f"{stage} failed: {type(exc).__name__}: {str(exc)[:200]}")


def _refuse_junk_and_doctype(data: bytes) -> None:
    head = data
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom):]
            break
    first = head.find(b"<")
    if first > 0 and head[:first].strip(b" \t\r\n"):
        raise EnvelopeError(
            "envelope.junk_before_xml",
            f"{first} byte(s) before the first '<': {head[:min(first, 16)]!r}",
            line=1,
        )
    if first > 0 and head.startswith(b"<?xml", first):
        raise EnvelopeError(
            "envelope.junk_before_xml", "whitespace before the XML declaration", line=1
        )
    # The prolog is tiny; looking for a DOCTYPE there means libxml2 never parses one.
    prolog_end = _first_element_start(head)
    if _DOCTYPE.search(head, 0, prolog_end if prolog_end >= 0 else len(head)):
        raise EnvelopeError("envelope.dtd_forbidden", "the package declares a DTD", line=1)


def _first_element_start(head: bytes) -> int:
    pos = 0
    while True:
        pos = head.find(b"<", pos)
        if pos < 0 or pos + 1 >= len(head):
            return -1
        nxt = head[pos + 1:pos + 2]
        if nxt not in (b"?", b"!"):
            return pos
        if head.startswith(b"<!--", pos):
            end = head.find(b"-->", pos + 4)
            pos = len(head) if end < 0 else end + 3
        elif nxt == b"!":
            return len(head)  # a DOCTYPE (or junk): search everything before the root
        else:
            end = head.find(b"?>", pos + 2)
            pos = len(head) if end < 0 else end + 2


def _syntax_error(exc: etree.XMLSyntaxError) -> EnvelopeError:
    msg = str(exc.msg or exc)
    line = exc.lineno
    lowered = msg.lower()
    if "excessive depth" in lowered:
        return EnvelopeError("envelope.too_deep", msg, line=line)
    if "memory" in lowered or "huge" in lowered:
        return EnvelopeError("envelope.too_complex", msg, line=line)
    if "encoding" in lowered or "utf-8" in lowered or "char 0x" in lowered or "bytes:" in lowered:
        return EnvelopeError("envelope.bad_encoding", msg, line=line)
    if "entity" in lowered:
        return EnvelopeError("envelope.entity_forbidden", msg, line=line)
    return EnvelopeError("envelope.not_xml", msg, line=line)


def _check_limits(root: etree._Element, limits: ParseLimits, size: int | None = None) -> None:
    """Raise the first violation of ``limits`` in document order, if any.

    ``size`` is the length in bytes of what was parsed, when known. A quick look in C
    decides whether there may be a violation; only then does :func:`_walk_limits` visit
    every node in Python to find the first one. The quick look finds every node the walk
    would refuse (it may find more, for the walk to rule out).
    """
    entity = next(root.iter(etree.Entity), None)  # only with a DTD, refused before
    if entity is not None:
        raise EnvelopeError("envelope.entity_forbidden", line=entity.sourceline)
    if _may_exceed(root, limits, size):
        _walk_limits(root, limits)


def _may_exceed(root: etree._Element, limits: ParseLimits, size: int | None) -> bool:
    xpaths = _XPATHS
    if xpaths.deeper_than(limits.max_depth)(root):
        return True
    if next(root.iter(*_XINCLUDE_ANY), None) is not None:
        return True
    # A node holds no more characters than the bytes it was parsed from (no entity can
    # expand without a DTD, refused before): a small document cannot exceed the limits.
    if (size is None or size > limits.max_attribute) \
            and xpaths.long_attribute(root, limit=limits.max_attribute):
        return True
    if size is None or size > limits.max_text:
        for el in root.iter():
            tail = el.tail
            if tail is not None and len(tail) > limits.max_text:
                return True
            if el.tag.__class__ is str and el.tag != _ATTACHMENT_TEXT:
                text = el.text
                if text is not None and len(text) > limits.max_text:
                    return True
    return False


class _XPaths(threading.local):
    """Compiled XPath expressions, one set per thread (each serialises its evaluations)."""

    def __init__(self) -> None:
        self.long_attribute = etree.XPath("boolean(//@*[string-length(.) > $limit])")
        # an element max_depth + 1 levels down (the root is level 1)?
        self.deeper_than = lru_cache(maxsize=8)(
            lambda depth: etree.XPath("boolean(/*" + "/*" * max(depth, 0) + ")"))


_XPATHS = _XPaths()


def _walk_limits(root: etree._Element, limits: ParseLimits) -> None:
    depth = 0
    for event, el in etree.iterwalk(root, events=("start", "end", "comment", "pi")):
        if event == "end":
            depth -= 1
            continue
        if event != "start":  # a comment or processing instruction: no level, a tail
            _check_text(el.tail, el, limits, "tail")
            continue
        depth += 1
        if depth > limits.max_depth:
            raise EnvelopeError(
                "envelope.too_deep",
                f"nesting reaches {depth} levels; the limit is {limits.max_depth}",
                line=el.sourceline, path=element_path(el),
            )
        tag = el.tag
        if tag.startswith(_XINCLUDE_TAGS):
            raise EnvelopeError(
                "envelope.xinclude_forbidden", line=el.sourceline, path=element_path(el)
            )
        for name, value in el.items() if len(el.attrib) else ():
            if len(value) > limits.max_attribute:
                raise EnvelopeError(
                    "envelope.attribute_too_large",
                    f"attribute {etree.QName(name).localname} holds {len(value):,} "
                    f"characters; the limit is {limits.max_attribute:,}",
                    line=el.sourceline, path=element_path(el),
                )
        if tag != _ATTACHMENT_TEXT:
            _check_text(el.text, el, limits, "text")
        _check_text(el.tail, el, limits, "tail")


def _check_text(text: str | None, el: etree._Element, limits: ParseLimits, where: str) -> None:
    if text is not None and len(text) > limits.max_text:
        raise EnvelopeError(
            "envelope.text_too_large",
            f"a text node holds {len(text):,} characters; the limit is {limits.max_text:,}",
            line=el.sourceline, path=element_path(el),
        )


def element_path(el: etree._Element) -> str:
    """A readable path such as ``/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To[2]``."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        if isinstance(node.tag, str):
            name = etree.QName(node).localname
            parent = node.getparent()
            if parent is not None:
                same = [c for c in parent if c.tag == node.tag]
                if len(same) > 1:
                    name += f"[{same.index(node) + 1}]"
            parts.append(name)
        node = node.getparent()
    return "/" + "/".join(reversed(parts))
