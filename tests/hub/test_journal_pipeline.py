"""A batch's transaction in ``journal.pipelined`` (one psycopg pipeline on PostgreSQL,
nothing on SQLite) writes what the plain path writes: the rows, their ids in order, the
ledger chained from its head, confirmations claimed once; and a duplicate key still
surfaces as SQLAlchemy's ``IntegrityError``, the whole transaction rolled back."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tests.support.registry import database
from vdx.core.ledger import GENESIS_HASH, verify_chain
from vdx.hub import journal
from vdx.hub.journal import (
    DeliveryRow,
    DocumentRow,
    InboundRow,
    LedgerHeadRow,
    LedgerRow,
    OutboxRow,
    utcnow,
)

BACKENDS = ["sqlite", "postgresql"]


def _sign(digest: bytes) -> bytes:
    return b"sig:" + digest


def _write_batch(session: Session, n: int, prefix: str) -> tuple[list[int], list[int]]:
    """What the worker writes for ``n`` documents of one recipient each."""
    now = utcnow()
    journal.insert_rows(session, InboundRow, [
        {"key": f"{prefix}-{i}", "sha256": "a" * 64, "outcome": "accepted", "at": now}
        for i in range(n)])
    pks = journal.insert_documents(session, [
        {"kind": "document", "sender": "000.00.00.G22", "document_id": f"{prefix},{i}",
         "status_code": None, "business_type": 0, "refers_to": None, "sha256": "b" * 64,
         "message_id": f"m-{prefix}-{i}", "size": 3, "received_at": now,
         "body": f"<{i}>".encode()} for i in range(n)])
    journal.insert_rows(session, DeliveryRow, [
        {"id": f"d-{prefix}-{i}", "document_pk": pk, "dedup_key": f"k-{prefix}-{i}",
         "kind": "document", "sender": "000.00.00.G22", "document_id": f"{prefix},{i}",
         "recipient": "000.00.00.H41", "created_at": now, "confirmed_at": None}
        for i, pk in enumerate(pks)])
    outbox_ids = journal.insert_returning_ids(session, OutboxRow, [
        {"delivery_id": f"d-{prefix}-{i}", "receipt_id": None,
         "routing_key": "000.00.00.H41", "created_at": now} for i in range(n)])
    journal.append_ledger(session, journal.lock_ledger_head(session), [
        {"kind": "accepted", "document_id": f"{prefix},{i}", "sender": "000.00.00.G22",
         "recipient": "000.00.00.H41", "receipt_id": None, "receipt_sha256": None,
         "created_at": now} for i in range(n)], _sign)
    return pks, outbox_ids


def _in_pipeline(session: Session) -> bool:
    driver = session.connection().connection.driver_connection
    return getattr(getattr(driver, "info", None), "pipeline_status", 0) != 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pipelined_batch_writes_what_the_plain_path_writes(backend: str, tmp_path) -> None:
    with database(backend, tmp_path) as engine:
        sessions = sessionmaker(engine)
        with sessions.begin() as session:
            plain = _write_batch(session, 3, "plain")
        with sessions.begin() as session, journal.pipelined(session):
            assert _in_pipeline(session) == (backend == "postgresql")
            piped = _write_batch(session, 4, "piped")
            journal.mark_published(session, plain[1][:2], utcnow())
            first = journal.claim_confirmations(session, ["d-plain-0", "d-plain-1"], utcnow())
            again = journal.claim_confirmations(session, ["d-plain-1", "d-plain-2"], utcnow())
        with sessions() as session:
            documents = dict(session.execute(
                select(DocumentRow.id, DocumentRow.document_id)).all())
            outbox = {row.id: row for row in session.scalars(select(OutboxRow))}
            confirmed = {row.id for row in session.scalars(select(DeliveryRow)) if row.confirmed_at}
            ledger = list(session.scalars(select(LedgerRow).order_by(LedgerRow.seq)))
            head = session.get(LedgerHeadRow, 1)

    for prefix, (pks, outbox_ids) in (("plain", plain), ("piped", piped)):
        assert [documents[pk] for pk in pks] == [f"{prefix},{i}" for i in range(len(pks))]
        assert [outbox[id_].delivery_id for id_ in outbox_ids] == [
            f"d-{prefix}-{i}" for i in range(len(pks))]
    assert piped[0] == sorted(piped[0]) and min(piped[0]) > max(plain[0])
    assert min(piped[1]) > max(plain[1])
    assert {id_ for id_, row in outbox.items() if row.published_at} == set(plain[1][:2])
    assert (first, again) == ({"d-plain-0", "d-plain-1"}, {"d-plain-2"})
    assert confirmed == {"d-plain-0", "d-plain-1", "d-plain-2"}
    entries = [journal.row_to_entry(row) for row in ledger]
    assert [e.seq for e in entries] == list(range(1, 8))
    assert entries[0].prev_hash == GENESIS_HASH
    assert verify_chain(entries, lambda signed, signature: signature == _sign(signed)) == []
    assert (head.seq, head.entry_hash) == (7, entries[-1].entry_hash)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_duplicate_key_in_a_pipeline_is_an_integrity_error_and_rolls_back(
        backend: str, tmp_path) -> None:
    with database(backend, tmp_path) as engine:
        sessions = sessionmaker(engine)
        with sessions.begin() as session:
            _write_batch(session, 1, "first")
        with pytest.raises(IntegrityError):
            with sessions.begin() as session, journal.pipelined(session):
                _write_batch(session, 2, "second")  # queued, not yet failed
                journal.insert_rows(session, InboundRow, [
                    {"key": "first-0", "sha256": "a" * 64, "outcome": "accepted",
                     "at": utcnow()}])
                journal.lock_ledger_head(session)  # waits: the duplicate fails here
        with sessions() as session:
            assert session.scalars(select(InboundRow.key)).all() == ["first-0"]
            assert session.get(LedgerHeadRow, 1).seq == 1
        with sessions.begin() as session, journal.pipelined(session):
            _write_batch(session, 1, "third")  # the connection is usable again
        with sessions() as session:
            assert session.get(LedgerHeadRow, 1).seq == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_naive_time_is_refused_in_a_pipeline(backend: str, tmp_path) -> None:
    with database(backend, tmp_path) as engine:
        sessions = sessionmaker(engine)
        with pytest.raises(Exception, match="naive datetime"):
            with sessions.begin() as session, journal.pipelined(session):
                journal.insert_rows(session, InboundRow, [
                    {"key": "k", "sha256": "a" * 64, "outcome": "accepted",
                     "at": datetime(2026, 12, 6, 12, 0)}])
        with sessions() as session:
            assert session.scalars(select(InboundRow.key)).all() == []
