"""Migration 0009: outbox.id, ledger.seq and ledger_head.seq hold 64-bit values, and the
outbox keeps numbering its rows itself on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import func, insert, inspect, select, text

from tests.support.registry import database
from vdx import store
from vdx.core.ledger import GENESIS_HASH
from vdx.hub import journal

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
BEYOND_32_BITS = 2**31 + 7
NOW = datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
OUTBOX, LEDGER, HEAD = (journal.OutboxRow.__table__, journal.LedgerRow.__table__,
                        journal.LedgerHeadRow.__table__)


def outbox_row() -> dict:
    return {"delivery_id": None, "receipt_id": None, "routing_key": "000.00.00.G22",
            "created_at": NOW, "published_at": None}


def ledger_row(seq: int) -> dict:
    return {"seq": seq, "kind": "accepted", "document_id": None, "sender": "000.00.00.G22",
            "recipient": None, "receipt_id": None, "receipt_sha256": None,
            "created_at": "2026-12-05T14:00:00Z", "prev_hash": GENESIS_HASH,
            "entry_hash": "a" * 64, "hub_signature": b"sig"}


def column_types(engine) -> dict[tuple[str, str], str]:
    inspector = inspect(engine)
    return {(table, column["name"]): str(column["type"]).upper()
            for table, name in (("outbox", "id"), ("ledger", "seq"), ("ledger_head", "seq"))
            for column in inspector.get_columns(table) if column["name"] == name}


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_written_before_keep_their_ids_and_new_ones_number_on(backend, tmp_path):
    with database(backend, tmp_path, revision="0008_gateway_secrets") as engine:
        with engine.begin() as connection:
            first = connection.execute(insert(OUTBOX).returning(OUTBOX.c.id),
                                       outbox_row()).scalar_one()
            connection.execute(insert(LEDGER), ledger_row(1))
            connection.execute(insert(HEAD), {"id": 1, "seq": 1, "entry_hash": "a" * 64})
        assert store.migrate(engine, "0009_wide_ids") == "0009_wide_ids"
        with engine.begin() as connection:
            second = connection.execute(insert(OUTBOX).returning(OUTBOX.c.id),
                                        outbox_row()).scalar_one()
            assert second == first + 1
            assert connection.scalar(select(LEDGER.c.seq)) == 1
            assert connection.scalar(select(HEAD.c.seq)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_beyond_32_bits_are_stored(backend, tmp_path):
    with database(backend, tmp_path) as engine:
        with engine.begin() as connection:
            if backend == "postgresql":
                connection.execute(text(
                    "SELECT setval(pg_get_serial_sequence('outbox', 'id'), :n)"),
                    {"n": BEYOND_32_BITS})
            else:  # SQLite numbers after the largest rowid
                connection.execute(insert(OUTBOX), outbox_row() | {"id": BEYOND_32_BITS})
            made = connection.execute(insert(OUTBOX).returning(OUTBOX.c.id),
                                      outbox_row()).scalar_one()
            assert made == BEYOND_32_BITS + 1
            connection.execute(insert(LEDGER), ledger_row(2**40))
            connection.execute(insert(HEAD), {"id": 1, "seq": 2**40, "entry_hash": "a" * 64})
        with engine.connect() as connection:
            assert connection.scalar(select(func.max(LEDGER.c.seq))) == 2**40
            assert connection.scalar(select(HEAD.c.seq)) == 2**40


@pytest.mark.postgres
def test_postgresql_columns_and_sequence_are_bigint_and_downgrade_back(tmp_path):
    with database("postgresql", tmp_path) as engine:
        assert set(column_types(engine).values()) == {"BIGINT"}
        with engine.connect() as connection:
            assert connection.scalar(text(
                "SELECT data_type FROM pg_sequences WHERE sequencename = 'outbox_id_seq' "
                "AND schemaname = current_schema()")) == "bigint"
        command.downgrade(store._alembic_config(engine), "0008_gateway_secrets")
        assert set(column_types(engine).values()) == {"INTEGER"}
        with engine.connect() as connection:
            assert connection.scalar(text(
                "SELECT data_type FROM pg_sequences WHERE sequencename = 'outbox_id_seq' "
                "AND schemaname = current_schema()")) == "integer"
        assert store.migrate(engine) == store.head_revision()


def test_sqlite_keeps_outbox_id_an_autoincrementing_rowid(tmp_path):
    with database("sqlite", tmp_path) as engine:
        with engine.connect() as connection:
            ddl = connection.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'outbox'"))
        assert "id INTEGER NOT NULL" in ddl and "PRIMARY KEY (id)" in ddl
        # The model agrees with the migrated schema: what the ORM would create is the same.
        compiled = str(OUTBOX.c.id.type.compile(dialect=engine.dialect))
        assert compiled == "INTEGER"
