"""The VXP answers, as pure functions: values in, JSON-ready dicts out.

Field names and shapes are the ones the VXP SDK reads (``VXP_GATEWAY.md``): every answer
is ``{"status": "OK"|"FAIL", "ErrorCode": "0"|code, "ErrorDesc": …}`` plus the
operation's own fields. A failure's ``ErrorCode`` is the hub's stable catalogue code
(``gateway.stale_request``, ``signature.wrong_signer``…): the SDK only tests it against
``"0"``, and the code tells an administrator exactly what happened.

Times are ISO 8601 in Vietnam time with their offset.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from vdx.errors import VdxError
from vdx.model import VIETNAM_TZ
from vdx.registry import Node

from .mailbox import MailboxItem, SentLine

SERVICE_TYPE = "eDoc"
# HTTP status of a refusal, by error code (anything else is a business answer: 200).
_HTTP_STATUS = {
    "gateway.unknown_system": 401, "gateway.bad_signature": 401,
    "gateway.header_mismatch": 401, "gateway.stale_request": 401,
    "gateway.replayed_request": 401, "gateway.not_your_node": 403,
    "gateway.bad_request": 400, "gateway.hash_mismatch": 400,
    "envelope.too_large": 413, "transport.unavailable": 503,
}
_STATE_DESC = {"new": "chưa nhận (not yet acknowledged)", "processing": "đang xử lý (processing)",
               "fail": "nhận lỗi, chờ nhận lại (failed, offered again)"}


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": "OK", "ErrorCode": "0", "ErrorDesc": "Success", **fields}


def fail(error: VdxError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and answer for a refusal; the message says what to do."""
    answer = {"status": "FAIL", "ErrorCode": error.code,
              "ErrorDesc": f"{error.message} ({error.spec.vi})"}
    return _HTTP_STATUS.get(error.code, 200), answer


def internal_error(reference: str) -> dict[str, Any]:
    return {"status": "FAIL", "ErrorCode": "gateway.internal",
            "ErrorDesc": f"the gateway failed unexpectedly; nothing was changed by this "
                         f"request (reference {reference} in the gateway's log)"}


def encode(answer: dict[str, Any]) -> bytes:
    # ASCII only: the SDK reads sendEdoc's answer as US-ASCII, so any other byte would
    # reach the agency's software garbled; \\u escapes survive every reader.
    return json.dumps(answer, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def vxp_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(VIETNAM_TZ).isoformat(timespec="seconds")


def received_item(item: MailboxItem) -> dict[str, str]:
    """One entry of ``getReceivedEdocList``; ``docId`` is the hub's delivery id."""
    return {"docId": item.message_id, "serviceType": SERVICE_TYPE, "messageType": item.kind,
            "created_time": vxp_time(item.received_at), "updated_time": vxp_time(item.updated_at),
            "from": item.sender or "", "to": item.node_code, "status": item.state,
            "status_desc": item.status_desc or _STATE_DESC.get(item.state, item.state)}


def sent_item(line: SentLine) -> dict[str, str]:
    """One entry of ``getSentEdocList``: a sent package as one recipient got it.

    ``senderDocId`` is the DocId ``sendEdoc`` answered; ``receiverDocId`` is the hub's
    delivery id, the docId the recipient lists if it uses a gateway too.
    """
    delivered = line.delivered_at is not None
    send_status = "delivered" if delivered and line.send_status != "rejected" else \
        line.send_status
    desc = line.send_status_desc or {"pending": "sent to the hub, no receipt yet"}.get(
        line.send_status, "")
    if delivered and send_status == "delivered":
        desc = "durably queued for the recipient by the hub"
    if line.signed_by_gateway:
        desc += " (signed by the gateway with the sender's key)"
    return {"serviceType": SERVICE_TYPE, "senderDocId": line.doc_id,
            "receiverDocId": line.delivery_id or "", "fromCode": line.from_code,
            "toCode": line.to_code or "", "title": line.title or "",
            "notation": line.notation or "", "messageType": line.kind,
            "sentTime": vxp_time(line.sent_at), "receivedTime": vxp_time(line.delivered_at),
            "sendStatus": send_status, "sendStatusDesc": desc.strip(),
            "receiveStatus": line.receive_status or "",
            "receiveStatusDesc": line.receive_status_desc or ""}


def agency(node: Node) -> dict[str, str]:
    """One entry of ``getAgenciesList``: the registry's node, its code as its id."""
    return {"id": node.code, "pid": node.parent_code or "", "code": node.code,
            "name": node.name, "mail": node.email or "", "oldCode": ""}


def agency_qd20(node: Node) -> dict[str, str]:
    """One entry of ``getAgenciesListQD20``; ``code102`` is the code when it is in the
    QCVN 102:2016 form (the registry keeps one code per node)."""
    code102 = node.code if _is_qcvn102(node.code) else ""
    return {"id": node.code, "code": node.code, "name": node.name, "mail": node.email or "",
            "code102": code102}


def agency_level(code: str) -> int:
    """The administrative level of a code: QCVN 102 ``000.00.00.G22`` is 1 and each
    non-zero group to the left adds one; Decision 20 ``H41.01.05`` counts its groups."""
    if _is_qcvn102(code):
        return 1 + sum(1 for group in code.split(".")[:3] if group.strip("0"))
    return code.count(".") + 1


def _is_qcvn102(code: str) -> bool:
    parts = code.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts[:3])
