"""The national XSDs: fast verdicts with libxml2, precise messages with xmlschema.

libxml2 (``lxml.etree.XMLSchema``) validates a 10 KB package in tens of microseconds and is
the only validator on the hot path. When it says no, the same tree is handed to
``xmlschema`` (pure Python, ~100x slower, loaded on first failure) to say exactly which
element was found where and what the schema expected instead.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

from vdx.core.xmlsafe import EDXML_NS, element_path
from vdx.errors import EnvelopeError, Problem

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_PREFIXES = {EDXML_NS: "", DS_NS: "ds:"}  # edXML names are shown bare
_lock = threading.Lock()


def schema_dir() -> Path:
    return Path(str(resources.files("vdx_schemas")))


def schema_path(name: str = "edxml.xsd") -> Path:
    return schema_dir() / name


_compile_lock = threading.Lock()


def _libxml2_schema(name: str) -> etree.XMLSchema:
    # libxml2 is not safe when two threads compile their first schema at once ("the given
    # type 'anyURI' is not a built-in type"): compile under a lock, once.
    with _compile_lock:
        return _compile_libxml2(name)


@cache
def _compile_libxml2(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(schema_path(name)), parser))


def _xmlschema(name: str):  # -> xmlschema.XMLSchema10, imported lazily: it costs ~150 ms
    with _compile_lock:
        return _compile_xmlschema(name)


@cache
def _compile_xmlschema(name: str):
    import xmlschema

    return xmlschema.XMLSchema10(str(schema_path(name)))


def is_valid(tree: etree._ElementTree, name: str = "edxml.xsd") -> bool:
    """libxml2's verdict alone: the hot path."""
    schema = _libxml2_schema(name)
    with _lock:  # an XMLSchema object keeps its error log: not safe to share across threads
        return schema.validate(tree)


def validate(tree: etree._ElementTree, name: str = "edxml.xsd") -> list[Problem]:
    """Return no problems when ``tree`` conforms, else one ``envelope.schema`` per error."""
    schema = _libxml2_schema(name)
    with _lock:
        if schema.validate(tree):
            return []
        libxml2 = [
            Problem("envelope.schema", e.message, e.line or None, None) for e in schema.error_log
        ]
    return explain(tree, name, libxml2) or libxml2


def require_valid(tree: etree._ElementTree, name: str = "edxml.xsd") -> None:
    """Raise the first problem as :class:`EnvelopeError`."""
    problems = validate(tree, name)
    if problems:
        first = problems[0]
        raise EnvelopeError(first.code, first.message, line=first.line, path=first.path)


def explain(tree: etree._ElementTree, name: str = "edxml.xsd",
            libxml2: list[Problem] = ()) -> list[Problem]:
    """Describe each schema violation with its path, what was found and what was expected.

    ``libxml2``'s messages fill in what was expected where xmlschema cannot say.
    """
    hints = {p.line: p.message for p in libxml2}
    problems = []
    for err in _xmlschema(name).iter_errors(tree):
        elem = err.elem
        index = getattr(err, "index", None)
        if index is not None and elem is not None and 0 <= index < len(elem):
            elem = elem[index]
        if elem is not None and not isinstance(elem.tag, str):
            elem = elem.getparent()
        found = _qname(elem.tag) if elem is not None else "?"
        message = f"{found}: {_reason(err)}"
        previous = elem.getprevious() if index is not None and elem is not None else None
        while previous is not None and not isinstance(previous.tag, str):
            previous = previous.getprevious()
        if previous is not None:
            message += f" (after {_qname(previous.tag)})"
        expected = getattr(err, "expected", None)
        line = elem.sourceline if elem is not None else None
        if expected is not None:
            names = [_qname(getattr(e, "name", None) or str(e)) for e in expected]
            message += f"; expected {' or '.join(names) if names else 'no further element here'}"
        elif "Expected is" in hints.get(line, ""):
            message += "; expected " + _prefixed(hints[line].split("Expected is", 1)[1])
        problems.append(Problem(
            "envelope.schema",
            message,
            line,
            element_path(elem) if elem is not None else err.path,
        ))
    return problems


def _reason(err) -> str:
    reason = (err.reason or err.message or "invalid").strip()
    # xmlschema's children errors name the position; the path already says where.
    if reason.startswith("Unexpected child with tag"):
        return "not allowed here"
    return reason.rstrip(".")


def _prefixed(text: str) -> str:
    for namespace, prefix in _PREFIXES.items():
        text = text.replace(f"{{{namespace}}}", prefix)
    return text.strip(" .()")


def _qname(tag: str) -> str:
    qn = etree.QName(tag)
    prefix = _PREFIXES.get(qn.namespace or "", f"{{{qn.namespace}}}" if qn.namespace else "")
    return prefix + qn.localname
