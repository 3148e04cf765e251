"""Every string the console shows, in Vietnamese (the default) and English, and how it
writes numbers and times.

:data:`MESSAGES` maps a key to ``(vi, en)``; templates call ``t(key, **values)``.
Times are shown in Vietnam time (UTC+7); numbers group thousands with ``.`` in
Vietnamese and ``,`` in English. Error codes keep their wording from the catalogue in
:mod:`vdx.errors` (each has both languages there), status codes from
:data:`vdx.core.model.STATUS_MEANINGS`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from vdx.core.model import STATUS_MEANINGS, VIETNAM_TZ
from vdx.errors import CATALOGUE

LANGUAGES = ("vi", "en")
DEFAULT = "vi"

MESSAGES: dict[str, tuple[str, str]] = {
    "app_title": ("Bảng điều khiển trục VDX", "VDX hub console"),
    "nav_overview": ("Tổng quan", "Overview"),
    "nav_documents": ("Văn bản", "Documents"),
    "nav_refusals": ("Gói tin bị từ chối", "Refusals"),
    "nav_agencies": ("Cơ quan", "Agencies"),
    "nav_ledger": ("Sổ cái", "Ledger"),
    "other_language": ("English", "Tiếng Việt"),
    "logout": ("Đăng xuất", "Sign out"),
    "signed_in_as": ("Đăng nhập: {name} ({role})", "Signed in as {name} ({role})"),
    "role_auditor": ("kiểm toán viên", "auditor"),
    "role_admin": ("quản trị viên", "admin"),
    "times_note": ("Thời gian theo giờ Việt Nam (UTC+7).", "Times are Vietnam time (UTC+7)."),
    "csv": ("Tải CSV", "Download CSV"),
    "none": ("Không có", "None"),
    # sign-in
    "login_title": ("Đăng nhập", "Sign in"),
    "login_name": ("Tên đăng nhập", "Name"),
    "login_password": ("Mật khẩu", "Password"),
    "login_submit": ("Đăng nhập", "Sign in"),
    "login_failed": ("Tên đăng nhập hoặc mật khẩu không đúng, hoặc tài khoản đang tạm khóa "
                     "sau nhiều lần nhập sai.",
                     "Wrong name or password, or the account is locked for a while after "
                     "repeated failures."),
    # overview
    "accepted": ("Chấp nhận", "Accepted"),
    "rejected": ("Từ chối", "Refused"),
    "delivered": ("Đã chuyển", "Delivered"),
    "chart_title": ("Gói tin mỗi ngày trong 30 ngày qua", "Packages per day, last 30 days"),
    "chart_caption": ("Biểu đồ số gói tin được chấp nhận, bị từ chối và đã chuyển mỗi ngày",
                      "Chart of packages accepted, refused and delivered each day"),
    "day": ("Ngày", "Day"),
    "pending_deliveries": ("Gói tin đang chờ chuyển", "Deliveries pending"),
    "ledger_last_check": ("Lần kiểm tra sổ cái gần nhất", "Last ledger verification"),
    "never_checked": ("Chưa kiểm tra lần nào.", "Never verified."),
    "intact": ("Nguyên vẹn", "Intact"),
    "not_intact": ("KHÔNG nguyên vẹn", "NOT intact"),
    "entries": ("Số mục", "Entries"),
    "receipts_checked": ("Biên nhận đã đối chiếu", "Receipts checked"),
    "head": ("Mục cuối (đầu sổ)", "Head"),
    "head_now": ("Đầu sổ hiện tại", "Current head"),
    "first_fault": ("Lỗi đầu tiên ở mục", "First fault at entry"),
    "problems": ("Số vấn đề", "Problems"),
    "checked_by": ("Người kiểm tra", "Checked by"),
    "time": ("Thời điểm", "Time"),
    "expiring": ("Chứng thư số hết hạn trong 30 ngày tới", "Certificates expiring within 30 days"),
    "agency": ("Cơ quan", "Agency"),
    "serial": ("Số hiệu", "Serial"),
    "status": ("Trạng thái", "Status"),
    "not_after": ("Hết hạn", "Expires"),
    "health": ("Tình trạng hệ thống", "Health"),
    "area": ("Hạng mục", "Area"),
    "detail": ("Chi tiết", "Detail"),
    "fix": ("Cách khắc phục", "Fix"),
    "health_ok": ("tốt", "ok"),
    "health_warning": ("cảnh báo", "warning"),
    "health_error": ("lỗi", "error"),
    # documents
    "search": ("Tìm kiếm", "Search"),
    "document_id": ("Mã văn bản (DocumentId)", "DocumentId"),
    "sender": ("Nơi gửi", "Sender"),
    "recipient": ("Nơi nhận", "Recipient"),
    "recipients": ("Các nơi nhận", "Recipients"),
    "any_status": ("Mọi trạng thái", "Any status"),
    "since": ("Từ ngày", "From"),
    "until": ("Đến hết ngày", "To (inclusive)"),
    "received_at": ("Thời điểm trục nhận", "Received"),
    "size": ("Kích thước (byte)", "Size (bytes)"),
    "no_documents": ("Không có văn bản nào khớp.", "No documents match."),
    "next_page": ("Trang sau →", "Next page →"),
    "prev_page": ("← Trang trước", "← Previous page"),
    "bad_filter": ("Bộ lọc không hợp lệ: {what}", "Unusable filter: {what}"),
    "verify_busy": ("Một lần kiểm tra sổ cái đang chạy; hãy thử lại sau ít phút.",
                    "A ledger verification is already running; try again in a moment."),
    "timeline": ("Hành trình của văn bản", "The document's timeline"),
    "timeline_caption": ("Hành trình theo từng nơi nhận", "Timeline, one lane per party"),
    "event": ("Sự kiện", "Event"),
    "actor": ("Bên thực hiện", "By"),
    "current_status": ("Trạng thái hiện tại của từng nơi nhận", "Each recipient's current status"),
    "receipts": ("Biên nhận do trục ký", "Receipts signed by the hub"),
    "kind": ("Loại", "Kind"),
    "addressee": ("Gửi cho", "Issued to"),
    "view": ("Xem", "View"),
    "proof": ("Tải gói bằng chứng (.zip)", "Download the proof bundle (.zip)"),
    "proof_note": ("Gói bằng chứng giống `vdx audit export`: gói tin đã ký, mọi biên nhận và "
                   "chứng thư số để kiểm tra ngoại tuyến bằng xmlsec1.",
                   "The same bundle as `vdx audit export`: the signed package(s), every "
                   "receipt and the certificates, to check offline with xmlsec1."),
    "proof_note_auditor": ("Gói bằng chứng không kèm nội dung văn bản: mọi biên nhận do trục "
                           "ký (nêu SHA-256 của gói tin) và chứng thư số, để kiểm tra ngoại "
                           "tuyến bằng xmlsec1.",
                           "The proof bundle without the document's content: every receipt "
                           "the hub signed (naming the package's SHA-256) and the "
                           "certificates, to check offline with xmlsec1."),
    "no_record": ("Trục không có bản ghi nào về {what}.", "The hub has no record of {what}."),
    "receipt_title": ("Biên nhận {id}", "Receipt {id}"),
    "receipt_note": ("Nội dung XML của biên nhận đã ký, hiển thị dưới dạng văn bản.",
                     "The signed receipt's XML, shown as text."),
    "ev_submitted": ("Gửi lên trục", "Submitted"),
    "ev_accepted": ("Trục chấp nhận", "Accepted by the hub"),
    "ev_rejected": ("Trục từ chối", "Refused by the hub"),
    "ev_duplicate": ("Bản trùng", "Duplicate"),
    "ev_delivered": ("Đã chuyển", "Delivered"),
    "ev_status": ("Trạng thái {code}: {meaning}", "Status {code}: {meaning}"),
    "ev_business": ("Nghiệp vụ {code}: {meaning}", "Business {code}: {meaning}"),
    "business_1": ("thu hồi", "recall"),
    "business_2": ("cập nhật", "update"),
    "business_3": ("thay thế", "replacement"),
    # refusals
    "refusals_title": ("Gói tin bị từ chối theo mã lỗi, 30 ngày qua",
                       "Refused packages by error code, last 30 days"),
    "code": ("Mã lỗi", "Code"),
    "meaning_vi": ("Ý nghĩa (tiếng Việt)", "Meaning (Vietnamese)"),
    "meaning_en": ("Ý nghĩa (tiếng Anh)", "Meaning (English)"),
    "count": ("Số lượng", "Count"),
    "per_day": ("Theo ngày", "Per day"),
    "refused_packages": ("Các gói tin bị từ chối (chỉ siêu dữ liệu)",
                         "Refused packages (metadata only)"),
    "all_codes": ("Mọi mã lỗi", "Every code"),
    # agencies
    "agencies_title": ("Danh sách cơ quan", "Registered agencies"),
    "name": ("Tên", "Name"),
    "sent": ("Đã gửi", "Sent"),
    "received": ("Đã nhận", "Received"),
    "refused": ("Bị từ chối", "Refused"),
    "volumes_note": ("Khối lượng trong 30 ngày qua.", "Volumes over the last 30 days."),
    "node_active": ("đang hoạt động", "active"),
    "node_suspended": ("tạm dừng", "suspended"),
    "node_revoked": ("đã thu hồi", "revoked"),
    "cert_current": ("đang dùng", "current"),
    "cert_previous": ("trước đó", "previous"),
    "cert_retired": ("đã thôi dùng", "retired"),
    "cert_history": ("Lịch sử chứng thư số", "Certificate history"),
    "not_before": ("Hiệu lực từ", "Valid from"),
    "fingerprint": ("Dấu vân tay SHA-256", "SHA-256 fingerprint"),
    "admin_log": ("Nhật ký quản trị", "Admin log"),
    "action": ("Hành động", "Action"),
    "suspend": ("Tạm dừng", "Suspend"),
    "resume": ("Cho hoạt động lại", "Resume"),
    "done_suspend": ("Đã tạm dừng {code}.", "{code} is suspended."),
    "done_resume": ("{code} đã hoạt động lại.", "{code} is active again."),
    "parent": ("Cơ quan cấp trên", "Parent agency"),
    "email": ("Thư điện tử", "E-mail"),
    # ledger
    "ledger_title": ("Sổ cái biên nhận", "The receipts ledger"),
    "ledger_intro": ("Kiểm tra toàn bộ chuỗi băm, mọi chữ ký của trục và đối chiếu từng biên "
                     "nhận với mục của nó (như `vdx audit verify`).",
                     "Checks the whole hash chain, every hub signature and each receipt "
                     "against its entry (as `vdx audit verify` does)."),
    "run_verify": ("Kiểm tra sổ cái ngay", "Verify the ledger now"),
    "position": ("Vị trí (seq)", "Position (seq)"),
    "message": ("Nội dung", "Message"),
    "no_entry": ("không có mục", "no entry"),
    "result": ("Kết quả", "Result"),
    # errors
    "forbidden": ("Bạn không có quyền thực hiện thao tác này; yêu cầu đã được ghi lại.",
                  "You may not do this; the attempt was logged."),
    "csrf_failed": ("Biểu mẫu đã hết hạn hoặc không hợp lệ; hãy tải lại trang rồi thử lại.",
                    "The form has expired or is not valid; reload the page and try again."),
    "not_found": ("Không tìm thấy trang này.", "There is no such page."),
    "failed": ("Không thực hiện được: {what}", "Could not be done: {what}"),
}


def lang_of(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **values)`` in ``lang``; an unknown key is a bug, raised as KeyError."""
    index = LANGUAGES.index(lang_of(lang))

    def t(key: str, **values: object) -> str:
        text = MESSAGES[key][index]
        return text.format(**values) if values else text

    return t


def number(value: int | float | None, lang: str) -> str:
    if value is None:
        return "–"
    text = f"{value:,}"
    return text.translate(str.maketrans(",.", ".,")) if lang_of(lang) == "vi" else text


def when(value: datetime | None, lang: str, *, seconds: bool = True) -> str:
    """``value`` in Vietnam time: ``dd/mm/yyyy hh:mm:ss`` (vi) or ``yyyy-mm-dd hh:mm:ss``."""
    if value is None:
        return "–"
    local = value.astimezone(VIETNAM_TZ)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return local.strftime(f"%d/%m/%Y {clock}" if lang_of(lang) == "vi" else f"%Y-%m-%d {clock}")


def day(value: date, lang: str) -> str:
    return value.strftime("%d/%m/%Y" if lang_of(lang) == "vi" else "%Y-%m-%d")


def error_text(code: str, lang: str) -> str:
    spec = CATALOGUE.get(code)
    if spec is None:
        return code
    return spec.vi if lang_of(lang) == "vi" else spec.en


def status_meaning(code: str | None, lang: str) -> str:
    meaning = STATUS_MEANINGS.get(code or "")
    if meaning is None:
        return code or ""
    return meaning[0] if lang_of(lang) == "vi" else meaning[1]


def event_text(event: str, lang: str) -> str:
    """A timeline event (:class:`vdx.hub.audit.TimelineEvent` ``event``) in words."""
    t = translator(lang)
    if event.startswith("status "):
        code = event.split(" ", 1)[1]
        return t("ev_status", code=code, meaning=status_meaning(code, lang))
    if event.startswith("business "):
        code = event.split(" ", 1)[1]
        key = f"business_{code}"
        return t("ev_business", code=code,
                 meaning=t(key) if key in MESSAGES else code)
    key = f"ev_{event}"
    return t(key) if key in MESSAGES else event
