"""vdx.store: migrations, models, constraints and engine settings, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from tests.support.registry import REGISTRY_TABLES, database, empty_tables
from vdx import store
from vdx.store import AdminLogRow, CertificateRow, NodeRow

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
NOW = datetime(2026, 11, 22, 2, 30, tzinfo=UTC)


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request, tmp_path_factory) -> Engine:
    with database(request.param, tmp_path_factory.mktemp("db")) as engine:
        yield engine


@pytest.fixture
def sessions(engine):
    yield store.session_factory(engine)
    empty_tables(engine)


def node(code: str = "000.00.00.G22", **kw) -> NodeRow:
    return NodeRow(code=code, name=kw.get("name", "Văn phòng Chính phủ"), status=kw.get(
        "status", "active"), created_at=NOW, updated_at=NOW)


def cert(code: str = "000.00.00.G22", fingerprint: str = "a" * 64, status: str = "current",
         **kw) -> CertificateRow:
    return CertificateRow(node_code=code, fingerprint=fingerprint, serial="0x1", subject="CN=x",
                          issuer="CN=root", pem="PEM", not_before=NOW,
                          not_after=NOW + timedelta(days=1), status=status, added_at=NOW,
                          retired_at=None, overlap_until=kw.get("overlap_until"))


# ------------------------------------------------------------------------ migrations


def test_migrations_reach_head_and_are_idempotent(engine):
    assert store.current_revision(engine) == store.head_revision()
    assert store.migrate(engine) == store.head_revision()
    assert set(REGISTRY_TABLES) <= set(inspect(engine).get_table_names())


def test_models_match_the_migrations(engine):
    import vdx_adapters.gateway.tables  # noqa: F401  (its tables live on the same Base)

    import vdx.hub.journal  # noqa: F401

    assert {"documents", "deliveries", "ledger"} <= set(store.Base.metadata.tables)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, store.Base.metadata) == []


def test_a_fresh_database_has_no_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert store.current_revision(url) is None
    assert store.migrate(url) == store.head_revision()
    assert store.current_revision(url) == store.head_revision()


# ----------------------------------------------------------------- models and types


def test_times_round_trip_as_aware_utc(sessions):
    hanoi = timezone(timedelta(hours=7))
    with sessions.begin() as session:
        session.add(NodeRow(code="000.00.00.H41", name="UBND Nghệ An", status="active",
                            created_at=datetime(2026, 11, 22, 9, 30, tzinfo=hanoi),
                            updated_at=NOW))
    with sessions() as session:
        row = session.get(NodeRow, "000.00.00.H41")
        assert row.created_at == datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
        assert row.created_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(sessions):
    with pytest.raises(StatementError, match="naive datetime"):
        with sessions.begin() as session:
            session.add(NodeRow(code="000.00.00.H41", name="x", status="active",
                                created_at=datetime(2026, 11, 22), updated_at=NOW))


def test_admin_log_keeps_json_with_vietnamese_text(sessions):
    with sessions.begin() as session:
        session.add(node())
        session.add(AdminLogRow(at=NOW, actor="quản trị", action="register",
                                target="000.00.00.G22", before=None,
                                after={"name": "Văn phòng Chính phủ", "certificates": [1, 2]}))
    with sessions() as session:
        entry = session.scalars(select(AdminLogRow)).one()
        assert entry.before is None
        assert entry.after == {"name": "Văn phòng Chính phủ", "certificates": [1, 2]}


# ------------------------------------------------------------ the database's own rules


def test_a_node_has_at_most_one_current_certificate(sessions):
    with sessions.begin() as session:
        session.add(node())
        session.flush()
        session.add(cert(fingerprint="a" * 64))
        session.add(cert(fingerprint="b" * 64, status="previous", overlap_until=NOW))
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(cert(fingerprint="c" * 64))


def test_a_fingerprint_belongs_to_one_node_only(sessions):
    with sessions.begin() as session:
        session.add_all([node(), node("000.00.00.H41")])
        session.flush()
        session.add(cert())
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(cert("000.00.00.H41"))


def test_certificates_need_a_registered_node(sessions):
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(cert("000.00.00.H99"))


@pytest.mark.parametrize("table,row", [("nodes", lambda: node(status="deleted")),
                                       ("certificates", lambda: cert(status="valid"))])
def test_statuses_are_checked(sessions, table, row):
    if table == "certificates":
        with sessions.begin() as session:
            session.add(node())
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(row())


# --------------------------------------------------------------------------- engines


def test_sqlite_gets_foreign_keys_wal_and_a_busy_timeout(tmp_path):
    engine = store.make_engine(f"sqlite:///{tmp_path / 'nested' / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10000
    engine.dispose()
    assert (tmp_path / "nested").stat().st_mode & 0o777 == 0o700


def test_default_database_is_a_file_in_the_per_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("VDX_DATABASE_URL", raising=False)
    monkeypatch.delenv("VDX_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store.database_url() == f"sqlite:///{tmp_path / 'xdg' / 'vdx' / 'vdx.db'}"
    monkeypatch.setenv("VDX_HOME", str(tmp_path / "home"))
    assert store.vdx_home() == tmp_path / "home"
    assert store.database_url() == f"sqlite:///{tmp_path / 'home' / 'vdx.db'}"
    monkeypatch.setenv("VDX_DATABASE_URL", "postgresql://vdx@db/vdx")
    assert store.database_url() == "postgresql://vdx@db/vdx"


@pytest.mark.parametrize("url,expected", [
    ("postgresql://u:p%40ss@db:5432/vdx", "postgresql+psycopg://u:p%40ss@db:5432/vdx"),
    ("postgres://u@db/vdx", "postgresql+psycopg://u@db/vdx"),
    ("postgresql+psycopg2://u@db/vdx", "postgresql+psycopg2://u@db/vdx"),
    ("sqlite:////var/lib/vdx/vdx.db", "sqlite:////var/lib/vdx/vdx.db"),
])
def test_bare_postgresql_urls_use_psycopg_3(url, expected):
    assert store.normalise_url(url) == expected


def test_migrations_ship_inside_the_package():
    versions = Path(store.MIGRATIONS_DIR) / "versions"
    assert (Path(store.MIGRATIONS_DIR) / "env.py").is_file()
    assert any(p.name.startswith("0001_") for p in versions.glob("*.py"))


def test_sqlite_writers_wait_for_each_other_on_the_writer_lock(tmp_path):
    """Two hub workers' write transactions: the second waits on the flock, not in
    SQLite's polling busy handler, and goes on as soon as the first releases it."""
    import threading
    import time

    from vdx.store import WriterLock, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    first, second = WriterLock(engine), WriterLock(engine)
    entered = threading.Event()

    def take_second() -> None:
        with second:
            entered.set()

    with first:
        thread = threading.Thread(target=take_second)
        thread.start()
        assert not entered.wait(0.2)  # held by the first
        released = time.monotonic()
    assert entered.wait(5)
    assert time.monotonic() - released < 0.5
    thread.join()
    first.close(), second.close()
    assert (tmp_path / "hub.db-writer.lock").exists()


def test_the_writer_lock_is_a_no_op_without_a_sqlite_file():
    from vdx.store import WriterLock, make_engine

    for url in ("sqlite://", "sqlite:///:memory:"):
        with WriterLock(make_engine(url)) as lock:
            assert lock._path is None


def test_sqlite_connections_keep_no_statement_cache(tmp_path):
    """A cached sqlite3 statement keeps its last bound values (a copy of every package body
    the hub inserted with it) until it runs again: the cache is off."""
    from sqlalchemy import event

    from vdx.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    seen = []
    event.listen(engine, "do_connect", lambda _d, _r, _a, kwargs: seen.append(dict(kwargs)))
    with engine.connect():
        pass
    assert seen and seen[0]["cached_statements"] == 0
