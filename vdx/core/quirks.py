"""What live traffic does that the regulation does not, found in a package's tree.

The live national axis accepts almost anything, so real packages (and the official
EdXML102 library that agency software builds them with) deviate from QCVN 102:2016 in a
few recurring ways. The hub tolerates each one that leaves the package's meaning intact,
and :func:`vdx.check` names it as a warning (a ``quirk.*`` code of the catalogue) beside
a verdict of valid, so that people see what their software writes without the hub
refusing the nation's actual traffic. :func:`vdx.build` never writes any of them.

Every function here reads a tree that passed the hardened parse and the root check and
nothing more: it never assumes the schema held, so :func:`vdx.check` can report quirks
and problems together in one pass.
"""

from __future__ import annotations

from lxml import etree

from vdx.core.identifiers import identifier_problem, node_code_problem
from vdx.core.xmlsafe import EDXML_NS, element_path
from vdx.errors import Problem

_NS = f"{{{EDXML_NS}}}"
PLACEHOLDER_SIGNATURE = f"{_NS}Signature"
# What comes after ToPlaces in the regulation's order; ToPlaces after any of them is the
# live axis's order.
_AFTER_TO_PLACES = frozenset(f"{_NS}{name}" for name in ("OtherInfo", "ResponseFor",
                                                         "SteeringType"))
# The text Java's String.valueOf(null) writes for an OrganId the software never set.
NULL_TEXT = "null"


def message_header(root: etree._Element) -> etree._Element | None:
    return root.find(f"{_NS}edXMLEnvelope/{_NS}edXMLHeader/{_NS}MessageHeader")


def placeholder_signatures(root: etree._Element) -> list[etree._Element]:
    """The edXML-namespace ``Signature`` elements at the signature's place (children of
    ``edXMLHeader``): what legacy software writes where ``ds:Signature`` goes."""
    header = root.find(f"{_NS}edXMLEnvelope/{_NS}edXMLHeader")
    return [] if header is None else header.findall(PLACEHOLDER_SIGNATURE)


def text_of(el: etree._Element | None) -> str | None:
    """An element's text as :mod:`vdx.core.envelope` reads it (``None`` when absent)."""
    if el is None:
        return None
    if len(el) == 0:
        return el.text or ""
    return "".join(el.xpath("text()"))  # text split by comments


def is_empty(el: etree._Element) -> bool:
    """No child element and no text but whitespace (``<ResponseFor/>``)."""
    return not any(isinstance(c.tag, str) for c in el) and not (text_of(el) or "").strip()


def find_quirks(root: etree._Element) -> list[Problem]:
    """Every tolerated deviation in the package under ``root``, as warnings (grouped by
    check; :func:`vdx.check` orders them by line)."""
    found: list[Problem] = []
    message = message_header(root)
    if message is not None:
        found += _to_places_last(message)
        found += _empty_response_for(message)
        found += _sender(message)
    found += _trace_list(root)
    found += [_warning("quirk.placeholder_signature", el,
                       "Signature is in the edXML namespace: a placeholder, not an XML-DSig "
                       "signature; the hub refuses it (signature.placeholder) unless a "
                       "gateway system or folder bridge holding the agency's key replaces it")
              for el in placeholder_signatures(root)]
    found += nonstandard_identifiers(root)
    return found


def nonstandard_identifiers(root: etree._Element) -> list[Problem]:
    """A warning for each ``OrganId`` of the header in neither official form.

    From and To codes that could not even name a node are errors
    (:func:`vdx.core.envelope.identifier_errors`), not reported again here; a trace header's
    ``null`` is :func:`_trace_list`'s.
    """
    header = root.find(f"{_NS}edXMLEnvelope/{_NS}edXMLHeader")
    if header is None:
        return []
    found = []
    for el in header.iter(f"{_NS}OrganId"):
        code = text_of(el) or ""
        parent = el.getparent()
        role = etree.QName(parent).localname if parent is not None else ""
        if role == "TraceHeader" and code.strip() == NULL_TEXT:
            continue
        reason = identifier_problem(code)
        if reason is None or (role in ("From", "To") and node_code_problem(code)):
            continue
        found.append(_warning("quirk.nonstandard_identifier", el,
                              f"{role} {reason}; the hub routes it only if its registry "
                              f"knows this code"))
    return found


def _to_places_last(message: etree._Element) -> list[Problem]:
    found = []
    seen_later_field = None
    for child in message:
        if child.tag in _AFTER_TO_PLACES and seen_later_field is None:
            seen_later_field = etree.QName(child).localname
        elif child.tag == f"{_NS}ToPlaces" and seen_later_field is not None:
            found.append(_warning("quirk.to_places_last", child,
                                  f"ToPlaces comes after {seen_later_field}; the regulation "
                                  f"puts it right after DueDate"))
    return found


def _empty_response_for(message: etree._Element) -> list[Problem]:
    if message.find(f"{_NS}StatusCode") is not None:
        return []  # a status's empty ResponseFor is an error (vdx.core.envelope)
    return [_warning("quirk.empty_response_for", el,
                     "ResponseFor is empty: the document answers no other; it is read as absent")
            for el in message.findall(f"{_NS}ResponseFor") if is_empty(el)]


def _sender(message: etree._Element) -> list[Problem]:
    sender = message.find(f"{_NS}From")
    if sender is None:
        return []
    found = []
    # OrganName is what recipients show; OrganizationInCharge (the body above the
    # sender) is often left out and alone is not worth a warning.
    if sender.find(f"{_NS}OrganName") is None:
        also = ("" if sender.find(f"{_NS}OrganizationInCharge") is not None
                else " (nor OrganizationInCharge)")
        found.append(_warning("quirk.sender_unnamed", sender,
                              f"From has no OrganName{also}: recipients know the sender by "
                              f"its code only"))
    code = text_of(sender.find(f"{_NS}OrganId"))
    for recipient in message.findall(f"{_NS}To"):
        if code is not None and text_of(recipient.find(f"{_NS}OrganId")) == code:
            found.append(_warning("quirk.sender_is_recipient", recipient,
                                  f"{code} sends to itself; it gets its own copy"))
    return found


def _trace_list(root: etree._Element) -> list[Problem]:
    """The business block's place, and trace headers that name no agency."""
    trace_list = root.find(f"{_NS}edXMLEnvelope/{_NS}edXMLHeader/{_NS}TraceHeaderList")
    if trace_list is None:
        return []
    found = []
    business = trace_list.find(f"{_NS}Bussiness")
    if business is not None and any(s.tag == f"{_NS}TraceHeader"
                                    for s in business.itersiblings()):
        found.append(_warning("quirk.business_before_trace", business,
                              "Bussiness comes before the TraceHeader elements (as EdXML102 "
                              "writes it); the regulation puts it after them"))
    for trace in trace_list.findall(f"{_NS}TraceHeader"):
        organ = trace.find(f"{_NS}OrganId")
        if organ is None:
            found.append(_warning("quirk.trace_without_organ_id", trace,
                                  "TraceHeader has no OrganId"))
        elif (text_of(organ) or "").strip() == NULL_TEXT:
            found.append(_warning("quirk.trace_without_organ_id", organ,
                                  "TraceHeader's OrganId is the text 'null'"))
    return found


def _warning(code: str, el: etree._Element, message: str) -> Problem:
    return Problem(code, message, el.sourceline, element_path(el))
