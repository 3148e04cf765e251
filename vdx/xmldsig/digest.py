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
escaped and hashed here in chunks instead, read where the tree keeps it
(:class:`_TreeText`), so beyond the tree no copy of an attachment's text is made (one
chunk of it at a time); where that is not possible, from ``.text``: one copy of one
attachment's text at a time.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import hmac
import secrets
import sys
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
    in chunks in place of the marker, read from the tree's own buffers
    (:func:`_hash_element_text`): no copy of the text instead of three. The tree is
    changed while this runs and put back after.
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
        _hash_element_text(hasher, element)
        position = at + len(marker)
    hasher.update(view[position:])
    return hasher.digest()


_CHUNK = 1 << 20  # characters or bytes of an attachment's text escaped and hashed at a time


def _hash_element_text(hasher: hashlib._Hash, element: etree._Element) -> None:
    """Hash the text of ``element`` (which holds only text: a :class:`_Splice` swapped it)
    as C14N writes it, from the tree's own buffers when :class:`_TreeText` can read them,
    else from ``element.text`` (one copy of it)."""
    pieces = _TreeText.pieces(element)
    if pieces is None:
        _hash_c14n_text(hasher, element.text)
        return
    for piece in pieces:
        for start in range(0, len(piece), _CHUNK):
            _hash_c14n_utf8(hasher, piece[start:start + _CHUNK].tobytes())


def _hash_c14n_text(hasher: hashlib._Hash, text: str | None) -> None:
    """Hash ``text`` as C14N writes a text node (& < > and CR escaped), chunk by chunk."""
    text = text or ""
    for start in range(0, len(text), _CHUNK):
        _hash_c14n_utf8(hasher, text[start:start + _CHUNK].encode("utf-8"))


def _hash_c14n_utf8(hasher: hashlib._Hash, chunk: bytes) -> None:
    """Hash ``chunk`` (UTF-8 text) as C14N writes it. The four escaped characters are
    ASCII, which no byte of a multi-byte UTF-8 sequence is: a chunk may end anywhere."""
    if b"&" in chunk or b"<" in chunk or b">" in chunk or b"\r" in chunk:
        chunk = (chunk.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b">", b"&gt;")
                 .replace(b"\r", b"&#xD;"))
    hasher.update(chunk)


class _XmlNode(ctypes.Structure):
    """The head of libxml2's ``xmlNode`` (``libxml/tree.h``, public API), up to
    ``content``: the same layout in every libxml2 since 2.0."""

    _fields_ = [("private", ctypes.c_void_p), ("type", ctypes.c_int),
                ("name", ctypes.c_void_p), ("children", ctypes.c_void_p),
                ("last", ctypes.c_void_p), ("parent", ctypes.c_void_p),
                ("next", ctypes.c_void_p), ("prev", ctypes.c_void_p),
                ("doc", ctypes.c_void_p), ("ns", ctypes.c_void_p),
                ("content", ctypes.c_void_p)]


def _c_strlen() -> Callable[[int], int] | None:
    """The C library's ``strlen`` (the lengths of libxml2's NUL-terminated strings, as
    lxml measures them), or None where the process's symbols cannot be looked up."""
    if sys.implementation.name != "cpython":
        return None  # another object layout: lxml's struct below is CPython's
    try:
        strlen = ctypes.CDLL(None).strlen
    except (OSError, AttributeError, TypeError):
        return None
    strlen.argtypes, strlen.restype = [ctypes.c_void_p], ctypes.c_size_t
    return strlen


class _TreeText:
    """The text of an element that holds only text, as views on the buffers libxml2 keeps
    it in: lxml reads text only as a ``str`` (``.text``), a copy of the whole attachment.

    lxml's public C API (``lxml/etree.h``) lays an element out as ``struct LxmlElement
    {PyObject_HEAD; _doc; xmlNode *_c_node; _tag}``. The node found there is used only if
    it is an element and names that very Python object back (lxml keeps an element's
    proxy in ``_private``), and its children only if every one is a text or CDATA node:
    what ``.text`` joins (lxml's ``_collectText``) and C14N writes as text. Anything else
    (or no ``strlen``): :meth:`pieces` is None, and the caller reads ``.text``.

    The views are valid while the element lives and its text is not changed: the caller
    holds it and hashes them at once.
    """

    _ELEMENT_NODE, _TEXT_NODE, _CDATA_NODE = 1, 3, 4
    _POINTER = ctypes.sizeof(ctypes.c_void_p)
    _NODE_AT = object.__basicsize__ + _POINTER  # after PyObject_HEAD and _doc
    _strlen = _c_strlen()

    @classmethod
    def pieces(cls, element: etree._Element) -> list[memoryview] | None:
        """Views on the content of each child of ``element``, in order (none for an
        empty one); None if it cannot be read so (see the class)."""
        if (cls._strlen is None or not isinstance(element, etree._Element)
                or type(element).__basicsize__ < cls._NODE_AT + cls._POINTER):
            return None
        address = ctypes.c_void_p.from_address(id(element) + cls._NODE_AT).value
        if not address:
            return None
        node = _XmlNode.from_address(address)
        if node.private != id(element) or node.type != cls._ELEMENT_NODE:
            return None
        pieces = []
        child = node.children
        while child:
            node = _XmlNode.from_address(child)
            if node.type not in (cls._TEXT_NODE, cls._CDATA_NODE) or not node.content:
                return None
            size = cls._strlen(node.content)
            if size:
                pieces.append(memoryview((ctypes.c_char * size).from_address(node.content)))
            child = node.next
        return pieces


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
