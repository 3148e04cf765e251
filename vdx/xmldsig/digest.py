"""The digest of a document without its enveloped signature, attachments streamed.

:func:`signed_content` is the last step of
:func:`vdx.xmldsig.enveloped.check_enveloped_signature`: the enveloped-signature
transform done on the tree (``ds:Signature`` detached), C14N without comments, the
digest compared with the signed ``DigestValue`` in constant time, and what was signed
returned as a tree.

libxml2 canonicalises everything but the text of edXML attachments
(``ContentTransferEncoded``, up to the size of the package; every other text is bounded
by ``ParseLimits.max_text``): for a text node libxml2 allocates about twice its size
before anything reaches Python, and lxml has no C14N output that streams. That text is
escaped and hashed here in chunks instead, so beyond the tree there is one copy of one
attachment's text at a time.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from collections.abc import Callable

from lxml import etree

from vdx.core.xmlsafe import EDXML_NS
from vdx.errors import SignatureError

__all__ = ["signed_content"]

# The one element whose text may be as large as a package: hashed in chunks, not by libxml2.
_ATTACHMENT_TEXT = f"{{{EDXML_NS}}}ContentTransferEncoded"
_DIGEST_HASHES = {"sha256": "sha256", "sha384": "sha384", "sha512": "sha512", "sha1": "sha1"}


def signed_content(tree: etree._ElementTree,
                   locate: Callable[[etree._Element], etree._Element], digest_name: str,
                   expected: bytes, exclusive: bool, prefixes: list[str] | None,
                   consume: bool) -> etree._ElementTree:
    """Hash the C14N of ``tree`` without its ``ds:Signature`` (``locate(root)``, under the
    root of ``tree`` or of its copy), compare it with ``expected``, and return the signed
    content as a tree: ``tree`` itself (``consume``) or a copy (the caller's tree is then
    never modified).

    The node-set hashed is the root element and everything in it (nodes outside the
    root element are not signed), minus ``ds:Signature``, minus comments (C14N without
    comments): the one signxml, the reference, hashes. The tree returned holds exactly
    that node-set.
    """
    root = tree.getroot() if consume else copy.deepcopy(tree.getroot())
    detached = _DetachedSignature(locate(root))
    try:
        digest = _c14n_digest(root, digest_name, exclusive, prefixes)
        if not hmac.compare_digest(digest, expected):
            raise SignatureError("signature.digest_mismatch",
                                 "the document's digest is not the signed DigestValue")
    except BaseException:
        if consume:
            detached.restore()
        raise
    outside = [*root.itersiblings(preceding=True), *root.itersiblings()]
    if outside:  # top-level comments and processing instructions (never in a copy)
        etree.Element("unsigned").extend(outside)
    etree.strip_tags(root, etree.Comment)
    return root.getroottree()


class _DetachedSignature:
    """The enveloped-signature transform, done on the tree: ``ds:Signature`` is taken out
    of its parent and the text that followed it stays where it was (appended to the
    previous sibling's tail or to the parent's text: C14N writes the same text)."""

    def __init__(self, signature: etree._Element) -> None:
        self.signature = signature
        self.parent = parent = signature.getparent()
        self.index = parent.index(signature)
        self.previous = previous = signature.getprevious()
        self.tail = tail = signature.tail
        self.before = previous.tail if previous is not None else parent.text
        if tail:
            if previous is not None:
                previous.tail = (self.before or "") + tail
            else:
                parent.text = (self.before or "") + tail
        signature.tail = None
        parent.remove(signature)

    def restore(self) -> None:
        """Put the signature back (lxml may drop namespace declarations it made
        redundant: the infoset is the same, the serialisation need not be)."""
        self.parent.insert(self.index, self.signature)
        self.signature.tail = self.tail
        if self.previous is not None:
            self.previous.tail = self.before
        else:
            self.parent.text = self.before


def _c14n_digest(root: etree._Element, digest_name: str, exclusive: bool,
                 prefixes: list[str] | None) -> bytes:
    """The digest of the C14N (without comments) of ``root`` as it is now.

    libxml2 canonicalises everything except the attachments' text: for a text node it
    allocates about twice its size (normalised copy, output buffer) before anything
    reaches Python, and lxml has no C14N output that streams (``write_c14n`` hands the
    whole node to ``write()`` at once, after those copies). Each ``ContentTransferEncoded``
    (up to the package size; every other text is bounded by ``ParseLimits.max_text``)
    is swapped, while libxml2 runs, for a stand-in that canonicalises to the same tags
    around a random marker (:class:`_Splice`); its text is then escaped and hashed here
    in chunks in place of the marker: one copy of the text (``.text``) instead of three.
    The tree is changed while this runs and put back after.
    """
    hasher = hashlib.new(_DIGEST_HASHES[digest_name])
    splice = _Splice(root)
    try:
        canonical = etree.tostring(root, method="c14n", exclusive=exclusive,
                                   with_comments=False, inclusive_ns_prefixes=prefixes)
    finally:
        splice.restore()
    view, position = memoryview(canonical), 0
    for marker, element in splice.swapped:  # in document order, as C14N wrote them
        at = canonical.index(marker, position)
        hasher.update(view[position:at])
        _hash_c14n_text(hasher, element.text)
        position = at + len(marker)
    hasher.update(view[position:])
    return hasher.digest()


_CHUNK = 1 << 20  # characters of an attachment's text escaped and hashed at a time


def _hash_c14n_text(hasher: hashlib._Hash, text: str | None) -> None:
    """Hash ``text`` as C14N writes a text node (& < > and CR escaped), chunk by chunk."""
    text = text or ""
    for start in range(0, len(text), _CHUNK):
        chunk = text[start:start + _CHUNK]
        if "&" in chunk or "<" in chunk or ">" in chunk or "\r" in chunk:
            chunk = (chunk.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                     .replace("\r", "&#xD;"))
        hasher.update(chunk.encode("utf-8"))


class _Splice:
    """Swap each ``ContentTransferEncoded`` that holds only text for a stand-in that C14N
    writes with the same tags (same name and prefix, no attributes, the same namespaces
    in scope) around a random marker; :meth:`restore` swaps them back.

    An element that does not fit (attributes, children, namespaces of its own, or a
    stand-in that would get another prefix) stays: libxml2 canonicalises it. A marker
    is 128 random bits: the document cannot contain it, so its first occurrence after
    the previous one is the stand-in's.
    """

    def __init__(self, root: etree._Element) -> None:
        self.swapped: list[tuple[bytes, etree._Element]] = []  # (marker, element)
        self._in_place: list[tuple[etree._Element, etree._Element]] = []  # (stand-in, element)
        try:
            for element in list(root.iter(_ATTACHMENT_TEXT)):
                self._swap(element)
        except BaseException:
            self.restore()
            raise

    def _swap(self, element: etree._Element) -> None:
        parent = element.getparent()
        if parent is None or len(element) or len(element.attrib) \
                or not _declares_nothing(element, parent):
            return
        # Its namespace is looked up in scope by URI: it may come with another prefix.
        stand_in = etree.SubElement(parent, element.tag)
        if stand_in.prefix != element.prefix or stand_in.nsmap != parent.nsmap:
            parent.remove(stand_in)
            return
        marker = secrets.token_hex(16)
        stand_in.text, stand_in.tail = marker, element.tail
        parent.replace(element, stand_in)  # the element leaves with its tail
        self.swapped.append((marker.encode("ascii"), element))
        self._in_place.append((stand_in, element))

    def restore(self) -> None:
        while self._in_place:
            stand_in, element = self._in_place.pop()
            stand_in.getparent().replace(stand_in, element)


def _declares_nothing(element: etree._Element, parent: etree._Element) -> bool:
    """True if ``element`` has the namespaces in scope its parent has (so C14N writes no
    namespace declaration on it, nor on a stand-in without declarations)."""
    if element.nsmap != parent.nsmap:
        return False
    if None not in parent.nsmap or element.prefix is None:
        return True
    # nsmap does not show xmlns="" (the default namespace undeclared); XPath does
    return (sorted(element.xpath("namespace::*"), key=repr)
            == sorted(parent.xpath("namespace::*"), key=repr))
