"""Read and write edXML packages: bytes ⇄ checked tree ⇄ :mod:`vdx.core.model` values.

``parse(data)`` is what the hub runs on untrusted bytes: hardened parse, root, schema,
model, identifiers, raising the first problem as :class:`EnvelopeError`.
``check(data)`` runs the same checks but collects every problem in one pass, whether or
not the schema held, and names the tolerated quirks of live traffic (:mod:`vdx.core.quirks`)
as warnings, for people.
``build(package)`` writes a schema-valid, unsigned package in the regulation's own form
(never a quirk); ``parse(build(p)) == p``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree

from vdx.core import schema
from vdx.core.identifiers import node_code_problem
from vdx.core.model import (
    VIETNAM_TZ,
    Attachment,
    Business,
    BusinessDocumentInfo,
    Code,
    DocumentPackage,
    DocumentType,
    Organization,
    OtherInfo,
    Package,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPackage,
    TraceHeader,
)
from vdx.core.quirks import find_quirks, is_empty, text_of
from vdx.core.xmlsafe import DEFAULT_LIMITS, EDXML_NS, ParseLimits, element_path, parse_untrusted
from vdx.errors import EnvelopeError, Problem, VdxError

_NS = f"{{{EDXML_NS}}}"
_ORGANIZATION_FIELDS = (
    ("OrganId", "organ_id"), ("OrganizationInCharge", "organization_in_charge"),
    ("OrganName", "organ_name"), ("OrganAdd", "organ_add"), ("Email", "email"),
    ("Telephone", "telephone"), ("Fax", "fax"), ("Website", "website"),
)
_STAFF_FIELDS = (
    ("Department", "department"), ("Staff", "staff"), ("Email", "email"),
    ("Mobile", "mobile"), ("DepartmentId", "department_id"), ("StaffId", "staff_id"),
)


# ====================================================================== reading ======

def load_tree(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> etree._ElementTree:
    """Hardened parse, root and schema check of untrusted bytes (libxml2 only)."""
    tree = parse_untrusted(data, limits)
    check_root(tree.getroot())
    if not schema.is_valid(tree):
        schema.require_valid(tree)  # raises with the precise message
    return tree


def parse(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Package:
    """Return the package in ``data`` or raise the first :class:`EnvelopeError`."""
    package = from_tree(load_tree(data, limits))
    for problem in identifier_problems(package):
        raise EnvelopeError(problem.code, problem.message, path=problem.path)
    return package


@dataclass(frozen=True)
class Verdict:
    """Everything wrong with one package, or its values when nothing is.

    ``warnings`` name what the package does that the regulation does not but the hub
    tolerates (``quirk.*`` codes, :mod:`vdx.core.quirks`); they never make it invalid.
    """

    problems: tuple[Problem, ...]
    package: Package | None = None
    warnings: tuple[Problem, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


def check(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Verdict:
    """Like :func:`parse` but reports every problem it can find, in one pass.

    Bytes that cannot be read as an edXML tree (size, encoding, DTDs, entities, depth,
    root…) give that one problem. Otherwise every layer runs, whatever the one before
    found: the schema, then the package's consistency, the manifest against the
    attachments and the From/To identifiers, each read straight from the tree; and the
    tolerated quirks are listed as warnings. The values are read only when nothing is wrong.
    """
    try:
        tree = parse_untrusted(data, limits)
        check_root(tree.getroot())
    except VdxError as exc:
        return Verdict((exc.problem,))
    root = tree.getroot()
    problems = schema.validate(tree)
    schema_held = not problems
    problems += consistency_problems(root)
    attachment_errors, attachment_warnings = attachment_problems(root)
    problems += attachment_errors
    named = {p.path for p in problems}  # an OrganId the schema refused is not named twice
    problems += [p for p in identifier_errors(root) if p.path not in named]
    warnings = tuple(sorted(find_quirks(root) + attachment_warnings, key=lambda w: w.line or 0))
    package = None
    if schema_held:
        try:
            package = from_tree(tree)
        except VdxError as exc:  # what only reading the values finds (dates, base64)
            if exc.problem not in problems:
                problems.append(exc.problem)
    return Verdict(tuple(problems), None if problems else package, warnings)


def check_root(root: etree._Element) -> None:
    qname = etree.QName(root)
    if qname.localname != "edXML":
        raise EnvelopeError(
            "envelope.wrong_root", f"the root element is {qname.localname!r}, not 'edXML'",
            line=root.sourceline, path=f"/{qname.localname}",
        )
    if qname.namespace != EDXML_NS:
        raise EnvelopeError(
            "envelope.wrong_namespace",
            f"edXML is in namespace {qname.namespace or '(none)'!r}, not {EDXML_NS!r}",
            line=root.sourceline, path="/edXML",
        )


def identifier_problems(package: Package) -> list[Problem]:
    """``envelope.bad_identifier`` for each From or To code that cannot name a node on
    any hub (:func:`vdx.core.identifiers.node_code_problem`). A code merely outside the
    official forms is not a problem here: the registry decides whether it exists."""
    roles = [("From", package.sender.organ_id)]
    if isinstance(package, DocumentPackage):
        roles += [(f"To[{i}]", r.organ_id) for i, r in enumerate(package.recipients, start=1)]
    problems = []
    for role, organ_id in roles:
        reason = node_code_problem(organ_id)
        if reason:
            path = f"/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/{role}/OrganId"
            problems.append(Problem("envelope.bad_identifier", reason, None, path))
    return problems


def identifier_errors(root: etree._Element) -> list[Problem]:
    """:func:`identifier_problems` read from a tree, schema-valid or not."""
    message = root.find(f"{_NS}edXMLEnvelope/{_NS}edXMLHeader/{_NS}MessageHeader")
    if message is None:
        return []
    problems = []
    for role in (_child(message, "From"), *_children(message, "To")):
        organ = None if role is None else _child(role, "OrganId")
        reason = None if organ is None else node_code_problem(_content(organ))
        if reason:
            problems.append(Problem("envelope.bad_identifier", reason, organ.sourceline,
                                    element_path(organ)))
    return problems


def consistency_problems(root: etree._Element) -> list[Problem]:
    """What the schema cannot say about a status package: it has no body, and its
    ``ResponseFor`` (which the schema lets be empty, for documents) names the document."""
    envelope = _child(root, "edXMLEnvelope")
    header = None if envelope is None else _child(envelope, "edXMLHeader")
    message = None if header is None else _child(header, "MessageHeader")
    if message is None or _child(message, "StatusCode") is None:
        return []
    problems = []
    body = _child(envelope, "edXMLBody")
    if body is not None or _child(root, "AttachmentEncoded") is not None:
        where = body if body is not None else _child(root, "AttachmentEncoded")
        problems.append(Problem("envelope.inconsistent", "a status package carries no body",
                                where.sourceline, "/edXML/edXMLEnvelope/edXMLBody"))
    for response in _children(message, "ResponseFor"):
        if is_empty(response):
            problems.append(Problem("envelope.inconsistent", "the status's ResponseFor is "
                                    "empty: a status must name the document it is about",
                                    response.sourceline, element_path(response)))
    return problems


def from_tree(tree: etree._ElementTree, *, attachment_data: bool = True) -> Package:
    """Turn a schema-valid tree into model values (raises on semantic contradictions).

    With ``attachment_data=False`` the manifest is still checked against the attachments
    but their content is not decoded (``Attachment.data`` is empty): the hub routes the
    package's bytes unchanged and never needs it.
    """
    root = tree.getroot()
    header = _req(_req(root, "edXMLEnvelope"), "edXMLHeader")
    message = _req(header, "MessageHeader")
    trace_list = _child(header, "TraceHeaderList")
    trace = () if trace_list is None else tuple(
        TraceHeader(_opt(t, "OrganId"), _timestamp(_text(t, "Timestamp")))
        for t in _children(trace_list, "TraceHeader")
    )
    sender = _organization(_req(message, "From"))
    if _child(message, "StatusCode") is not None:
        for problem in consistency_problems(root):
            raise EnvelopeError(problem.code, problem.message, line=problem.line,
                                path=problem.path)
        return StatusPackage(
            sender=sender,
            response_for=_response_for(_req(message, "ResponseFor")),
            staff=_staff(_req(message, "StaffInfo")),
            status_code=_text(message, "StatusCode"),
            description=_text(message, "Description"),
            timestamp=_timestamp(_text(message, "Timestamp")),
            trace=trace,
        )
    ids = _children(message, "DocumentId")
    if len(ids) != 1:
        raise EnvelopeError("envelope.inconsistent", "DocumentId must appear exactly once",
                            line=ids[-1].sourceline, path=element_path(ids[-1]))
    code = _req(message, "Code")
    promulgation = _req(message, "PromulgationInfo")
    doc_type = _req(message, "DocumentType")
    signer = _req(message, "SignerInfo")
    to_places = _child(message, "ToPlaces")
    other = _child(message, "OtherInfo")
    business = None if trace_list is None else _child(trace_list, "Bussiness")
    return DocumentPackage(
        sender=sender,
        recipients=tuple(_organization(t) for t in _children(message, "To")),
        document_id=_content(ids[0]),
        code=Code(_text(code, "CodeNumber"), _text(code, "CodeNotation")),
        promulgation=PromulgationInfo(
            _text(promulgation, "Place"), _date(_text(promulgation, "PromulgationDate"))
        ),
        document_type=DocumentType(
            int(_text(doc_type, "Type")), _text(doc_type, "TypeName"),
            _opt_int(doc_type, "TypeDetail"),
        ),
        subject=_text(message, "Subject"),
        signer=SignerInfo(
            _text(signer, "FullName"), _opt(signer, "Competence"), _opt(signer, "Position")
        ),
        content=_opt(message, "Content"),
        due_date=_opt_date(message, "DueDate"),
        to_places=None if to_places is None else _texts(to_places, "Place"),
        other_info=None if other is None else _other_info(other),
        # An empty ResponseFor (live traffic) refers to nothing: it is read as absent.
        response_for=tuple(_response_for(r) for r in _children(message, "ResponseFor")
                           if not is_empty(r)),
        steering_type=_opt_int(message, "SteeringType"),
        trace=trace,
        business=None if business is None else _business(business),
        attachments=_attachments(root, attachment_data),
        manifest_version=_manifest_version(root),
    )


def _organization(el: etree._Element) -> Organization:
    return Organization(**{attr: _opt(el, tag) for tag, attr in _ORGANIZATION_FIELDS})


def _staff(el: etree._Element) -> StaffInfo:
    return StaffInfo(**{attr: _opt(el, tag) for tag, attr in _STAFF_FIELDS})


def _response_for(el: etree._Element) -> ResponseFor:
    return ResponseFor(
        _text(el, "OrganId"), _text(el, "Code"), _text(el, "DocumentId"),
        _opt_date(el, "PromulgationDate"),
    )


def _other_info(el: etree._Element) -> OtherInfo:
    appendixes = _child(el, "Appendixes")
    direction = _opt(el, "Direction")
    return OtherInfo(
        priority=_opt_int(el, "Priority"),
        sphere_of_promulgation=_opt(el, "SphereOfPromulgation"),
        typer_notation=_opt(el, "TyperNotation"),
        promulgation_amount=_opt_int(el, "PromulgationAmount"),
        page_amount=_opt_int(el, "PageAmount"),
        direction=None if direction is None else direction.strip() in ("true", "1"),
        appendixes=None if appendixes is None else _texts(appendixes, "Appendix"),
    )


def _business(el: etree._Element) -> Business:
    info = _child(el, "BussinessDocumentInfo")
    replacements = _child(el, "ReplacementInfoList")
    staff = _child(el, "StaffInfo")
    return Business(
        doc_type=int(_text(el, "BussinessDocType")),
        document_id=_opt(el, "DocumentId"),
        reason=_opt(el, "BussinessDocReason"),
        paper=_opt_int(el, "Paper"),
        document_info=None if info is None else _document_info(info),
        replacements=None if replacements is None else tuple(
            ReplacementInfo(_text(r, "DocumentId"), _texts(_req(r, "OrganIdList"), "OrganId"))
            for r in _children(replacements, "ReplacementInfo")
        ),
        staff_info=None if staff is None else _staff(staff),
    )


def _document_info(el: etree._Element) -> BusinessDocumentInfo:
    receivers = _child(el, "ReceiverList")
    return BusinessDocumentInfo(
        _text(el, "DocumentInfo"), _text(el, "DocumentReceiver"),
        None if receivers is None else tuple(
            Receiver(_text(r, "OrganId"), int(_text(r, "ReceiverType")))
            for r in _children(receivers, "Receiver")
        ),
    )


def _manifest_version(root: etree._Element) -> str:
    manifest = root.find(f"{_NS}edXMLEnvelope/{_NS}edXMLBody/{_NS}edXMLManifest")
    return "1.0" if manifest is None else manifest.get("version", "1.0")


def _attachments(root: etree._Element, decode: bool = True) -> tuple[Attachment, ...]:
    for problem in attachment_problems(root)[0]:
        raise EnvelopeError(problem.code, problem.message, line=problem.line,
                            path=problem.path)
    encoded = _child(root, "AttachmentEncoded")
    attachments = []
    for el in [] if encoded is None else _children(encoded, "Attachment"):
        try:
            content = _req(el, "ContentTransferEncoded")
            data = binascii.a2b_base64(content.text or "") if decode else b""
        except binascii.Error as exc:
            raise EnvelopeError("envelope.bad_attachment", f"not base64: {exc}",
                                line=el.sourceline, path=element_path(el)) from exc
        # The attachment's own ContentType is kept: it describes the bytes beside it,
        # where a manifest entry may differ (quirk.manifest_type_differs).
        attachments.append(Attachment(
            name=_text(el, "AttachmentName"), content_type=_text(el, "ContentType"), data=data,
            content_id=_text(el, "ContentId"), description=_opt(el, "Description"),
        ))
    return tuple(attachments)


def attachment_problems(root: etree._Element) -> tuple[list[Problem], list[Problem]]:
    """The manifest against the attachments, read from a tree, schema-valid or not:
    ``(errors, warnings)``. ContentIds are unique, and the manifest lists exactly the
    attachments, each with its name and description (``envelope.bad_attachment``); a
    different ContentType is
    only a warning (``quirk.manifest_type_differs``): EdXML102 writes ``application/zip``
    in every manifest entry whatever the file. Entries without a ContentId are left to
    the schema."""
    manifest = root.find(f"{_NS}edXMLEnvelope/{_NS}edXMLBody/{_NS}edXMLManifest")
    encoded = _child(root, "AttachmentEncoded")
    errors: list[Problem] = []
    warnings: list[Problem] = []
    by_id: dict[str, etree._Element] = {}
    for el in [] if encoded is None else _children(encoded, "Attachment"):
        content_id = _opt(el, "ContentId")
        if content_id is None:
            continue
        if content_id in by_id:
            errors.append(_problem("envelope.bad_attachment", el,
                                   f"two attachments share the ContentId {content_id}"))
        by_id.setdefault(content_id, el)
    seen = set()
    for ref in [] if manifest is None else _children(manifest, "Reference"):
        content_id = _opt(ref, "ContentId")
        if content_id is None:
            continue
        attachment = by_id.get(content_id)
        if attachment is None:
            errors.append(_problem("envelope.bad_attachment", ref,
                                   f"the manifest lists {content_id} but no attachment has it"))
            continue
        seen.add(content_id)
        differs = [name for name in ("AttachmentName", "Description")
                   if _opt(ref, name) != _opt(attachment, name)]
        if differs:
            errors.append(_problem("envelope.bad_attachment", ref,
                                   f"the manifest entry for {content_id} differs from the "
                                   f"attachment ({' and '.join(differs)})"))
        listed_type, actual_type = _opt(ref, "ContentType"), _opt(attachment, "ContentType")
        if listed_type != actual_type:
            warnings.append(_problem(
                "quirk.manifest_type_differs", ref,
                f"the manifest lists {content_id} as {listed_type!r}, the attachment says "
                f"{actual_type!r}; the attachment's type is the one kept"))
    for content_id, el in by_id.items():
        if content_id not in seen:
            errors.append(_problem("envelope.bad_attachment", el,
                                   f"attachment {content_id} is not in the manifest"))
    return errors, warnings


def _problem(code: str, el: etree._Element, message: str) -> Problem:
    return Problem(code, message, el.sourceline, element_path(el))


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return el.find(_NS + name)


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return el.findall(_NS + name)


def _req(el: etree._Element, name: str) -> etree._Element:
    child = el.find(_NS + name)
    if child is None:  # the schema makes this unreachable for checked trees
        raise EnvelopeError("envelope.schema", f"{name} is missing", path=element_path(el))
    return child


_content = text_of  # text split by comments is joined


def _text(el: etree._Element, name: str) -> str:
    return _content(_req(el, name))


def _opt(el: etree._Element, name: str) -> str | None:
    child = _child(el, name)
    return None if child is None else _content(child)


def _texts(el: etree._Element, name: str) -> tuple[str, ...]:
    return tuple(_content(c) for c in _children(el, name))


def _opt_int(el: etree._Element, name: str) -> int | None:
    value = _opt(el, name)
    return None if value is None else int(value)


def _date(value: str) -> date:
    try:
        year, month, day = value.strip().split("/")
        return date(int(year), int(month), int(day))
    except ValueError as exc:
        raise EnvelopeError("envelope.schema", f"{value!r} is not a calendar date") from exc


def _opt_date(el: etree._Element, name: str) -> date | None:
    value = _opt(el, name)
    return None if value is None else _date(value)


def _timestamp(value: str) -> datetime:
    try:
        day, time = value.strip().split(" ")
        hour, minute, second = time.split(":")
        return datetime.combine(_date(day), datetime.min.time(), VIETNAM_TZ).replace(
            hour=int(hour), minute=int(minute), second=int(second))
    except ValueError as exc:
        raise EnvelopeError("envelope.schema", f"{value!r} is not a valid timestamp") from exc


# ====================================================================== writing ======

def build(package: Package) -> bytes:
    """Write ``package`` as a schema-valid, unsigned edXML package (UTF-8)."""
    root = etree.Element(_NS + "edXML", nsmap={"edXML": EDXML_NS})
    envelope = _sub(root, "edXMLEnvelope")
    header = _sub(envelope, "edXMLHeader")
    message = _sub(header, "MessageHeader")
    _put_organization(_sub(message, "From"), package.sender)
    if isinstance(package, StatusPackage):
        _put_status(message, package)
    else:
        _put_document(message, package)
    if package.trace or getattr(package, "business", None) is not None:
        trace_list = _sub(header, "TraceHeaderList")
        for t in package.trace:
            trace = _sub(trace_list, "TraceHeader")
            _opt_sub(trace, "OrganId", t.organ_id)
            _sub(trace, "Timestamp", _format_timestamp(t.timestamp))
        if isinstance(package, DocumentPackage) and package.business is not None:
            _put_business(_sub(trace_list, "Bussiness"), package.business)
    if isinstance(package, DocumentPackage):
        _put_body(root, envelope, package)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _put_document(message: etree._Element, p: DocumentPackage) -> None:
    for recipient in p.recipients:
        _put_organization(_sub(message, "To"), recipient)
    _sub(message, "DocumentId", p.document_id)
    code = _sub(message, "Code")
    _sub(code, "CodeNumber", p.code.number)
    _sub(code, "CodeNotation", p.code.notation)
    promulgation = _sub(message, "PromulgationInfo")
    _sub(promulgation, "Place", p.promulgation.place)
    _sub(promulgation, "PromulgationDate", _format_date(p.promulgation.date))
    doc_type = _sub(message, "DocumentType")
    _sub(doc_type, "Type", str(p.document_type.type))
    _opt_sub(doc_type, "TypeDetail", p.document_type.type_detail)
    _sub(doc_type, "TypeName", p.document_type.type_name)
    _sub(message, "Subject", p.subject)
    _opt_sub(message, "Content", p.content)
    signer = _sub(message, "SignerInfo")
    _opt_sub(signer, "Competence", p.signer.competence)
    _opt_sub(signer, "Position", p.signer.position)
    _sub(signer, "FullName", p.signer.full_name)
    _opt_sub(message, "DueDate", p.due_date)
    if p.to_places is not None:
        places = _sub(message, "ToPlaces")
        for place in p.to_places:
            _sub(places, "Place", place)
    if p.other_info is not None:
        _put_other_info(_sub(message, "OtherInfo"), p.other_info)
    for response in p.response_for:
        _put_response_for(_sub(message, "ResponseFor"), response)
    _opt_sub(message, "SteeringType", p.steering_type)


def _put_status(message: etree._Element, p: StatusPackage) -> None:
    _put_response_for(_sub(message, "ResponseFor"), p.response_for)
    _put_staff(_sub(message, "StaffInfo"), p.staff)
    _sub(message, "StatusCode", p.status_code)
    _sub(message, "Description", p.description)
    _sub(message, "Timestamp", _format_timestamp(p.timestamp))


def _put_organization(el: etree._Element, org: Organization) -> None:
    for tag, attr in _ORGANIZATION_FIELDS:
        _opt_sub(el, tag, getattr(org, attr))


def _put_staff(el: etree._Element, staff: StaffInfo) -> None:
    for tag, attr in _STAFF_FIELDS:
        _opt_sub(el, tag, getattr(staff, attr))


def _put_response_for(el: etree._Element, r: ResponseFor) -> None:
    _sub(el, "OrganId", r.organ_id)
    _sub(el, "Code", r.code)
    _opt_sub(el, "PromulgationDate", r.promulgation_date)
    _sub(el, "DocumentId", r.document_id)


def _put_other_info(el: etree._Element, o: OtherInfo) -> None:
    _opt_sub(el, "Priority", o.priority)
    _opt_sub(el, "SphereOfPromulgation", o.sphere_of_promulgation)
    _opt_sub(el, "TyperNotation", o.typer_notation)
    _opt_sub(el, "PromulgationAmount", o.promulgation_amount)
    _opt_sub(el, "PageAmount", o.page_amount)
    _opt_sub(el, "Direction", o.direction)
    if o.appendixes is not None:
        appendixes = _sub(el, "Appendixes")
        for appendix in o.appendixes:
            _sub(appendixes, "Appendix", appendix)


def _put_business(el: etree._Element, b: Business) -> None:
    _opt_sub(el, "DocumentId", b.document_id)
    _sub(el, "BussinessDocType", str(b.doc_type))
    _opt_sub(el, "BussinessDocReason", b.reason)
    _opt_sub(el, "Paper", b.paper)
    if b.document_info is not None:
        info = _sub(el, "BussinessDocumentInfo")
        _sub(info, "DocumentInfo", b.document_info.document_info)
        _sub(info, "DocumentReceiver", b.document_info.document_receiver)
        if b.document_info.receivers is not None:
            receivers = _sub(info, "ReceiverList")
            for r in b.document_info.receivers:
                receiver = _sub(receivers, "Receiver")
                _sub(receiver, "OrganId", r.organ_id)
                _sub(receiver, "ReceiverType", str(r.receiver_type))
    elif b.replacements is not None:
        replacements = _sub(el, "ReplacementInfoList")
        for r in b.replacements:
            info = _sub(replacements, "ReplacementInfo")
            _sub(info, "DocumentId", r.document_id)
            organs = _sub(info, "OrganIdList")
            for organ_id in r.organ_ids:
                _sub(organs, "OrganId", organ_id)
    if b.staff_info is not None:
        _put_staff(_sub(el, "StaffInfo"), b.staff_info)


def _put_body(root: etree._Element, envelope: etree._Element, p: DocumentPackage) -> None:
    manifest = _sub(_sub(envelope, "edXMLBody"), "edXMLManifest")
    manifest.set("version", p.manifest_version)
    for ref in p.manifest:
        reference = _sub(manifest, "Reference")
        _sub(reference, "ContentId", ref.content_id)
        _sub(reference, "ContentType", ref.content_type)
        _opt_sub(reference, "Description", ref.description)
        _sub(reference, "AttachmentName", ref.attachment_name)
    if p.attachments:
        encoded = _sub(root, "AttachmentEncoded")
        for a in p.attachments:
            attachment = _sub(encoded, "Attachment")
            _sub(attachment, "ContentId", a.content_id)
            _sub(attachment, "AttachmentName", a.name)
            _opt_sub(attachment, "Description", a.description)
            _sub(attachment, "ContentType", a.content_type)
            _sub(attachment, "ContentTransferEncoded", base64.b64encode(a.data).decode("ascii"))


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _NS + name)
    if text is not None:
        el.text = text
    return el


def _opt_sub(parent: etree._Element, name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, date):
        text = _format_date(value)
    else:
        text = str(value)
    _sub(parent, name, text)


def _format_date(value: date) -> str:
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"  # strftime drops zeros < 1000


def _format_timestamp(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(VIETNAM_TZ)
    return f"{_format_date(value)} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"


