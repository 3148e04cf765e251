"""The hub's checks on one submitted package, as named steps.

    check_size → hardened_parse → check_schema → verify_signature → read_package → authorise

Each step is a function that raises a typed :class:`~vdx.errors.VdxError` with a
catalogue code; :func:`admit` runs them in order and returns an :class:`Admitted` package
whose values were read from the *signed* tree only. Deduplication, persistence, publishing
and acknowledgement are the worker's (they touch the database and the broker).

No pika, SQLAlchemy or click here: the steps take plain values and small interfaces.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from vdx.core import envelope, schema
from vdx.core.model import Package, StatusPackage
from vdx.core.quirks import text_of
from vdx.core.routing import Directory, Route, route
from vdx.core.xmlsafe import EDXML_NS, ParseLimits, parse_untrusted
from vdx.errors import EnvelopeError, VdxError
from vdx.xmldsig.verify import claimed_sender


class SignatureCheck(Protocol):
    """What the pipeline needs of the signature verifier (``vdx.xmldsig.verify.Verifier``)."""

    def __call__(self, tree: etree._ElementTree, sender: str) -> etree._ElementTree:
        """Return the signed content of ``tree`` or raise ``SignatureError``."""


@dataclass(frozen=True)
class Admitted:
    """A package that passed every check: what the worker persists and routes."""

    package: Package
    route: Route
    sha256: str
    size: int


def check_size(body: bytes, limits: ParseLimits) -> None:
    if len(body) > limits.max_bytes:
        raise EnvelopeError("envelope.too_large",
                            f"the package is {len(body):,} bytes; the limit is "
                            f"{limits.max_bytes:,}")


def hardened_parse(body: bytes, limits: ParseLimits) -> etree._ElementTree:
    tree = parse_untrusted(body, limits)
    envelope.check_root(tree.getroot())
    return tree


def check_schema(tree: etree._ElementTree) -> None:
    if not schema.is_valid(tree):
        schema.require_valid(tree)


def verify_signature(tree: etree._ElementTree, verify: SignatureCheck) -> etree._ElementTree:
    return verify(tree, claimed_sender(tree))


MAX_DOCUMENT_ID = 512  # the journal's column; the regulation's ids are far shorter


def read_package(signed_tree: etree._ElementTree, *,
                 attachment_data: bool = False) -> Package:
    """The package's values, read from the signed tree. The hub routes the bytes as they
    came, so by default attachments are listed but not decoded (``data`` is empty);
    ``attachment_data=True`` decodes them, for a recipient."""
    package = envelope.from_tree(signed_tree, attachment_data=attachment_data)
    document_id = (package.response_for.document_id if isinstance(package, StatusPackage)
                   else package.document_id)
    if len(document_id) > MAX_DOCUMENT_ID:
        raise EnvelopeError("envelope.schema", f"the DocumentId is {len(document_id)} "
                                               f"characters; at most {MAX_DOCUMENT_ID} are allowed")
    for problem in envelope.identifier_problems(package):
        raise EnvelopeError(problem.code, problem.message, path=problem.path)
    return package


def authorise(package: Package, user_id: str | None, directory: Directory) -> Route:
    return route(package, user_id, directory)


def admit(body: bytes, user_id: str | None, *, limits: ParseLimits,
          verify: SignatureCheck, directory: Directory, sha256: str | None = None) -> Admitted:
    """Run every step on ``body`` published by ``user_id``; raise the first refusal.
    ``sha256``: the body's hex digest, if the caller has it already.

    A refusal of a package parsed far enough to name its DocumentId carries it
    (``VdxError.document_id``), so the ``rejected`` receipt can name it too."""
    check_size(body, limits)
    tree = hardened_parse(body, limits)
    try:
        check_schema(tree)
        signed = verify_signature(tree, verify)
        package = read_package(signed)
        decided = authorise(package, user_id, directory)
    except VdxError as exc:
        exc.document_id = claimed_document_id(tree)
        raise
    return Admitted(package, decided, sha256 or hashlib.sha256(body).hexdigest(),
                    len(body))


_MESSAGE_HEADER = "/".join(f"{{{EDXML_NS}}}{name}"
                           for name in ("edXMLEnvelope", "edXMLHeader", "MessageHeader"))


def claimed_document_id(tree: etree._ElementTree) -> str | None:
    """The DocumentId the (not necessarily valid, nor verified) header names, as an
    accepted package's receipt would name it (a status: the document it is about); None
    unless exactly one is there and it fits in a receipt and the journal."""
    message = tree.getroot().find(_MESSAGE_HEADER)
    if message is None:
        return None
    holder = message
    if message.find(f"{{{EDXML_NS}}}StatusCode") is not None:
        responses = message.findall(f"{{{EDXML_NS}}}ResponseFor")
        if len(responses) != 1:
            return None
        holder = responses[0]
    ids = holder.findall(f"{{{EDXML_NS}}}DocumentId")
    if len(ids) != 1:
        return None
    document_id = text_of(ids[0]) or ""
    if not document_id.strip(" \t\n\r") or len(document_id) > MAX_DOCUMENT_ID:
        return None
    return document_id
