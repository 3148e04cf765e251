"""Migration 0011: PostgreSQL keeps package bodies uncompressed (``STORAGE EXTERNAL``),
so pglz does not compress every base64 attachment to the end only to throw the result
away; a body still comes back byte for byte. SQLite has nothing to change."""

from __future__ import annotations

import os

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.orm import sessionmaker

from tests.support.registry import database
from vdx import store
from vdx.hub import journal
from vdx.hub.journal import DocumentRow, utcnow


def body_storage(engine) -> str:
    """``attstorage`` of documents.body: 'x' extended (compressed), 'e' external."""
    with engine.connect() as connection:
        return connection.scalar(text(
            "SELECT a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = 'documents' AND a.attname = 'body' "
            "AND c.relnamespace = current_schema()::regnamespace"))


def insert(sessions, body: bytes, document_id: str) -> int:
    with sessions.begin() as session:
        [pk] = journal.insert_returning_ids(session, DocumentRow, [{
            "kind": "document", "sender": "000.00.00.G22", "document_id": document_id,
            "status_code": None, "business_type": None, "refers_to": None,
            "sha256": "0" * 64, "size": len(body), "received_at": utcnow(),
            "message_id": None, "body": body}])
    return pk


def stored_size(sessions, pk: int) -> int:
    with sessions() as session:
        return session.scalar(text("SELECT pg_column_size(body) FROM documents WHERE id = :pk"),
                              {"pk": pk})


@pytest.mark.postgres
def test_postgresql_stores_bodies_uncompressed_and_downgrades_back(tmp_path):
    with database("postgresql", tmp_path) as engine:
        assert body_storage(engine) == "e"
        body = b"<edXML>" + b"<a/>" * 1000 + os.urandom(3 << 20).hex().encode() + b"</edXML>"
        sessions = sessionmaker(engine)
        pk = insert(sessions, body, "G22,1")
        with sessions() as session:
            assert session.scalar(select(DocumentRow.body).where(DocumentRow.id == pk)) == body
        assert stored_size(sessions, pk) >= len(body)  # as it is
        command.downgrade(store._alembic_config(engine), "0010_console")
        assert body_storage(engine) == "x"
        assert store.migrate(engine) == store.head_revision() == "0011_body_storage"
        assert body_storage(engine) == "e"


def test_sqlite_migrates_through_it(tmp_path):
    with database("sqlite", tmp_path, revision="0010_console") as engine:
        assert store.migrate(engine) == store.head_revision() == "0011_body_storage"
