"""Migration 0010: the console's tables and the journal's new indexes, from 0009, on both
backends; and the report queries that depend on them (Vietnamese days, index use)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import event, insert, inspect, text

from tests.support.registry import database
from vdx import store
from vdx.console import users
from vdx.hub import audit, journal, reports

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội
R, D, DL = journal.ReceiptRow.__table__, journal.DocumentRow.__table__, \
    journal.DeliveryRow.__table__
NEW_INDEXES = {"ix_documents_document_id", "ix_documents_refers_to", "ix_documents_received_at",
               "ix_deliveries_confirmed_at", "ix_receipts_kind_created_at"}


def receipt(kind: str, at: datetime, n: int, **extra) -> dict:
    return {"id": f"r-{kind}-{n}", "kind": kind, "addressee": "000.00.00.G22",
            "document_id": f"doc-{n}", "recipient": extra.get("recipient"),
            "delivery_id": None, "error_code": extra.get("error_code"), "status_code": None,
            "created_at": at, "body": b"<receipt/>"}


def index_names(engine) -> set[str]:
    inspector = inspect(engine)
    return {i["name"] for table in ("documents", "deliveries", "receipts")
            for i in inspector.get_indexes(table)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_from_0009_keeps_the_journal_and_adds_the_console(backend, tmp_path):
    with database(backend, tmp_path, revision="0009_wide_ids") as engine:
        with engine.begin() as connection:
            connection.execute(insert(R), receipt("accepted", NOW, 1))
        assert not NEW_INDEXES & index_names(engine)
        assert "console_users" not in inspect(engine).get_table_names()
        assert store.migrate(engine, "0010_console") == "0010_console"
        assert NEW_INDEXES <= index_names(engine)
        assert {"console_users", "ledger_checks"} <= set(inspect(engine).get_table_names())
        sessions = store.session_factory(engine)
        with sessions.begin() as session:
            assert [r.kind for r in audit.query_receipts(session)] == ["accepted"]
            users.add_user(session, "lan", "admin", "long enough pw", actor="test")
        with sessions.begin() as session:
            with pytest.raises(users.AccountError, match="exists already"):
                users.add_user(session, "lan", "auditor", "long enough pw", actor="test")
        with engine.begin() as connection:  # the database itself holds the rules too
            with pytest.raises(Exception):  # noqa: B017 - either backend's IntegrityError
                connection.execute(text(
                    "INSERT INTO console_users (name, role, password_hash, created_at, "
                    "updated_at, failed_logins) VALUES ('x', 'root', 'h', :t, :t, 0)"),
                    {"t": NOW})
        command.downgrade(store._alembic_config(engine), "0009_wide_ids")
        assert "console_users" not in inspect(engine).get_table_names()
        assert not NEW_INDEXES & index_names(engine)


@pytest.mark.parametrize("backend", BACKENDS)
def test_days_are_vietnamese_days(backend, tmp_path):
    with database(backend, tmp_path) as engine:
        late = datetime(2026, 12, 5, 17, 30, tzinfo=UTC)  # 00:30 on the 6th in Hà Nội
        early = datetime(2026, 12, 5, 16, 30, tzinfo=UTC)  # 23:30 on the 5th
        old = NOW - timedelta(days=45)
        with engine.begin() as connection:
            connection.execute(insert(R), [
                receipt("accepted", late, 1), receipt("accepted", early, 2),
                receipt("delivered", late, 3, recipient="000.00.00.H41"),
                receipt("rejected", late, 4, error_code="envelope.schema"),
                receipt("rejected", early, 5, error_code="envelope.schema"),
                receipt("rejected", late, 6, error_code="signature.digest_mismatch"),
                receipt("accepted", old, 7)])
        with store.session_factory(engine)() as session:
            days = {d.day.isoformat(): d for d in reports.daily_counts(session, 30, NOW)}
            refusals = reports.refusals_per_day(session, 30, NOW)
            volumes = reports.agency_volumes(session, since=NOW - timedelta(days=30))
        assert len(days) == 30 and list(days)[-1] == "2026-12-06"
        assert (days["2026-12-06"].accepted, days["2026-12-06"].delivered,
                days["2026-12-06"].rejected) == (1, 1, 2)
        assert (days["2026-12-05"].accepted, days["2026-12-05"].rejected) == (1, 1)
        assert sum(d.accepted for d in days.values()) == 2  # the old one is out of range
        assert [(r.day.isoformat(), r.code, r.count) for r in refusals] == [
            ("2026-12-05", "envelope.schema", 1), ("2026-12-06", "envelope.schema", 1),
            ("2026-12-06", "signature.digest_mismatch", 1)]
        assert volumes["000.00.00.G22"] == reports.Volume("000.00.00.G22", 2, 0, 3)
        assert volumes["000.00.00.H41"].received == 1


def plans(engine, run) -> list[str]:
    """The query plans of every statement ``run(session)`` issues."""
    statements: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        with store.session_factory(engine)() as session:
            run(session)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    postgres = engine.dialect.name == "postgresql"
    found = []
    with engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        if postgres:  # on a tiny table a scan is cheapest: ask whether an index is usable
            cursor.execute("SET enable_seqscan = off")
        for statement, parameters in statements:
            cursor.execute(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement,
                           parameters)
            found.append("\n".join(str(row[-1] if not postgres else row[0])
                                   for row in cursor.fetchall()))
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_console_queries_use_indexes(backend, tmp_path):
    since = NOW - timedelta(days=30)
    queries = {
        "per day": lambda s: reports.daily_counts(s, 30, NOW),
        "refusals": lambda s: reports.refusals_per_day(s, 30, NOW),
        "volumes": lambda s: reports.agency_volumes(s, since=since),
        "pending": reports.pending_deliveries,
        "timeline": lambda s: audit.document_timeline(s, "doc-1"),
        "statuses": lambda s: audit.current_statuses(s, "doc-1"),
        "by id": lambda s: reports.search_documents(s, document_id="doc-1"),
        "by period": lambda s: reports.search_documents(s, since=since, until=NOW),
    }
    with database(backend, tmp_path) as engine:
        for name, run in queries.items():
            for plan in plans(engine, run):
                if backend == "sqlite":
                    scans = [line for line in plan.splitlines()
                             if line.startswith("SCAN ") and "node_certificates" not in line]
                    assert not scans, (name, plan)
                else:
                    assert "Seq Scan" not in plan, (name, plan)
