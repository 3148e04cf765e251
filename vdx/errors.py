"""One error catalogue, shared by the library, the CLI, logs and receipts.

Every failure the hub can report has a stable code ``<family>.<name>`` (for example
``envelope.too_deep``) with a one-line summary in English and Vietnamese. Codes never
change meaning once published: agency software matches on them.

Raise the family's exception with a code from :data:`CATALOGUE`; the message adds what
is specific to this occurrence, ``line`` and ``path`` locate it in the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    en: str
    vi: str

    @property
    def family(self) -> str:
        return self.code.split(".", 1)[0]


CATALOGUE: dict[str, ErrorCode] = {}


def _define(code: str, en: str, vi: str) -> None:
    CATALOGUE[code] = ErrorCode(code, en, vi)


# -- envelope: the bytes, the XML and the national schema ------------------------------
_define("envelope.empty", "the package is empty", "gói tin rỗng")
_define("envelope.too_large", "the package exceeds the size limit",
        "gói tin vượt quá kích thước cho phép")
_define("envelope.junk_before_xml", "bytes precede the XML declaration",
        "có dữ liệu thừa trước khai báo XML")
_define("envelope.bad_encoding", "the bytes do not match the declared character encoding",
        "dữ liệu không đúng bảng mã ký tự đã khai báo")
_define("envelope.not_xml", "the package is not well-formed XML",
        "gói tin không phải XML hợp lệ về cú pháp")
_define("envelope.dtd_forbidden", "document type declarations (DTD) are not allowed",
        "không được phép khai báo DTD")
_define("envelope.entity_forbidden", "entity references are not allowed",
        "không được phép dùng tham chiếu thực thể")
_define("envelope.xinclude_forbidden", "XInclude is not allowed",
        "không được phép dùng XInclude")
_define("envelope.too_deep", "elements are nested too deeply",
        "các phần tử lồng nhau quá sâu")
_define("envelope.text_too_large", "a text node exceeds the size limit",
        "một nút văn bản vượt quá kích thước cho phép")
_define("envelope.attribute_too_large", "an attribute value exceeds the size limit",
        "một giá trị thuộc tính vượt quá kích thước cho phép")
_define("envelope.too_many_elements",
        "the package has too many elements, comments or processing instructions",
        "gói tin có quá nhiều phần tử, chú thích hoặc chỉ thị xử lý")
_define("envelope.too_many_attributes", "the package has too many attributes",
        "gói tin có quá nhiều thuộc tính")
_define("envelope.too_many_namespaces", "the package declares too many namespaces",
        "gói tin khai báo quá nhiều không gian tên")
_define("envelope.too_complex", "the package is too complex to be read safely",
        "gói tin quá phức tạp để đọc một cách an toàn")
_define("envelope.wrong_namespace", "the root element is not in the edXML namespace",
        "phần tử gốc không thuộc không gian tên edXML")
_define("envelope.wrong_root", "the root element is not edXML",
        "phần tử gốc không phải edXML")
_define("envelope.schema", "the package does not conform to the edXML schema",
        "gói tin không tuân thủ lược đồ edXML")
_define("envelope.bad_identifier", "an agency identifier is malformed",
        "mã định danh cơ quan không đúng định dạng")
_define("envelope.bad_attachment", "the manifest and the attachments do not agree",
        "danh mục và tệp đính kèm không khớp nhau")
_define("envelope.inconsistent", "the package contradicts itself",
        "nội dung gói tin mâu thuẫn")
_define("envelope.bad_receipt", "the receipt does not conform to the receipt schema",
        "biên nhận không tuân thủ lược đồ biên nhận")

# -- quirk: what live traffic does that the regulation does not, tolerated and named.
#    Never raised: `vdx.check` reports these as warnings beside a verdict of valid --------
_define("quirk.to_places_last",
        "ToPlaces comes after OtherInfo, ResponseFor or SteeringType instead of after DueDate",
        "ToPlaces nằm sau OtherInfo, ResponseFor hoặc SteeringType thay vì ngay sau DueDate")
_define("quirk.empty_response_for", "an empty ResponseFor element refers to no document",
        "phần tử ResponseFor rỗng, không tham chiếu văn bản nào")
_define("quirk.trace_without_organ_id",
        "a TraceHeader names no agency (OrganId missing or the text 'null')",
        "TraceHeader không ghi mã cơ quan (thiếu OrganId hoặc ghi 'null')")
_define("quirk.business_before_trace",
        "Bussiness comes before the TraceHeader elements instead of after them",
        "Bussiness nằm trước các phần tử TraceHeader thay vì sau chúng")
_define("quirk.placeholder_signature",
        "the signature is an edXML placeholder, not an XML-DSig signature",
        "chữ ký là phần tử giữ chỗ trong không gian tên edXML, không phải chữ ký số XML-DSig")
_define("quirk.nonstandard_identifier",
        "an agency identifier is in neither official form (QCVN 102:2016, Decision 20/2020)",
        "mã định danh cơ quan không theo định dạng chính thức (QCVN 102:2016, QĐ 20/2020)")
_define("quirk.manifest_type_differs",
        "the manifest's ContentType differs from the attachment's",
        "ContentType trong danh mục khác với ContentType của tệp đính kèm")
_define("quirk.sender_is_recipient", "the sender is also one of the recipients",
        "cơ quan gửi cũng là một cơ quan nhận")
_define("quirk.sender_unnamed", "From carries no OrganName: the sender is known by its code",
        "From thiếu OrganName: cơ quan gửi chỉ được biết qua mã định danh")

# -- signature: XML-DSig and the certificate behind it ---------------------------------
_define("signature.missing", "the package is not signed", "gói tin chưa được ký số")
_define("signature.placeholder",
        "the package carries only a placeholder signature, not an XML-DSig one",
        "gói tin chỉ có chữ ký giữ chỗ, chưa được ký số XML-DSig")
_define("signature.invalid", "the signature does not verify", "chữ ký số không hợp lệ")
_define("signature.digest_mismatch", "the signed content was changed after signing",
        "nội dung đã bị thay đổi sau khi ký")
_define("signature.weak_algorithm", "the signature uses an algorithm that is not allowed",
        "chữ ký dùng thuật toán không được phép")
_define("signature.bad_transform", "the signature uses a transform that is not allowed",
        "chữ ký dùng phép biến đổi không được phép")
_define("signature.misplaced", "the signature is not where edXML places it",
        "chữ ký không nằm ở vị trí quy định")
_define("signature.multiple", "the package carries more than one signature",
        "gói tin có nhiều hơn một chữ ký")
_define("signature.wrong_signer",
        "the package was not signed with the sender's registered certificate",
        "gói tin không được ký bằng chứng thư đã đăng ký của bên gửi")
_define("signature.untrusted_certificate",
        "the signer certificate does not chain to a trusted root",
        "chứng thư ký không thuộc chuỗi tin cậy")
_define("signature.expired_certificate", "the signer certificate is not valid now",
        "chứng thư ký đã hết hạn hoặc chưa có hiệu lực")
_define("signature.revoked_certificate", "the signer certificate has been revoked",
        "chứng thư ký đã bị thu hồi")
_define("signature.key_usage", "the signer certificate is not meant for document signing",
        "chứng thư ký không dành cho ký văn bản")
_define("signature.revocation_unknown",
        "the revocation status of the signer certificate cannot be established",
        "không xác định được tình trạng thu hồi của chứng thư ký")

# -- registry: which agencies exist and what speaks for them ---------------------------
_define("registry.unknown_node", "the agency is not registered",
        "cơ quan chưa được đăng ký")
_define("registry.node_suspended", "the agency is suspended", "cơ quan đang bị tạm dừng")
_define("registry.node_revoked", "the agency has been revoked", "cơ quan đã bị thu hồi")
_define("registry.duplicate_node", "the agency is already registered",
        "cơ quan đã được đăng ký")
_define("registry.bad_certificate", "the certificate cannot be registered for this agency",
        "chứng thư không thể đăng ký cho cơ quan này")
_define("registry.bad_code", "the agency code is malformed",
        "mã định danh cơ quan không đúng định dạng")
_define("registry.bad_details", "the node's name or contact e-mail is missing or malformed",
        "tên hoặc thư điện tử liên hệ của cơ quan bị thiếu hoặc không đúng định dạng")
_define("registry.certificate_expired", "the certificate is expired or not yet valid",
        "chứng thư đã hết hạn hoặc chưa có hiệu lực")
_define("registry.certificate_wrong_agency", "the certificate was issued to another agency",
        "chứng thư được cấp cho cơ quan khác")
_define("registry.certificate_untrusted", "the certificate does not chain to a trust anchor",
        "chứng thư không thuộc chuỗi tin cậy")
_define("registry.certificate_revoked", "the certificate has been revoked by its issuer",
        "chứng thư đã bị tổ chức cấp thu hồi")
_define("registry.account_taken", "the broker account belongs to another hub on this broker",
        "tài khoản trên hệ thống truyền tin thuộc về một trục khác")
_define("registry.certificate_in_use", "the certificate is already registered to a node",
        "chứng thư đã được đăng ký cho một cơ quan")

# -- routing: who may send what to whom ------------------------------------------------
_define("routing.sender_mismatch", "the package was published under another agency's name",
        "gói tin được gửi dưới danh nghĩa cơ quan khác")
_define("routing.unknown_recipient", "a recipient is not a registered, active agency",
        "cơ quan nhận chưa đăng ký hoặc không hoạt động")
_define("routing.not_allowed", "the sender may not send this status or change this document",
        "bên gửi không có quyền gửi trạng thái hoặc thay đổi văn bản này")
_define("routing.unknown_document", "the document referred to is unknown",
        "không tìm thấy văn bản được tham chiếu")
_define("routing.document_id_reused",
        "the sender already sent other content under this DocumentId to this recipient",
        "cơ quan gửi đã gửi nội dung khác với cùng mã văn bản (DocumentId) này cho cơ quan nhận")

# -- transport: broker, database and retries -------------------------------------------
_define("transport.unavailable", "the broker or the database is unavailable",
        "không kết nối được máy chủ trục hoặc cơ sở dữ liệu")
_define("transport.poison", "the package failed processing repeatedly",
        "gói tin xử lý lỗi nhiều lần")
_define("transport.rate_limited", "the sending node is over its rate or daily volume limit",
        "cơ quan gửi đã vượt giới hạn tốc độ hoặc dung lượng gửi trong ngày")

# -- ledger: the hash-chained record of receipts (reported by the audit, never raised
#    by the hub on a package) ---------------------------------------------------------
_define("ledger.edited", "a ledger entry was changed after the hub wrote it",
        "một mục sổ cái đã bị sửa sau khi trục ghi")
_define("ledger.bad_signature", "a ledger entry does not carry a valid hub signature",
        "một mục sổ cái không có chữ ký hợp lệ của trục")
_define("ledger.deleted", "ledger entries are missing", "sổ cái bị mất mục")
_define("ledger.inserted", "an entry was inserted into the ledger",
        "có mục bị chèn thêm vào sổ cái")
_define("ledger.reordered", "ledger entries are out of order",
        "các mục sổ cái bị đảo thứ tự")
_define("ledger.broken_link", "a ledger entry does not follow the entry before it",
        "mục sổ cái không nối tiếp mục liền trước")
_define("ledger.truncated", "the ledger no longer reaches its recorded head",
        "sổ cái không còn tới mục cuối đã ghi nhận")
_define("ledger.receipt_mismatch", "a stored receipt differs from its ledger entry",
        "biên nhận đã lưu khác với mục sổ cái tương ứng")
_define("ledger.receipt_missing", "a receipt recorded in the ledger is missing",
        "biên nhận đã ghi trong sổ cái bị mất")
_define("ledger.receipt_unrecorded", "a stored receipt is in no ledger entry",
        "biên nhận đã lưu không có trong sổ cái")

# -- gateway: the VXP-compatible HTTP gateway (adapters/gateway) and its systems --------
_define("gateway.unknown_system", "the connected system is not registered",
        "hệ thống kết nối chưa được đăng ký")
_define("gateway.duplicate_system", "the connected system is already registered",
        "hệ thống kết nối đã được đăng ký")
_define("gateway.bad_signature", "the request signature (hash-header) does not verify",
        "chữ ký yêu cầu (hash-header) không hợp lệ")
_define("gateway.header_mismatch", "a signed header differs from the header sent",
        "tiêu đề đã ký khác với tiêu đề được gửi")
_define("gateway.stale_request", "the request timestamp is outside the allowed window",
        "thời điểm yêu cầu nằm ngoài khoảng thời gian cho phép")
_define("gateway.replayed_request", "this signed request was already received",
        "yêu cầu đã ký này đã được nhận trước đó")
_define("gateway.wrong_operation", "this signed request belongs to another operation",
        "yêu cầu đã ký này thuộc về một thao tác khác")
_define("gateway.not_your_node", "the connected system does not serve this agency",
        "hệ thống kết nối không phục vụ cơ quan này")
_define("gateway.bad_request", "a parameter of the request is missing or invalid",
        "tham số của yêu cầu bị thiếu hoặc không hợp lệ")
_define("gateway.hash_mismatch", "hash-file does not match the package sent",
        "hash-file không khớp với gói tin được gửi")
_define("gateway.unknown_document", "no such document in this system's mailbox",
        "không có văn bản này trong hộp thư của hệ thống")
_define("gateway.not_supported", "this operation is an administrator's action on this hub",
        "thao tác này do quản trị viên của trục thực hiện")
_define("gateway.bad_key", "the gateway cannot sign with this key and certificate",
        "cổng kết nối không thể ký bằng khóa và chứng thư này")
_define("gateway.address_not_allowed",
        "the request came from an address this connected system may not use",
        "yêu cầu đến từ địa chỉ không được phép đối với hệ thống kết nối này")
_define("gateway.too_many_requests", "too many requests at once from this address",
        "quá nhiều yêu cầu đồng thời từ địa chỉ này")
_define("gateway.already_done", "the document was already acknowledged as done",
        "văn bản đã được xác nhận nhận xong (done) trước đó")
_define("gateway.internal", "the gateway failed unexpectedly; nothing was changed",
        "cổng kết nối gặp lỗi ngoài dự kiến; không có thay đổi nào được thực hiện")

# -- folder: the folder bridge (adapters/folder) ----------------------------------------
_define("folder.not_a_file",
        "the outbox entry is a symbolic link or not a regular file; it was not read",
        "mục trong outbox là liên kết tượng trưng hoặc không phải tệp thông thường; "
        "tệp không được đọc")


@dataclass(frozen=True)
class Problem:
    """One reported problem: a catalogue code, what happened, and where."""

    code: str
    message: str
    line: int | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "line": self.line, "path": self.path}


class VdxError(Exception):
    """Root of every error the hub raises on purpose; ``code`` is in :data:`CATALOGUE`."""

    family = ""
    # The DocumentId of the package refused, when it was read before the refusal (set by
    # the hub's pipeline, so that the ``rejected`` receipt can name it).
    document_id: str | None = None

    def __init__(
        self, code: str, message: str | None = None, *, line: int | None = None,
        path: str | None = None,
    ) -> None:
        spec = CATALOGUE.get(code)
        if spec is None or (self.family and spec.family != self.family):
            raise ValueError(f"{type(self).__name__} cannot carry code {code!r}")
        self.code = code
        self.message = message or spec.en
        self.line = line
        self.path = path
        super().__init__(f"{code}: {self.message}")

    @property
    def spec(self) -> ErrorCode:
        return CATALOGUE[self.code]

    @property
    def problem(self) -> Problem:
        return Problem(self.code, self.message, self.line, self.path)


class EnvelopeError(VdxError):
    family = "envelope"


class SignatureError(VdxError):
    family = "signature"


class RegistryError(VdxError):
    family = "registry"


class RoutingError(VdxError):
    family = "routing"


class TransportError(VdxError):
    family = "transport"


class LedgerError(VdxError):
    family = "ledger"


class GatewayError(VdxError):
    family = "gateway"


FAMILIES: dict[str, type[VdxError]] = {
    cls.family: cls
    for cls in (EnvelopeError, SignatureError, RegistryError, RoutingError, TransportError)
}
FAMILIES[LedgerError.family] = LedgerError
FAMILIES[GatewayError.family] = GatewayError


def error_for(code: str, message: str | None = None, **where: int | str | None) -> VdxError:
    """Build the exception of the right family for ``code``."""
    return FAMILIES[CATALOGUE[code].family](code, message, **where)  # type: ignore[arg-type]
