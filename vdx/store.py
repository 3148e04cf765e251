"""The SQL edge: table models, engines, sessions and migrations (SQLAlchemy 2.x + Alembic).

Where the database is: ``$VDX_DATABASE_URL`` when set (PostgreSQL in production and CI,
e.g. ``postgresql://vdx@db/vdx``); otherwise an embedded SQLite file ``vdx.db`` in the
hub's home directory, :func:`vdx_home` (``$VDX_HOME``, else ``$XDG_DATA_HOME/vdx``, else
``~/.local/share/vdx``): a per-user data directory, so an admin's ``vdx`` commands and a
hub started by the same user find the same registry without configuration, and nothing is
written into the checkout. ``postgresql://`` URLs use psycopg 3 (the driver this project
installs) unless they name another driver.

The registry tables are defined here (nodes, their certificate history, the admin log);
the hub's journal (:mod:`vdx.hub.journal`) adds its own tables on the same :class:`Base` in
later migrations. The schema changes only through the migrations shipped in
``vdx/migrations`` (:func:`migrate`), never through ``create_all``.

The shell owns the session: ``with sessions.begin() as session: ...`` per command or per
batch of messages; repository functions take that session as a parameter.
"""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
NODE_STATUSES = ("active", "suspended", "revoked")
CERT_STATUSES = ("current", "previous", "retired")


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------ types

# Ids that grow with traffic (outbox.id, ledger.seq): 64-bit. On SQLite an INTEGER
# PRIMARY KEY is already 64-bit and only that spelling autoincrements (rowid).
WideId = BigInteger().with_variant(Integer, "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` in, the same aware UTC ``datetime`` out, on every backend.

    SQLite has no time zones and would hand back naive values; PostgreSQL stores
    ``timestamptz``. Naive values are refused on the way in rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Stable constraint names: Alembic migrations (and SQLite batch mode) refer to them by name,
# and both backends must get the same names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table of the hub.

    ``Mapped[datetime]`` columns are :class:`UtcDateTime`: times are aware UTC everywhere.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime()}


# ----------------------------------------------------------------------- registry tables


class NodeRow(Base):
    """A registered agency node. ``code`` never changes and is never reused, even revoked."""

    __tablename__ = "nodes"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended', 'revoked')", name="status"),
    )

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    parent_code: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The node's broker user (vdx.broker.provision.node_account): the AMQP user_id its packages
    # must carry. Recorded, not derived, so a registry from before accounts were named
    # per vhost keeps working until its credentials are reset.
    broker_user: Mapped[str] = mapped_column(
        String(200), unique=True,
        default=lambda context: context.get_current_parameters()["code"])
    # What the hub takes from the node (vdx.hub.limits; None: no limit): packages per
    # second on average, how many at once above that, and bytes of packages per UTC day.
    rate_per_second: Mapped[float | None]
    burst: Mapped[int | None]
    max_bytes_per_day: Mapped[int | None] = mapped_column(BigInteger)


class NodeUsageRow(Base):
    """How much of its limits a node has used: the token bucket of its rate (``tokens``
    left at ``refilled_at``) and the bytes it sent on ``day`` (UTC, ``YYYY-MM-DD``).
    Updated by the hub's workers under a row lock, so the limits hold across workers."""

    __tablename__ = "node_usage"

    code: Mapped[str] = mapped_column(ForeignKey("nodes.code"), primary_key=True)
    tokens: Mapped[float]
    refilled_at: Mapped[datetime]
    day: Mapped[str] = mapped_column(String(10))
    bytes_today: Mapped[int] = mapped_column(BigInteger)


class CertificateRow(Base):
    """One certificate in a node's history.

    ``current`` speaks for the node; ``previous`` still verifies packages signed before a
    rotation until ``overlap_until``; ``retired`` no longer counts. A fingerprint is unique
    across all nodes and all time: a key that spoke for one agency never speaks for another.
    """

    __tablename__ = "node_certificates"
    __table_args__ = (
        CheckConstraint("status IN ('current', 'previous', 'retired')", name="status"),
        # At most one current certificate per node, enforced by the database itself.
        Index("uq_node_certificates_one_current", "node_code", unique=True,
              sqlite_where=text("status = 'current'"),
              postgresql_where=text("status = 'current'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_code: Mapped[str] = mapped_column(ForeignKey("nodes.code"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of DER, hex
    serial: Mapped[str] = mapped_column(String(64))  # 0x-prefixed hex, as vdx.xmldsig.pki shows it
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    overlap_until: Mapped[datetime | None]


class AdminLogRow(Base):
    """Who did what to which node, when, and the node before and after (JSON)."""

    __tablename__ = "admin_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ConsoleUserRow(Base):
    """A person who may sign in to the web console (:mod:`vdx.console`): an ``auditor``
    reads, an ``admin`` also suspends and resumes nodes. ``password_hash`` is Argon2id;
    ``failed_logins`` and ``locked_until`` slow down guessing (:mod:`vdx.console.users`)."""

    __tablename__ = "console_users"
    __table_args__ = (CheckConstraint("role IN ('auditor', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]


# ------------------------------------------------------------------- engines, sessions


def vdx_home() -> Path:
    """The hub's per-user data directory (not created here)."""
    if home := os.environ.get("VDX_HOME"):
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser() / "vdx"


def database_url() -> str:
    """``$VDX_DATABASE_URL``, or the SQLite file ``vdx.db`` in :func:`vdx_home`."""
    return os.environ.get("VDX_DATABASE_URL") or f"sqlite:///{vdx_home() / 'vdx.db'}"


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for a bare ``postgresql://`` URL (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` (default :func:`database_url`).

    SQLite: the file's directory is created (0700), and every connection gets foreign
    keys on, WAL (readers do not block the writer, so ``vdx`` commands work while the hub
    runs) and a busy timeout instead of an immediate "database is locked". Python's
    sqlite3 statement cache is off: a cached statement keeps its last bound values (a
    copy of every package body of the batch it inserted) until it runs again.
    """
    url = normalise_url(url or database_url())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("cached_statements", 0)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.execute("PRAGMA journal_mode = WAL")  # ignored (stays "memory") in memory
    finally:
        cursor.close()


class WriterLock:
    """Serialises a SQLite database's writers across processes with ``flock``.

    SQLite lets one writer in at a time and makes the others poll: its busy handler
    sleeps 1, 2, 5 … up to 100 ms between tries, so two hub workers writing short
    transactions wait for each other far longer than the transactions last. A blocking
    ``flock`` on a file beside the database wakes the next writer as soon as the lock is
    released. Other databases lock rows themselves: for them this does nothing.

    One per worker process, used from one thread: ``flock`` belongs to the open file, so
    two threads sharing one ``WriterLock`` would not exclude each other.
    """

    def __init__(self, engine: Engine) -> None:
        url = engine.url
        database = url.database if url.get_backend_name() == "sqlite" else None
        self._path = (None if not database or database == ":memory:"
                      or database.startswith("file:") else f"{database}-writer.lock")
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        if self._path is not None:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the CLI prints them then)."""
    return sessionmaker(engine, expire_on_commit=False)


# -------------------------------------------------------------------------- migrations


# Alembic is imported inside the functions: the hub worker and most commands never
# migrate, and should not pay for loading it.


def _alembic_config(engine: Engine | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The engine travels in attributes, not as a URL option: ConfigParser would choke on
    # the '%' of a URL-encoded password, and tests pass engines bound to a schema.
    config.attributes["engine"] = engine
    return config


def migrate(url_or_engine: str | Engine | None = None, revision: str = "head") -> str:
    """Bring the database up to ``revision`` (default the newest); returns the revision.

    Safe to run again: an up-to-date database is left as it is.
    """
    from alembic import command

    engine = _as_engine(url_or_engine)
    try:
        command.upgrade(_alembic_config(engine), revision)
        return current_revision(engine) or ""
    finally:
        if not isinstance(url_or_engine, Engine):
            engine.dispose()


def head_revision() -> str:
    """The newest migration shipped with this version of the package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url_or_engine: str | Engine | None = None) -> str | None:
    """The revision the database is at, or ``None`` before :func:`migrate` ever ran."""
    from alembic.runtime.migration import MigrationContext

    engine = _as_engine(url_or_engine)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if not isinstance(url_or_engine, Engine):
            engine.dispose()


def _as_engine(url_or_engine: str | Engine | None) -> Engine:
    return url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
