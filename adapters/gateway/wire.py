"""The VXP answers, as pure functions: values in, JSON-ready dicts out.

Field names and shapes are the ones the VXP SDK reads (``VXP_GATEWAY.md``): every answer
is ``{"status": "OK"|"FAIL", "ErrorCode": "0"|code, "ErrorDesc": …}`` plus the
operation's own fields. A failure's ``ErrorCode`` is the hub's stable catalogue code
(``gateway.stale_request``, ``signature.wrong_signer``…): the SDK only tests it against
``"0"``, and the code tells an administrator exactly what happened.

What the SDK reads, per operation (``javap -c -p`` of ``KnobstickServiceImp`` and
``AgencyServiceImp`` in SDKVXP 2.0.1 and 2.0.0). It reads every field with
``JsonObject.get(name).getAsX()`` and no null check, inside a ``catch (Exception)`` that
prints the trace and hands the caller a result whose fields are all null, so a missing
field, a JSON ``null`` or a wrong type (``getAsJsonArray`` on a string) becomes a
NullPointerException in the agency's own code. The HTTP status is never looked at.

=====================  ================================================  ==================
operation              read on every answer (``getAsString`` unless      a FAIL answer
                       said), then only on success                       also carries
=====================  ================================================  ==================
sendEdoc               status, ErrorCode, ErrorDesc, **DocId**           ``DocId: ""``
getReceivedEdocList    status, ErrorCode, ErrorDesc; if ErrorCode is     ``data: []``
                       "0": data (``getAsJsonArray``), each item's
                       docId … status_desc when present
getSentEdocList        as above; items serviceType … receiveStatusDesc   ``data: []``
getEdoc                status, ErrorCode, ErrorDesc; **data** (2.0.0:    ``data: ""``
                       always; 2.0.1: unless status is "FAIL"),
                       Base64-decoded; a file is written if ErrorCode
                       is "0"
updateStatus           status, ErrorCode, ErrorDesc                      —
countReceiveEdoc,      status, ErrorCode, ErrorDesc; unless status is    ``count: 0``
countReceiveStatus     "FAIL": count (``getAsInt``) (2.0.1 only)
getAgenciesList        status, ErrorCode, ErrorDesc; if ErrorCode is     ``data: []``
                       "0": data (``getAsJsonArray``), items id, pid,
                       code, name, mail (+ oldCode in 2.0.1)
getAgenciesListQD20    as above; items id, code, name, mail, code102     ``data: []``
                       (2.0.1 only)
getSynchronizeUnit     as above; items add version (``getAsInt``),       ``data: []``
                       deleted, isAgency (``getAsBoolean``) — not
                       offered here: refused
registerAgency,        status, ErrorCode, ErrorDesc                      —
deleteAgency
downloadEdoc           nothing: the raw body is saved as the .edxml      an empty body
                       and reported SUCCESS when not empty (2.0.1's
                       downloadEdoc and downloadEdoc2, unauthenticated
                       GETs) — not offered here
=====================  ================================================  ==================

So every FAIL answer, whatever refused the request (authentication, a stale or replayed
request, an unknown document, a bad status, a body too large, a path that is no
operation, the database, an unexpected failure), carries its operation's fields with
neutral values of the right JSON type (:func:`fail`, :data:`FAIL_FIELDS`).

Times are ISO 8601 in Vietnam time with their offset.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from vdx.core.model import VIETNAM_TZ
from vdx.errors import VdxError
from vdx.registry.nodes import Node

from .mailbox import MailboxItem, SentLine

SERVICE_TYPE = "eDoc"
# HTTP status of a refusal, by error code (anything else is a business answer: 200). The
# SDK ignores it; it is there for people and proxies reading the gateway's traffic.
_HTTP_STATUS = {
    "gateway.unknown_system": 401, "gateway.bad_signature": 401,
    "gateway.header_mismatch": 401, "gateway.stale_request": 401,
    "gateway.replayed_request": 401, "gateway.not_your_node": 403,
    "gateway.address_not_allowed": 403, "gateway.wrong_operation": 401,
    "gateway.too_many_requests": 429,
    "gateway.bad_request": 400, "gateway.hash_mismatch": 400,
    "envelope.too_large": 413, "transport.unavailable": 503,
}
# What a FAIL answer adds to status/ErrorCode/ErrorDesc, by operation (the table above).
# An operation missing here reads only those three.
FAIL_FIELDS: dict[str, dict[str, Any]] = {
    "sendEdoc": {"DocId": ""},
    "getReceivedEdocList": {"data": []},
    "getSentEdocList": {"data": []},
    "getEdoc": {"data": ""},
    "countReceiveEdoc": {"count": 0},
    "countReceiveStatus": {"count": 0},
    "getAgenciesList": {"data": []},
    "getAgenciesListQD20": {"data": []},
    "getSynchronizeUnit": {"data": []},
}
# Operations whose answer the SDK saves as the package instead of reading it as JSON.
RAW_BODY = frozenset({"downloadEdoc"})
_STATE_DESC = {"new": "chưa nhận (not yet acknowledged)", "processing": "đang xử lý (processing)",
               "fail": "nhận lỗi, chờ nhận lại (failed, offered again)"}


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": "OK", "ErrorCode": "0", "ErrorDesc": "Success", **fields}


def fail(error: VdxError, operation: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and answer refusing ``operation``; the message says what to do.

    The answer carries every field the SDK reads for ``operation``, with neutral values.
    """
    return _HTTP_STATUS.get(error.code, 200), _failure(
        operation, error.code, f"{error.message} ({error.spec.vi})")


def internal_error(reference: str, operation: str) -> dict[str, Any]:
    return _failure(operation, "gateway.internal",
                    f"the gateway failed unexpectedly; nothing was changed by this request "
                    f"(reference {reference} in the gateway's log)")


def _failure(operation: str, code: str, desc: str) -> dict[str, Any]:
    # A deep copy: the table's lists must never be shared with a caller that edits them.
    extra = copy.deepcopy(FAIL_FIELDS.get(operation, {}))
    return {"status": "FAIL", "ErrorCode": code, "ErrorDesc": desc, **extra}


def body(operation: str, answer: dict[str, Any]) -> bytes:
    """The bytes sent for ``answer``: :func:`encode`, except for an operation whose answer
    the SDK saves as the package (:data:`RAW_BODY`): a refusal there is an empty body,
    the only answer that SDK reports as failed instead of saving the JSON as a document."""
    if operation in RAW_BODY and answer.get("status") != "OK":
        return b""
    return encode(answer)


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
