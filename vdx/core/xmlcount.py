"""Count what a package would cost as a tree, before libxml2 builds it.

libxml2 spends about 150 bytes on each element, comment or processing instruction and
200 on each attribute, so 64 MiB of ``<a/>`` grow into a tree of 2 GB. Before parsing,
:func:`check_counts` refuses a package with more nodes, attributes or namespace
declarations than :class:`~vdx.core.xmlsafe.ParseLimits` allow, and a namespace name
longer than ``max_attribute`` (the tree's own checks see attributes, not namespaces).

Ordinary packages pay for two ``memchr`` scans: every element, comment and processing
instruction starts with ``<`` and every attribute and namespace declaration has ``=``
(base64 attachment text has ``=`` only as padding), so counting those bytes, up to the
limit, bounds what the tree can hold. Only a package over a bound is read token by
token (:func:`_scan`), in constant memory, stopping at the first excess with its line.
The scan reads the bytes' markup as ASCII; a package in another encoding family
(UTF-16, UTF-7, EBCDIC…) is scanned as UTF-8 (:func:`_markup_view`).
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache
from typing import TYPE_CHECKING

from vdx.errors import EnvelopeError

if TYPE_CHECKING:
    from vdx.core.xmlsafe import ParseLimits

_DECLARED = re.compile(rb"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,64})")
_SIGNATURES = (  # the byte patterns libxml2 reads an encoding from, longest first
    (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
    (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"),
    (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),
)
# Encodings in which every byte below 0x80 is that ASCII character, always.
_ASCII_SAFE = re.compile(r"utf[-_]?8(-sig)?|ascii|us-ascii|latin[-_]?1|iso8859[-_]\d+|cp125\d")

_SPACE = rb"[ \t\r\n]"
_NAME = re.compile(rb"[^ \t\r\n/>=<]+")
_ATTRIBUTE = re.compile(
    _SPACE + rb"+([^ \t\r\n/>=<]+)" + _SPACE + rb"*=" + _SPACE + rb"*(\"[^\"<]*\"|'[^'<]*')")
_DECLARATION = re.compile(rb"<\?xml[ \t\r\n]")  # the XML declaration: not a node
_REFERENCE = re.compile(rb"&[^;&]{1,16};")


def check_counts(data: bytes, limits: ParseLimits) -> None:
    """Raise :class:`EnvelopeError` if ``data`` would build a tree over ``limits``."""
    view = _markup_view(data)
    if _may_exceed(view, limits):
        _scan(view, limits)


def _markup_view(data: bytes) -> bytes:
    """``data`` itself when its markup is ASCII, else ``data`` transcoded to UTF-8."""
    codec = None
    if data[:1] != b"<" or data[1:2] == b"\x00":  # a byte order mark or a wide encoding
        codec = next((name for signature, name in _SIGNATURES
                      if data.startswith(signature)), None)
    if codec is None:
        declared = _DECLARED.match(data, len(codecs.BOM_UTF8)
                                   if data.startswith(codecs.BOM_UTF8) else 0)
        if declared is None:
            return data
        codec = declared.group(1).decode("ascii")
    try:
        name = _codec(codec)
        return data if name is None else data.decode(name).encode("utf-8")
    except (LookupError, UnicodeError) as exc:
        raise EnvelopeError("envelope.bad_encoding",
                            f"the package cannot be read as {codec}: {exc}", line=1) from exc


@lru_cache(maxsize=64)
def _codec(declared: str) -> str | None:
    """Python's name for ``declared``, or None when its markup bytes are ASCII."""
    name = codecs.lookup(declared).name
    return None if _ASCII_SAFE.fullmatch(name) else name


def _may_exceed(view: bytes, limits: ParseLimits) -> bool:
    # No node takes less than 4 bytes (<a/>), no attribute less than 5 ( a=""), no
    # namespace declaration less than 9 ( xmlns=""): a small package is within them all.
    size = len(view)
    if size >= 4 * (limits.max_elements + 1) and _more_starts(view, limits.max_elements):
        return True
    if size <= min(5 * limits.max_attributes, 9 * limits.max_namespaces, limits.max_attribute):
        return False
    return _more_equals(view, min(limits.max_attributes, limits.max_namespaces),
                        _long_value(limits.max_attribute))


def _more_starts(view: bytes, limit: int) -> bool:
    """More than ``limit`` bytes ``<`` not followed by ``/`` (start tags, comments,
    processing instructions, CDATA sections, or ``<`` inside one of those)?"""
    find, starts = view.find, view.startswith
    count, pos = 0, view.find(b"<")
    while pos >= 0:
        if not starts(b"</", pos):
            count += 1
            if count > limit:
                return True
        pos = find(b"<", pos + 1)
    return False


def _more_equals(view: bytes, limit: int, long_value: re.Pattern[bytes]) -> bool:
    """More than ``limit`` bytes ``=``, or one followed by a quoted value that may be
    too long (``long_value``: no character takes less than a byte)?"""
    find, long_at = view.find, long_value.match
    count, pos = 0, view.find(b"=")
    while pos >= 0:
        count += 1
        if count > limit or long_at(view, pos + 1) is not None:
            return True
        pos = find(b"=", pos + 1)
    return False


@lru_cache(maxsize=8)
def _long_value(max_value: int) -> re.Pattern[bytes]:
    """Matches after ``=``: a quoted value of more than ``max_value`` bytes."""
    run = max_value + 1
    return re.compile(_SPACE + rb"*(?:\"[^\"<]{%d}|'[^'<]{%d})" % (run, run))


def _scan(view: bytes, limits: ParseLimits) -> None:
    """Read the markup token by token; raise at the first node, attribute or namespace
    declaration over the limits. Malformed markup is left for the parser to name."""
    counts = _Counts(view, limits)
    find, starts = view.find, view.startswith
    pos = find(b"<")
    while pos >= 0:
        if starts(b"</", pos):
            end = pos + 2
        elif starts(b"<!--", pos):
            counts.node(pos)
            end = find(b"-->", pos + 4)
        elif starts(b"<![CDATA[", pos):  # text: joins the text around it
            end = find(b"]]>", pos + 9)
        elif starts(b"<?", pos):
            if not _DECLARATION.match(view, pos):
                counts.node(pos)
            end = find(b"?>", pos + 2)
        elif starts(b"<!", pos):  # a DOCTYPE, refused before; anything else is not XML
            return
        else:
            counts.node(pos)
            end = _start_tag(view, pos, counts)
        if end < 0:
            return
        pos = find(b"<", end)


def _start_tag(view: bytes, pos: int, counts: _Counts) -> int:
    """Count the attributes of the start tag at ``pos``; return where it ends."""
    name = _NAME.match(view, pos + 1)
    end = name.end() if name is not None else pos + 1
    while (attribute := _ATTRIBUTE.match(view, end)) is not None:
        counts.attribute(attribute.start(1), attribute.group(1), attribute.group(2))
        end = attribute.end()
    return end


class _Counts:
    """The running totals of one scan, raising at the first excess."""

    def __init__(self, view: bytes, limits: ParseLimits) -> None:
        self.view, self.limits = view, limits
        self.nodes = self.attributes = self.namespaces = 0

    def node(self, pos: int) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_elements:
            self._refuse("envelope.too_many_elements",
                         f"more than {self.limits.max_elements:,} elements, comments and "
                         f"processing instructions", pos)

    def attribute(self, pos: int, name: bytes, quoted: bytes) -> None:
        if name != b"xmlns" and not name.startswith(b"xmlns:"):
            self.attributes += 1
            if self.attributes > self.limits.max_attributes:
                self._refuse("envelope.too_many_attributes",
                             f"more than {self.limits.max_attributes:,} attributes", pos)
            return
        self.namespaces += 1
        if self.namespaces > self.limits.max_namespaces:
            self._refuse("envelope.too_many_namespaces",
                         f"more than {self.limits.max_namespaces:,} namespace declarations",
                         pos)
        if len(quoted) - 2 > self.limits.max_attribute:
            length = _characters(quoted[1:-1])
            if length > self.limits.max_attribute:
                self._refuse("envelope.attribute_too_large",
                             f"namespace {name.decode('utf-8', 'replace')} holds "
                             f"{length:,} characters; the limit is "
                             f"{self.limits.max_attribute:,}", pos)

    def _refuse(self, code: str, message: str, pos: int) -> None:
        raise EnvelopeError(code, message, line=self.view.count(b"\n", 0, pos) + 1)


def _characters(value: bytes) -> int:
    """How many characters an attribute value holds once its references are read."""
    return len(_REFERENCE.sub(b"x", value).decode("utf-8", "replace"))
