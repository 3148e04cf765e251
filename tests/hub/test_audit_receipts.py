"""`vdx audit verify` checks every receipt row against its ledger entry."""
# ruff: noqa: F811 - the fixtures ``db`` and ``exchange`` are imported, then requested

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from tests.hub.test_audit_heads import db, exchange  # noqa: F401
from vdx.hub import journal

R, L = journal.ReceiptRow, journal.LedgerRow


def entry_of(db, receipt_id: str) -> int:
    with db.sessions() as session:
        return session.scalar(select(L.seq).where(L.receipt_id == receipt_id))


def a_receipt(db, kind: str) -> journal.ReceiptRow:
    with db.sessions() as session:
        return session.scalars(select(R).where(R.kind == kind).order_by(R.id).limit(1)).one()


def problems(db) -> list[tuple[str, int | None]]:
    code, report = db.verify()
    assert code == (0 if report["intact"] else 1)
    return [(p["code"], p["seq"]) for p in report["problems"]]


def test_an_intact_hub_verifies_every_receipt(db):
    code, report = db.verify()
    assert code == 0 and report["intact"]
    with db.sessions() as session:
        rows = len(session.scalars(select(R.id)).all())
    assert report["receipts"] == rows and rows >= 7  # 2 documents, 1 status: 6; 1 rejected
    assert "receipts match their entries" in db.cli("audit", "verify").output


def test_an_accepted_receipt_rewritten_as_rejected_is_found(db):
    accepted = a_receipt(db, "accepted")
    with db.sessions.begin() as session:
        session.execute(update(R).where(R.id == accepted.id).values(
            kind="rejected", error_code="signature.invalid"))
    shown = db.cli("receipts", "query", "--document", accepted.document_id,
                   "--status", "rejected", "--json")
    assert accepted.id in shown.stdout  # what the rewrite shows the world
    code, report = db.verify()
    assert code == 1
    (problem,) = report["problems"]
    assert (problem["code"], problem["seq"]) == ("ledger.receipt_mismatch",
                                                 entry_of(db, accepted.id))
    assert "kind is 'rejected' where the ledger has 'accepted'" in problem["message"]
    assert "error_code is 'signature.invalid'" in problem["message"]
    human = db.cli("audit", "verify")
    assert human.exit_code == 1
    assert f"entry {problem['seq']}: ledger.receipt_mismatch" in human.output


def test_a_deleted_receipt_row_is_found(db):
    delivered = a_receipt(db, "delivered")
    with db.sessions.begin() as session:
        session.execute(delete(journal.OutboxRow).where(
            journal.OutboxRow.receipt_id == delivered.id))
        session.execute(delete(R).where(R.id == delivered.id))
    assert problems(db) == [("ledger.receipt_missing", entry_of(db, delivered.id))]


def test_fields_outside_the_ledger_are_held_to_the_signed_receipt(db):
    rejected, delivered = a_receipt(db, "rejected"), a_receipt(db, "delivered")
    with db.sessions() as session:  # the receipt for H41's status package
        status = session.scalars(select(R).where(R.status_code.is_not(None)).limit(1)).first()
    with db.sessions.begin() as session:
        session.execute(update(R).where(R.id == rejected.id)
                        .values(error_code="routing.not_allowed"))
        session.execute(update(R).where(R.id == delivered.id).values(
            delivery_id=str(uuid.uuid4()), created_at=delivered.created_at - timedelta(days=2)))
        session.execute(update(R).where(R.id == status.id).values(status_code="06"))
    code, report = db.verify()
    assert code == 1
    found = {p["seq"]: p["message"] for p in report["problems"]}
    assert set(found) == {entry_of(db, r.id) for r in (rejected, delivered, status)}
    assert "error_code is 'routing.not_allowed'" in found[entry_of(db, rejected.id)]
    assert "delivery_id" in found[entry_of(db, delivered.id)]
    assert "created_at" in found[entry_of(db, delivered.id)]
    assert "status_code is '06'" in found[entry_of(db, status.id)]


def test_a_swapped_body_and_moved_parties_are_found(db):
    accepted, delivered = a_receipt(db, "accepted"), a_receipt(db, "delivered")
    with db.sessions.begin() as session:
        session.execute(update(R).where(R.id == accepted.id).values(
            body=delivered.body, recipient=delivered.recipient))
    ((code, seq),) = problems(db)
    assert (code, seq) == ("ledger.receipt_mismatch", entry_of(db, accepted.id))
    message = db.verify()[1]["problems"][0]["message"]
    assert "recipient" in message and "SHA-256 differs" in message


def test_a_receipt_the_hub_never_issued_is_found(db):
    accepted = a_receipt(db, "accepted")
    forged = str(uuid.uuid4())
    with db.sessions.begin() as session:
        session.execute(insert(R).values(
            id=forged, kind="accepted", addressee=accepted.addressee,
            document_id="invented", recipient=None, delivery_id=None, error_code=None,
            status_code=None, created_at=accepted.created_at, body=accepted.body))
    code, report = db.verify()
    assert code == 1
    assert [(p["code"], p["seq"]) for p in report["problems"]] == \
        [("ledger.receipt_unrecorded", None)]
    assert forged in report["problems"][0]["message"]
    assert "no entry: ledger.receipt_unrecorded" in db.cli("audit", "verify").output


def test_an_edited_ledger_entry_is_reported_once_not_again_for_its_receipt(db):
    accepted = a_receipt(db, "accepted")
    seq = entry_of(db, accepted.id)
    with db.sessions.begin() as session:
        session.execute(update(L).where(L.seq == seq).values(kind="rejected"))
    assert problems(db) == [("ledger.edited", seq)]
