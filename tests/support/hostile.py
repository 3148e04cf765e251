"""Packages that try to cost the hub more than their size, generated (never committed).

Each case is edXML-shaped (the root is ``edXML`` in the edXML namespace) and just over one
default :class:`~vdx.core.xmlsafe.ParseLimits` limit, so it stays small (at most ~1 MiB)
while going through the same code as the 64 MiB packages of
``bench/bench_parse_memory.py``. :func:`worst` makes those full-size shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from vdx.core.xmlsafe import DEFAULT_LIMITS, EDXML_NS

L = DEFAULT_LIMITS


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    code: str


def _package(inner: bytes, root_attributes: bytes = b"") -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="' + EDXML_NS.encode()
            + b'"' + root_attributes + b">\n" + inner + b"\n</edXML>")


def _attributes(count: int, prefix: bytes = b"a") -> bytes:
    return b"".join(b" %s%d=\"\"" % (prefix, i) for i in range(count))


def _namespaces(count: int) -> bytes:
    return b"".join(b' xmlns:n%d="urn:n%d"' % (i, i) for i in range(count))


def corpus() -> list[Hostile]:
    """One package per worst shape, each refused with its code."""
    over = L.max_elements + 1
    return [
        Hostile("many_elements", _package(b"<a/>" * over), "envelope.too_many_elements"),
        Hostile("many_elements_one_per_line", _package(b"<a/>\n" * over),
                "envelope.too_many_elements"),
        Hostile("many_comments", _package(b"<!---->" * over), "envelope.too_many_elements"),
        Hostile("many_instructions", _package(b"<?p?>" * over), "envelope.too_many_elements"),
        Hostile("many_attributes_on_one_element",
                _package(b"<a" + _attributes(L.max_attributes + 1) + b"/>"),
                "envelope.too_many_attributes"),
        Hostile("many_attributes_spread",
                _package(b"".join(b"<a" + _attributes(10) + b"/>"
                                  for _ in range(L.max_attributes // 10 + 1))),
                "envelope.too_many_attributes"),
        Hostile("many_namespaces", _package(b"<a" + _namespaces(L.max_namespaces + 1) + b"/>"),
                "envelope.too_many_namespaces"),
        Hostile("long_namespace",
                _package(b"<a/>", b' xmlns:n="urn:' + b"n" * L.max_attribute + b'"'),
                "envelope.attribute_too_large"),
        Hostile("huge_text", _package(b"<a>" + b"x" * (L.max_text + 1) + b"</a>"),
                "envelope.text_too_large"),
        Hostile("deep", _package(b"<a>" * 100 + b"</a>" * 100), "envelope.too_deep"),
        Hostile("deeper_than_libxml2", _package(b"<a>" * 3000 + b"</a>" * 3000),
                "envelope.too_deep"),
        Hostile("many_elements_utf16",
                _package(b"<a/>" * over).replace(b"UTF-8", b"UTF-16").decode()
                .encode("utf-16"), "envelope.too_many_elements"),
        Hostile("many_elements_utf7",  # UTF-7 spells '<a/>' without a '<' byte
                _package(b"+ADw-a/+AD4-" * over).replace(b"UTF-8", b"UTF-7"),
                "envelope.too_many_elements"),
    ]


def worst(shape: str, size: int) -> bytes:
    """A package of about ``size`` bytes made of one worst shape (``elements``,
    ``attributes``, ``namespaces`` or ``text``)."""
    if shape == "elements":
        return _package(b"<a/>" * (size // 4))
    if shape == "attributes":
        per = len(b' a1000000=""')
        return _package(b"<a" + _attributes(size // per) + b"/>")
    if shape == "namespaces":
        per = len(b' xmlns:n1000000="urn:n1000000"')
        return _package(b"<a" + _namespaces(size // per) + b"/>")
    if shape == "text":
        return _package(b"<a>" + b"x" * size + b"</a>")
    raise ValueError(shape)
