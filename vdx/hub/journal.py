"""The hub's journal: documents, deliveries, receipts, the outbox and the ledger (SQL edge).

Everything the hub does to one submitted message is written in ONE transaction (the
document, its deliveries, its receipts, their outbox rows and ledger entries), and the
message is acknowledged only after that commit. Publishing reads the outbox: what was
committed but not confirmed by the broker is published again after a crash, under the
same delivery id, so adapters can drop the copy.

Repository functions take the session; the caller owns the transaction.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    ForeignKey,
    Index,
    Insert,
    Integer,
    LargeBinary,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import ClauseElement

from vdx.core.ledger import GENESIS_HASH, LedgerEntry, LedgerHead, next_entry
from vdx.core.routing import KnownDocument
from vdx.store import Base, WideId


def utcnow() -> datetime:
    return datetime.now(UTC)


class DocumentRow(Base):
    """A package the hub accepted (documents and statuses alike), with its exact bytes."""

    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_sender_docid", "sender", "document_id"),
        # A document's timeline finds its packages by DocumentId and its statuses by
        # refers_to, whoever sent them.
        Index("ix_documents_document_id", "document_id"),
        Index("ix_documents_refers_to", "refers_to"),
        Index("ix_documents_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # document | status
    sender: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str] = mapped_column(String(512))
    status_code: Mapped[str | None] = mapped_column(String(2))
    business_type: Mapped[int | None] = mapped_column(Integer)
    refers_to: Mapped[str | None] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime]
    body: Mapped[bytes] = mapped_column(LargeBinary)


class DeliveryRow(Base):
    """One copy of one package for one recipient; ``id`` is the delivery id adapters see."""

    __tablename__ = "deliveries"
    # Counting what is still pending reads only the unconfirmed rows.
    __table_args__ = (Index("ix_deliveries_confirmed_at", "confirmed_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    document_pk: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    dedup_key: Mapped[str] = mapped_column(String(700), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str] = mapped_column(String(512), index=True)
    recipient: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]


class ReceiptRow(Base):
    """A signed receipt for ``addressee`` (the sender of the package it is about)."""

    __tablename__ = "receipts"
    # Counts per kind and day, refusals per code and day and volumes per agency
    # (vdx.hub.reports) read this index alone.
    __table_args__ = (Index("ix_receipts_kind_created_at", "kind", "created_at", "error_code",
                            "addressee", "recipient"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # indexed with created_at (above)
    addressee: Mapped[str] = mapped_column(String(64), index=True)
    document_id: Mapped[str | None] = mapped_column(String(512), index=True)
    recipient: Mapped[str | None] = mapped_column(String(64))
    delivery_id: Mapped[str | None] = mapped_column(String(36))
    error_code: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxRow(Base):
    """Something committed that must reach the broker: a delivery or a receipt."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(WideId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str | None] = mapped_column(ForeignKey("deliveries.id"))
    receipt_id: Mapped[str | None] = mapped_column(ForeignKey("receipts.id"))
    routing_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None] = mapped_column(index=True)


class LedgerRow(Base):
    """Append-only, hash-chained record of every receipt and status (see vdx.core.ledger)."""

    __tablename__ = "ledger"

    seq: Mapped[int] = mapped_column(WideId, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    document_id: Mapped[str | None] = mapped_column(String(512), index=True)
    sender: Mapped[str | None] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(64))
    receipt_id: Mapped[str | None] = mapped_column(String(36))
    receipt_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(40))
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    hub_signature: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerHeadRow(Base):
    """One row: the last entry. Locking it serialises appends across workers."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(WideId)
    entry_hash: Mapped[str] = mapped_column(String(64))


class InboundRow(Base):
    """Every submitted message the hub recorded, whatever the outcome: a redelivery after a
    crash is recognised and acknowledged without a second receipt."""

    __tablename__ = "inbound"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]


class AttemptRow(Base):
    """How often a redelivered message was tried alone (poison detection)."""

    __tablename__ = "attempts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime | None]


class LedgerCheckRow(Base):
    """The outcome of one run of the ledger's verification (``vdx audit verify``, the
    console): when, by whom, and what it found; the console shows the last one."""

    __tablename__ = "ledger_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    intact: Mapped[bool]
    entries: Mapped[int] = mapped_column(WideId)
    head_seq: Mapped[int | None] = mapped_column(WideId)
    receipts: Mapped[int] = mapped_column(WideId)
    problems: Mapped[int] = mapped_column(Integer)
    first_fault_seq: Mapped[int | None] = mapped_column(WideId)
    head_hash: Mapped[str | None] = mapped_column(String(64))


# ----------------------------------------------------------------------- repository


def known_document(session: Session, sender: str, document_id: str) -> KnownDocument | None:
    recipients = session.scalars(
        select(DeliveryRow.recipient)
        .where(DeliveryRow.sender == sender, DeliveryRow.document_id == document_id,
               DeliveryRow.kind == "document")
        .order_by(DeliveryRow.created_at)
    ).all()
    if not recipients:
        return None
    return KnownDocument(sender, document_id, tuple(dict.fromkeys(recipients)))


# The worker's hot path runs prebuilt Core statements on the session's connection: no
# statement is built per call and no ORM unit of work is involved (a query through the
# ORM session costs several times the query itself). These functions never flush: the
# worker's sessions hold no ORM objects.
_INBOUND, _DELIVERIES, _OUTBOX = InboundRow.__table__, DeliveryRow.__table__, OutboxRow.__table__
_HEAD = LedgerHeadRow.__table__
_SEEN_INBOUND = select(_INBOUND.c.key).where(
    _INBOUND.c.key.in_(bindparam("keys", expanding=True)))
_DOCUMENTS = DocumentRow.__table__
_RECORDED_DEDUP = select(_DELIVERIES.c.dedup_key, _DOCUMENTS.c.sha256).join(
    _DOCUMENTS, _DOCUMENTS.c.id == _DELIVERIES.c.document_pk).where(
    _DELIVERIES.c.dedup_key.in_(bindparam("keys", expanding=True)))
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.entry_hash).where(_HEAD.c.id == 1).with_for_update()
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(
    seq=bindparam("new_seq"), entry_hash=bindparam("new_hash"))
_MARK_PUBLISHED = update(_OUTBOX).where(
    _OUTBOX.c.id.in_(bindparam("ids", expanding=True))).values(published_at=bindparam("when"))
_CLAIM = (update(_DELIVERIES)
          .where(_DELIVERIES.c.id.in_(bindparam("ids", expanding=True)),
                 _DELIVERIES.c.confirmed_at.is_(None))
          .values(confirmed_at=bindparam("when"))
          .returning(_DELIVERIES.c.id))


def seen_inbound_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` were recorded before: one query per chunk, not one per message."""
    connection = session.connection()
    return {key for chunk in _chunks(keys)
            for key in connection.scalars(_SEEN_INBOUND, {"keys": list(chunk)})}


def recorded_dedup_keys(session: Session, keys: Sequence[str]) -> dict[str, str]:
    """Which of the deliveries' ``keys`` exist already, each with the SHA-256 of the
    package its delivery carried."""
    connection = session.connection()
    return {key: sha256 for chunk in _chunks(keys)
            for key, sha256 in connection.execute(_RECORDED_DEDUP, {"keys": list(chunk)})}


def _chunks(items: Sequence, size: int = 500) -> Iterable[Sequence]:
    """``items`` in slices small enough for any database's limit on bound parameters."""
    return (items[i:i + size] for i in range(0, len(items), size))


def lock_ledger_head(session: Session) -> LedgerHead:
    """The head, locked for this transaction (created on first use).

    PostgreSQL locks the row (``FOR UPDATE``); SQLite ignores that and serialises whole
    write transactions instead, from their first write: call this after the
    transaction has written something (the hub inserts its receipts first), or two
    SQLite writers could both read the same head.
    """
    pipe = _pipeline(session)
    if pipe is not None:
        rows = pipe.fetch(_LOCK_HEAD)
        row = rows[0] if rows else None
    else:
        row = session.connection().execute(_LOCK_HEAD).first()
    if row is None:
        insert_rows(session, LedgerHeadRow, [{"id": 1, "seq": 0, "entry_hash": GENESIS_HASH}])
        return LedgerHead(0, GENESIS_HASH)
    seq, entry_hash = row
    return LedgerHead(seq, entry_hash)


def append_ledger(session: Session, head: LedgerHead, entries: Iterable[dict],
                  sign) -> list[LedgerEntry]:
    """Append one entry per dict of fields after ``head`` (locked), and move the head."""
    previous: LedgerEntry | LedgerHead | None = None if head.seq == 0 else head
    written = []
    for fields in entries:
        previous = next_entry(previous, sign=sign, **fields)
        written.append(previous)
    insert_rows(session, LedgerRow, [{
        "seq": e.seq, "kind": e.kind, "document_id": e.document_id, "sender": e.sender,
        "recipient": e.recipient, "receipt_id": e.receipt_id,
        "receipt_sha256": e.receipt_sha256, "created_at": e.created_at,
        "prev_hash": e.prev_hash, "entry_hash": e.entry_hash, "hub_signature": e.hub_signature,
    } for e in written])
    if written:
        moved = {"new_seq": previous.seq, "new_hash": previous.entry_hash}
        pipe = _pipeline(session)
        if pipe is not None:
            pipe.send(_MOVE_HEAD, moved)
        else:
            session.connection().execute(_MOVE_HEAD, moved)
    return written


def insert_rows(session: Session, model: type[Base], rows: Sequence[dict]) -> None:
    """One multi-row INSERT (Core, no unit of work) for ``rows`` of ``model``'s table;
    in a :func:`pipelined` block, one prepared INSERT per row, sent back to back."""
    if not rows:
        return
    pipe = _pipeline(session)
    if pipe is not None:
        pipe.send_many(_insert(model.__table__), rows)
    else:
        session.connection().execute(_insert(model.__table__), list(rows))


def insert_returning_ids(session: Session, model: type[Base], rows: Sequence[dict],
                         ) -> list[int]:
    """Like :func:`insert_rows`, returning the generated ``id`` of each row, in order.

    PostgreSQL: the ids are taken from the column's sequence first, then the rows are
    inserted like any others. ``INSERT … RETURNING`` of many rows in their order would
    be ``INSERT … SELECT … FROM (VALUES …) ORDER BY``: a sort of every row, package
    bodies included (spilled to disk once they pass ``work_mem``), and a new statement
    text for every batch size, which the driver cannot prepare.
    """
    if not rows:
        return []
    connection = session.connection()
    table = model.__table__
    if connection.dialect.name == "postgresql":
        ids = _next_ids(session, table, len(rows))
        insert_rows(session, model, [row | {"id": id_} for row, id_ in
                                     zip(rows, ids, strict=True)])
        return ids
    return list(connection.scalars(_insert(table, returning_id=True), list(rows)))


def insert_documents(session: Session, rows: Sequence[dict]) -> list[int]:
    """:func:`insert_returning_ids` for documents; on SQLite, large bodies are written in
    pieces (:func:`_insert_in_pieces`)."""
    connection = session.connection()
    if connection.dialect.name == "sqlite" and any(
            len(row["body"]) >= BODY_IN_PIECES_FROM for row in rows):
        return _insert_in_pieces(connection, rows)
    return insert_returning_ids(session, DocumentRow, rows)


def _next_ids(session: Session, table: Table, n: int) -> list[int]:
    """``n`` new ids from the sequence of ``table``'s ``id`` column (PostgreSQL)."""
    params = {"table": table.name, "n": n}
    pipe = _pipeline(session)
    if pipe is not None:
        return [id_ for id_, in pipe.fetch(_NEXT_IDS, params)]
    return list(session.connection().scalars(_NEXT_IDS, params))


# The sequence is looked up once per statement, not once per id.
_NEXT_IDS = text("SELECT nextval(q.sequence) FROM (SELECT pg_get_serial_sequence(:table, 'id')"
                 "::regclass AS sequence) AS q, generate_series(1, :n)")


# SQLite: a document's body from this size on is inserted as zeroblob(size), then written
# through sqlite3's incremental blob I/O a piece at a time, in the same transaction. Bound
# as a value it was copied twice (sqlite3 binds blobs SQLITE_TRANSIENT; the INSERT builds
# its record in another buffer): a 20 MiB package was held three times over while it was
# written (41 MiB besides the body; in pieces, 2 MiB).
BODY_IN_PIECES_FROM = 1 << 20
_BODY_PIECE = 1 << 20
_INSERT_ZEROED_BODY = (insert(_DOCUMENTS)
                       .values(body=func.zeroblob(bindparam("body_size", type_=Integer)))
                       .returning(_DOCUMENTS.c.id))


def _insert_in_pieces(connection: Connection, rows: Sequence[dict]) -> list[int]:
    """Insert documents on SQLite in the order of ``rows``, each body of
    :data:`BODY_IN_PIECES_FROM` bytes or more zeroed, then written in pieces (the others
    a multi-row INSERT per run of them); return their ids. A failure of the blob I/O
    raises a ``DBAPIError``, as one of the INSERT would."""
    ids: list[int] = []
    error = connection.dialect.loaded_dbapi.Error
    for large, run in itertools.groupby(rows, lambda r: len(r["body"]) >= BODY_IN_PIECES_FROM):
        if not large:
            ids += connection.scalars(_insert(_DOCUMENTS, returning_id=True), list(run))
            continue
        for row in run:
            body = memoryview(row["body"])
            fields = {key: value for key, value in row.items() if key != "body"}
            pk = connection.scalar(_INSERT_ZEROED_BODY, fields | {"body_size": len(body)})
            try:
                with connection.connection.driver_connection.blobopen(
                        _DOCUMENTS.name, "body", pk) as blob:
                    for start in range(0, len(body), _BODY_PIECE):
                        blob.write(body[start:start + _BODY_PIECE])
            except error as exc:
                raise DBAPIError.instance(f"writing documents.body of id {pk}", None, exc,
                                          error) from exc
            ids.append(pk)
    return ids


@functools.cache
def _insert(table: Table, returning_id: bool = False) -> Insert:
    statement = insert(table)
    return (statement.returning(table.c.id, sort_by_parameter_order=True) if returning_id
            else statement)


def row_to_entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(
        seq=row.seq, kind=row.kind, document_id=row.document_id, sender=row.sender,
        recipient=row.recipient, receipt_id=row.receipt_id, receipt_sha256=row.receipt_sha256,
        created_at=row.created_at, prev_hash=row.prev_hash, entry_hash=row.entry_hash,
        hub_signature=row.hub_signature,
    )


def unpublished(session: Session, limit: int = 500, after: int = 0,
                older_than: float = 0.0) -> list[OutboxRow]:
    query = select(OutboxRow).where(OutboxRow.published_at.is_(None), OutboxRow.id > after)
    if older_than:
        query = query.where(OutboxRow.created_at < utcnow() - timedelta(seconds=older_than))
    return list(session.scalars(query.order_by(OutboxRow.id).limit(limit)))


def claim_confirmations(session: Session, delivery_ids: Sequence[str], when: datetime,
                        ) -> set[str]:
    """Mark deliveries confirmed in one statement per chunk; return the ids this call
    claimed (not those another worker, or an earlier relay, confirmed first)."""
    pipe = _pipeline(session)
    if pipe is not None:
        return {delivery_id for delivery_id, in pipe.fetch(
            _CLAIM_ANY, {"ids": list(delivery_ids), "when": when})} if delivery_ids else set()
    connection = session.connection()
    return {delivery_id for chunk in _chunks(delivery_ids)
            for delivery_id in connection.scalars(_CLAIM, {"ids": list(chunk), "when": when})}


def count_attempt(session: Session, sha256: str, user_id: str | None) -> int:
    """Record one more isolated attempt at a message; return how many there were."""
    key = f"{user_id or ''}|{sha256}"
    row = session.get(AttemptRow, key, with_for_update=True)
    if row is None:
        row = AttemptRow(key=key, attempts=0)
        session.add(row)
    row.attempts += 1
    row.last_at = utcnow()
    return row.attempts


def mark_published(session: Session, outbox_ids: Sequence[int], when: datetime) -> None:
    pipe = _pipeline(session)
    if pipe is not None:
        if outbox_ids:
            pipe.send(_MARK_PUBLISHED_ANY, {"ids": list(outbox_ids), "when": when})
        return
    connection = session.connection()
    for chunk in _chunks(outbox_ids):
        connection.execute(_MARK_PUBLISHED, {"ids": list(chunk), "when": when})


# ------------------------------------------------------------ PostgreSQL: one pipeline

# A batch's transaction through SQLAlchemy is a round trip per statement (about fifteen)
# and psycopg converts each long multi-row INSERT anew. In a pipeline (libpq's pipeline
# mode, through psycopg) the statements go out back to back, every INSERT a statement
# prepared once per connection and executed per row, and the worker waits only where it
# needs an answer: the claimed deliveries, new ids, the ledger's head, and the end
# (bench/bench_journal_write.py: 0.6x the time of a one-document batch, 0.8x at 30).
# The other statements are planned each time with their values: prepared, the claim's
# ``= ANY(array)`` got a generic plan that grew slower with the table (30 documents:
# 37-54 ms a batch, against 23-28 ms planned each time).
_PIPELINE = "vdx.journal.pipeline"
# Arrays instead of expanding IN lists: one statement text whatever the batch's size.
_MARK_PUBLISHED_ANY = update(_OUTBOX).where(_OUTBOX.c.id == any_(bindparam("ids"))).values(
    published_at=bindparam("when"))
_CLAIM_ANY = (update(_DELIVERIES)
              .where(_DELIVERIES.c.id == any_(bindparam("ids")),
                     _DELIVERIES.c.confirmed_at.is_(None))
              .values(confirmed_at=bindparam("when"))
              .returning(_DELIVERIES.c.id))


@contextlib.contextmanager
def pipelined(session: Session) -> Iterator[None]:
    """Within this block, send the journal's writes on ``session`` to PostgreSQL in one
    pipeline; elsewhere (SQLite) do nothing.

    A failed statement surfaces as SQLAlchemy's error (``IntegrityError`` for a
    duplicate key), perhaps at a later call than its own: the statements after it are
    skipped and the caller's transaction can only be rolled back, as after any error.
    Only the journal's functions may touch the session inside the block.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return
    driver = connection.connection.driver_connection
    error = connection.dialect.loaded_dbapi.Error
    try:
        with driver.pipeline():
            session.info[_PIPELINE] = _Pipeline(connection.dialect, driver)
            try:
                yield
            finally:
                del session.info[_PIPELINE]
    except error as exc:
        raise DBAPIError.instance(None, None, exc, error, dialect=connection.dialect) from exc


def _pipeline(session: Session) -> _Pipeline | None:
    return session.info.get(_PIPELINE)


class _Pipeline:
    """A psycopg connection in pipeline mode, running the journal's Core statements."""

    def __init__(self, dialect: Dialect, driver: Any) -> None:
        self._dialect = dialect
        self._driver = driver

    def send(self, statement: ClauseElement, params: dict | None = None) -> None:
        """Queue ``statement``; its errors surface at a later fetch or at the end."""
        compiled = _compile(self._dialect, statement)
        self._driver.execute(compiled.sql, compiled.bind(params or {}), prepare=False)

    def send_many(self, statement: Insert, rows: Sequence[dict]) -> None:
        """Queue ``statement`` once per row of ``rows`` (all with the same keys)."""
        compiled = _compile(self._dialect, statement, tuple(rows[0]))
        self._driver.cursor().executemany(compiled.sql, [compiled.bind(row) for row in rows])

    def fetch(self, statement: ClauseElement, params: dict | None = None) -> list[tuple]:
        """Run ``statement`` and wait for its rows (and every statement queued before)."""
        compiled = _compile(self._dialect, statement)
        return self._driver.execute(compiled.sql, compiled.bind(params or {}),
                                    prepare=False).fetchall()


class _Compiled(NamedTuple):
    """A Core statement as the driver's text, with its fixed parameters and the column
    types' conversions (``UtcDateTime`` refusing naive times, for one)."""

    sql: str
    fixed: dict[str, Any]
    processors: dict[str, Any]

    def bind(self, params: dict) -> dict:
        bound = self.fixed | params
        for name, process in self.processors.items():
            bound[name] = process(bound[name])
        return bound


@functools.lru_cache(maxsize=64)
def _compile(dialect: Dialect, statement: ClauseElement,
             column_keys: tuple[str, ...] | None = None) -> _Compiled:
    compiled = statement.compile(dialect=dialect,
                                 column_keys=list(column_keys) if column_keys else None)
    processors = {name: process for name, bind in compiled.binds.items()
                  if (process := bind.type.dialect_impl(dialect).bind_processor(dialect))}
    return _Compiled(compiled.string, dict(compiled.params), processors)


