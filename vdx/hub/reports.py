"""Reports on the journal for people: counts per day, refusals per code, a search of
documents, volumes per agency, what is pending, what expires, the ledger's last check.

Each is a plain function of a session that aggregates in SQL on an index (migration
0010), read by the web console (:mod:`vdx.console`); ``vdx audit verify`` and the
console record each ledger verification here (:func:`record_ledger_check`).
Days are Vietnam's (UTC+7, no daylight saving), as agencies count them. Nothing here
reads a package's body: only metadata (who, what id, when, which code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import String, and_, exists, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from vdx.core.model import VIETNAM_TZ
from vdx.hub.journal import (
    DeliveryRow,
    DocumentRow,
    LedgerCheckRow,
    LedgerRow,
    ReceiptRow,
)
from vdx.store import CertificateRow

DAY_KINDS = ("accepted", "rejected", "delivered")


class utc_hour(FunctionElement):  # noqa: N801 - reads as the SQL function it compiles to
    """``YYYY-MM-DD HH`` of a UTC timestamp column: the hour it falls in, in UTC.

    Vietnam's offset is a whole number of hours, so hours add up exactly into Vietnamese
    days (:func:`vietnam_day_of_hour`); cutting a string costs SQLite far less than its
    date functions, and PostgreSQL the same."""

    type = String()
    inherit_cache = True
    name = "utc_hour"


@compiles(utc_hour, "sqlite")
def _utc_hour_sqlite(element: utc_hour, compiler: Any, **kw: Any) -> str:
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC here).
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 13)"


@compiles(utc_hour, "postgresql")
def _utc_hour_postgresql(element: utc_hour, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"


def vietnam_day_of_hour(hour: str) -> date:
    """The Vietnamese day of a :class:`utc_hour` value."""
    return datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC).astimezone(
        VIETNAM_TZ).date()


def vietnam_day_start(day: date) -> datetime:
    """The UTC moment Vietnam's ``day`` begins."""
    return datetime.combine(day, time(), VIETNAM_TZ).astimezone(UTC)


def last_days(days: int, now: datetime | None = None) -> list[date]:
    """The ``days`` Vietnamese calendar days up to and including today, oldest first."""
    today = (now or datetime.now(UTC)).astimezone(VIETNAM_TZ).date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


# ---------------------------------------------------------------------- per day


@dataclass(frozen=True)
class DayCount:
    """Receipts of each kind issued on one Vietnamese day: packages accepted, refused and
    delivered (documents and statuses alike)."""

    day: date
    accepted: int = 0
    rejected: int = 0
    delivered: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"day": self.day.isoformat()}


def daily_counts(session: Session, days: int = 30, now: datetime | None = None,
                 ) -> list[DayCount]:
    """One :class:`DayCount` per day of the last ``days`` (today included), oldest
    first, days without traffic included as zeros."""
    calendar = last_days(days, now)
    hour = utc_hour(ReceiptRow.created_at)
    rows = session.execute(
        select(hour, ReceiptRow.kind, func.count())
        .where(ReceiptRow.kind.in_(DAY_KINDS),
               ReceiptRow.created_at >= vietnam_day_start(calendar[0]))
        .group_by(hour, ReceiptRow.kind))
    counts: dict[date, dict[str, int]] = {}
    for at, kind, count in rows:
        on = counts.setdefault(vietnam_day_of_hour(at), {})
        on[kind] = on.get(kind, 0) + count
    return [DayCount(d, **counts.get(d, {})) for d in calendar]


# --------------------------------------------------------------------- refusals


@dataclass(frozen=True)
class RefusalCount:
    day: date
    code: str
    count: int

    def to_dict(self) -> dict[str, object]:
        return {"day": self.day.isoformat(), "code": self.code, "count": self.count}


def refusals_per_day(session: Session, days: int = 30, now: datetime | None = None,
                     ) -> list[RefusalCount]:
    """Refused packages per error code and Vietnamese day over the last ``days``, by day
    then code (only days and codes that had any)."""
    since = vietnam_day_start(last_days(days, now)[0])
    hour = utc_hour(ReceiptRow.created_at)
    rows = session.execute(
        select(hour, ReceiptRow.error_code, func.count())
        .where(ReceiptRow.kind == "rejected", ReceiptRow.created_at >= since)
        .group_by(hour, ReceiptRow.error_code))
    counts: dict[tuple[date, str], int] = {}
    for at, code, count in rows:
        key = (vietnam_day_of_hour(at), code or "")
        counts[key] = counts.get(key, 0) + count
    return [RefusalCount(on, code, count) for (on, code), count in sorted(counts.items())]


@dataclass(frozen=True)
class RefusedPackage:
    """A refused package as an auditor may see it: who sent it, its DocumentId when it
    could be read, when, and why (the code). Never its bytes."""

    at: datetime
    sender: str
    document_id: str | None
    code: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"at": self.at.isoformat()}


def refused_packages(session: Session, *, code: str | None = None,
                     since: datetime | None = None, limit: int = 100, offset: int = 0,
                     ) -> list[RefusedPackage]:
    """Refused packages, newest first, optionally of one error ``code`` only."""
    query = select(ReceiptRow.created_at, ReceiptRow.addressee, ReceiptRow.document_id,
                   ReceiptRow.error_code).where(ReceiptRow.kind == "rejected")
    if code:
        query = query.where(ReceiptRow.error_code == code)
    if since is not None:
        query = query.where(ReceiptRow.created_at >= since)
    rows = session.execute(query.order_by(ReceiptRow.created_at.desc(), ReceiptRow.id.desc())
                           .limit(limit).offset(offset))
    return [RefusedPackage(at, sender, document_id, code or "")
            for at, sender, document_id, code in rows]


# ---------------------------------------------------------------------- search


@dataclass(frozen=True)
class DocumentSummary:
    """One document as a search lists it."""

    document_id: str
    sender: str
    received_at: datetime
    size: int
    recipients: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"received_at": self.received_at.isoformat(),
                               "recipients": list(self.recipients)}


@dataclass(frozen=True)
class DocumentPage:
    documents: tuple[DocumentSummary, ...]
    offset: int
    more: bool  # another page follows


def search_documents(session: Session, *, document_id: str | None = None,
                     sender: str | None = None, recipient: str | None = None,
                     status: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, limit: int = 50, offset: int = 0,
                     ) -> DocumentPage:
    """Documents (not statuses) matching every filter given, newest first.

    ``document_id`` matches exactly; ``recipient``: one of its recipients; ``status``: a
    status code (``01`` … ``16``) some recipient reported about it; ``since`` inclusive,
    ``until`` exclusive, on the time the hub accepted it.
    """
    d = DocumentRow
    query = select(d.id, d.document_id, d.sender, d.received_at, d.size).where(
        d.kind == "document")
    if document_id:
        query = query.where(d.document_id == document_id)
    if sender:
        query = query.where(d.sender == sender)
    if since is not None:
        query = query.where(d.received_at >= since)
    if until is not None:
        query = query.where(d.received_at < until)
    if recipient:
        query = query.where(exists().where(DeliveryRow.document_pk == d.id,
                                           DeliveryRow.recipient == recipient))
    if status:
        statuses = DocumentRow.__table__.alias("reported")
        query = query.where(exists().where(
            statuses.c.refers_to == d.document_id, statuses.c.kind == "status",
            statuses.c.status_code == status))
    rows = session.execute(query.order_by(d.id.desc()).limit(limit + 1).offset(offset)).all()
    more, rows = len(rows) > limit, rows[:limit]
    recipients: dict[int, list[str]] = {}
    if rows:
        for pk, code in session.execute(
                select(DeliveryRow.document_pk, DeliveryRow.recipient)
                .where(DeliveryRow.document_pk.in_([r.id for r in rows]))
                .order_by(DeliveryRow.document_pk, DeliveryRow.recipient)):
            recipients.setdefault(pk, []).append(code)
    return DocumentPage(tuple(DocumentSummary(r.document_id, r.sender, r.received_at, r.size,
                                              tuple(recipients.get(r.id, ())))
                              for r in rows), offset, more)


def document_exists(session: Session, document_id: str) -> bool:
    return session.scalar(select(exists().where(DocumentRow.document_id == document_id))
                          ) or False


# ---------------------------------------------------------------- per agency


@dataclass(frozen=True)
class Volume:
    """What one agency did over a period, from the receipts: packages it sent that the
    hub accepted, packages delivered to it, and packages of its that were refused."""

    code: str
    sent: int = 0
    received: int = 0
    refused: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_VOLUME_OF = {"accepted": ("sent", ReceiptRow.addressee),
              "delivered": ("received", ReceiptRow.recipient),
              "rejected": ("refused", ReceiptRow.addressee)}


def agency_volumes(session: Session, *, since: datetime, code: str | None = None,
                   ) -> dict[str, Volume]:
    """:class:`Volume` per agency code since ``since`` (only agencies with any), or of
    agency ``code`` alone."""
    counts: dict[str, dict[str, int]] = {}
    for kind, (field, who) in _VOLUME_OF.items():
        query = select(who, func.count()).where(ReceiptRow.kind == kind,
                                                ReceiptRow.created_at >= since)
        if code is not None:
            query = query.where(who == code)
        for party, count in session.execute(query.group_by(who)):
            if party is not None:
                counts.setdefault(party, {})[field] = count
    return {who: Volume(who, **c) for who, c in sorted(counts.items())}


# ----------------------------------------------------------- state of the hub


def pending_deliveries(session: Session) -> int:
    """Deliveries the broker has not confirmed yet."""
    return session.scalar(select(func.count()).select_from(DeliveryRow)
                          .where(DeliveryRow.confirmed_at.is_(None))) or 0


@dataclass(frozen=True)
class Expiry:
    node_code: str
    fingerprint: str
    serial: str
    status: str
    not_after: datetime

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"not_after": self.not_after.isoformat()}


def expiring_certificates(session: Session, within: timedelta = timedelta(days=30),
                          now: datetime | None = None) -> list[Expiry]:
    """Certificates that speak for a node (current, or previous in its overlap) and
    expire before ``now + within`` (those expired already included), soonest first."""
    now = now or datetime.now(UTC)
    c = CertificateRow
    rows = session.execute(
        select(c.node_code, c.fingerprint, c.serial, c.status, c.not_after)
        .where(c.not_after < now + within,
               (c.status == "current") | and_(c.status == "previous", c.overlap_until > now))
        .order_by(c.not_after))
    return [Expiry(*row) for row in rows]


# ------------------------------------------------------------ ledger checks


@dataclass(frozen=True)
class LedgerCheck:
    """One run of the ledger's verification, as recorded by :func:`record_ledger_check`."""

    at: datetime
    actor: str
    intact: bool
    entries: int
    head_seq: int | None
    head_hash: str | None
    receipts: int
    problems: int
    first_fault_seq: int | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"at": self.at.isoformat()}


def record_ledger_check(session: Session, report: Any, *, actor: str,
                        now: datetime | None = None) -> LedgerCheck:
    """Keep the outcome of :func:`vdx.hub.audit.verify_ledger` (``report``)."""
    faults = [p.seq for p in report.problems if p.seq is not None]
    head_hash = (session.scalar(select(LedgerRow.entry_hash)
                                .where(LedgerRow.seq == report.head_seq))
                 if report.head_seq else None)
    check = LedgerCheck(now or datetime.now(UTC), actor, report.intact, report.entries,
                        report.head_seq, head_hash, report.receipts, len(report.problems),
                        min(faults) if faults else None)
    session.add(LedgerCheckRow(**asdict(check)))
    return check


def ledger_checks(session: Session, limit: int = 20) -> list[LedgerCheck]:
    """The last ``limit`` verifications, newest first."""
    rows = session.scalars(select(LedgerCheckRow).order_by(LedgerCheckRow.id.desc())
                           .limit(limit))
    return [LedgerCheck(r.at, r.actor, r.intact, r.entries, r.head_seq, r.head_hash,
                        r.receipts, r.problems, r.first_fault_seq) for r in rows]


def last_ledger_check(session: Session) -> LedgerCheck | None:
    found = ledger_checks(session, 1)
    return found[0] if found else None


def ledger_position(session: Session) -> tuple[int, str] | None:
    """The ledger's head as the database records it (seq, entry hash), unverified."""
    from vdx.hub.journal import LedgerHeadRow

    head = session.get(LedgerHeadRow, 1)
    return None if head is None or head.seq == 0 else (head.seq, head.entry_hash)
