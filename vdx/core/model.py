"""Typed, frozen values of an edXML package (QCVN 102:2016).

Field names follow the regulation's elements in snake case. ``None`` means the element is
absent; an empty string means it is present and empty. Dates are :class:`datetime.date`,
timestamps are aware datetimes in Vietnam time (UTC+7).
"""

from __future__ import annotations

import mimetypes
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")

STATUS_MEANINGS: dict[str, tuple[str, str]] = {
    "01": ("Đã đến", "arrived, not yet handled"),
    "02": ("Từ chối tiếp nhận", "refused by the recipient"),
    "03": ("Đã tiếp nhận", "accepted and registered"),
    "04": ("Phân công", "assigned for handling"),
    "05": ("Đang xử lý", "being processed"),
    "06": ("Hoàn thành", "finished"),
    "13": ("Lấy lại", "the sender asks to recall the document"),
    "15": ("Đồng ý", "the recipient agrees to the update/recall request"),
    "16": ("Từ chối", "the recipient refuses the update/recall request"),
}
STATUS_CODES = tuple(STATUS_MEANINGS)


class BusinessDocType:
    """``BussinessDocType`` values."""

    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


@dataclass(frozen=True)
class Organization:
    organ_id: str
    organization_in_charge: str | None = None
    organ_name: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass(frozen=True)
class Code:
    number: str
    notation: str

    def __str__(self) -> str:
        return f"{self.number}/{self.notation}" if self.notation else self.number


@dataclass(frozen=True)
class PromulgationInfo:
    place: str
    date: date


@dataclass(frozen=True)
class DocumentType:
    type: int
    type_name: str
    type_detail: int | None = None


@dataclass(frozen=True)
class SignerInfo:
    full_name: str
    competence: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class OtherInfo:
    priority: int | None = None
    sphere_of_promulgation: str | None = None
    typer_notation: str | None = None
    promulgation_amount: int | None = None
    page_amount: int | None = None
    direction: bool | None = None
    appendixes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ResponseFor:
    organ_id: str
    code: str
    document_id: str
    promulgation_date: date | None = None


@dataclass(frozen=True)
class StaffInfo:
    department: str
    staff: str
    email: str | None = None
    mobile: str | None = None
    department_id: str | None = None
    staff_id: str | None = None


@dataclass(frozen=True)
class TraceHeader:
    """One hop of ``TraceHeaderList``. ``organ_id`` is ``None`` when the element is absent,
    as the live axis writes some of them (it may also be the text ``null``)."""

    organ_id: str | None
    timestamp: datetime


@dataclass(frozen=True)
class Receiver:
    organ_id: str
    receiver_type: int


@dataclass(frozen=True)
class BusinessDocumentInfo:
    document_info: str
    document_receiver: str
    receivers: tuple[Receiver, ...] | None = None


@dataclass(frozen=True)
class ReplacementInfo:
    document_id: str
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Business:
    """``TraceHeaderList/Bussiness``: the lifecycle step this package performs."""

    doc_type: int
    document_id: str | None = None
    reason: str | None = None
    paper: int | None = None
    document_info: BusinessDocumentInfo | None = None
    replacements: tuple[ReplacementInfo, ...] | None = None
    staff_info: StaffInfo | None = None


@dataclass(frozen=True)
class ManifestReference:
    content_id: str
    content_type: str
    attachment_name: str
    description: str | None = None


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    data: bytes = field(repr=False)
    content_id: str = field(default_factory=lambda: f"cid:{uuid.uuid4()}")
    description: str | None = None

    @classmethod
    def from_file(cls, path: str | Path, content_type: str | None = None,
                  description: str | None = None) -> Attachment:
        path = Path(path)
        guessed = mimetypes.guess_type(path.name)[0]
        return cls(path.name, content_type or guessed or "application/octet-stream",
                   path.read_bytes(), description=description)

    @property
    def reference(self) -> ManifestReference:
        return ManifestReference(self.content_id, self.content_type, self.name, self.description)


@dataclass(frozen=True)
class DocumentPackage:
    """An official document sent by ``sender`` to each of ``recipients``."""

    sender: Organization
    recipients: tuple[Organization, ...]
    document_id: str
    code: Code
    promulgation: PromulgationInfo
    document_type: DocumentType
    subject: str
    signer: SignerInfo
    content: str | None = None
    due_date: date | None = None
    to_places: tuple[str, ...] | None = None
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: int | None = None
    trace: tuple[TraceHeader, ...] = ()
    business: Business | None = None
    attachments: tuple[Attachment, ...] = ()
    manifest_version: str = "1.0"

    @property
    def manifest(self) -> tuple[ManifestReference, ...]:
        """The manifest always lists exactly the attachments (parsing checks it)."""
        return tuple(a.reference for a in self.attachments)

    @property
    def kind(self) -> str:
        return "document"


@dataclass(frozen=True)
class StatusPackage:
    """A recipient's (or, for 13, the sender's) status about the document ``response_for``."""

    sender: Organization
    response_for: ResponseFor
    staff: StaffInfo
    status_code: str
    description: str
    timestamp: datetime
    trace: tuple[TraceHeader, ...] = ()

    @property
    def kind(self) -> str:
        return "status"


Package = DocumentPackage | StatusPackage
