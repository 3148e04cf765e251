"""Documents' bodies in the journal, on both databases: the exact bytes back, the ids in
the order of the rows, and on SQLite a large body written in pieces, within the
transaction (``vdx.hub.journal.insert_documents``)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tests.support.registry import database
from vdx.hub import journal
from vdx.hub.journal import BODY_IN_PIECES_FROM, DocumentRow, utcnow

SIZES = [10, BODY_IN_PIECES_FROM + 3, 0, BODY_IN_PIECES_FROM - 1, 3 * BODY_IN_PIECES_FROM]


def _row(body: bytes, n: int) -> dict:
    return {"kind": "document", "sender": "000.00.00.G22", "document_id": f"G22,{n}",
            "status_code": None, "business_type": None, "refers_to": None,
            "sha256": "0" * 64, "size": len(body), "received_at": utcnow(),
            "message_id": f"m-{n}", "body": body}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_bodies_come_back_as_they_went_in(backend: str, tmp_path) -> None:
    bodies = [os.urandom(size) for size in SIZES]
    with database(backend, tmp_path) as engine:
        sessions = sessionmaker(engine)
        with sessions.begin() as session:
            ids = journal.insert_documents(
                session, [_row(body, n) for n, body in enumerate(bodies)])
        with sessions() as session:
            stored = dict(session.execute(select(DocumentRow.id, DocumentRow.body)).all())
            ids_by_document = dict(session.execute(
                select(DocumentRow.document_id, DocumentRow.id)).all())
    assert [stored[pk] for pk in ids] == bodies
    assert ids == [ids_by_document[f"G22,{n}"] for n in range(len(bodies))]
    assert ids == sorted(ids)  # inserted in the order of the rows


def test_a_body_written_in_pieces_rolls_back_with_its_transaction(tmp_path) -> None:
    with database("sqlite", tmp_path) as engine:
        sessions = sessionmaker(engine)
        with sessions() as session:
            journal.insert_documents(session,
                                         [_row(os.urandom(2 * BODY_IN_PIECES_FROM), 1)])
            session.rollback()
        with sessions() as session:
            assert session.scalars(select(DocumentRow.id)).all() == []
