"""The registry: which agencies exist, which certificate speaks for each, who changed what.

Repository functions take a SQLAlchemy ``Session`` and never commit: the shell owns the
transaction (``with sessions.begin() as session:``), so a command that also touches the
broker can still roll the registry back when the broker refuses. Every change writes one
:class:`~vdx.store.AdminLogRow` with the node as it was before and after (its certificates
included); a request that changes nothing (suspending a suspended node) writes none.

Refusals are :class:`~vdx.errors.RegistryError` with stable codes: ``registry.bad_code``,
``registry.bad_details``, ``registry.duplicate_node``, ``registry.unknown_node``,
``registry.node_suspended``, ``registry.node_revoked``, ``registry.bad_certificate``,
``registry.certificate_expired``, ``registry.certificate_wrong_agency``,
``registry.certificate_untrusted``, ``registry.certificate_revoked`` and
``registry.certificate_in_use``.

Lifecycle: ``active`` ⇄ ``suspended`` → ``revoked`` (final; the code is never reused).
Certificates: registering or rotating makes one ``current``; a rotation turns the old one
``previous`` until its overlap ends (packages signed before the rotation still verify),
then it counts as ``retired``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vdx.core.identifiers import identifier_problem, node_code_problem
from vdx.errors import RegistryError, SignatureError
from vdx.store import AdminLogRow, CertificateRow, NodeRow, utcnow
from vdx.xmldsig.pki import agency_code_of, serial_hex

if TYPE_CHECKING:
    from vdx.xmldsig.trust import TrustStore

ACTIVE, SUSPENDED, REVOKED = "active", "suspended", "revoked"
CURRENT, PREVIOUS, RETIRED = "current", "previous", "retired"
DEFAULT_OVERLAP_DAYS = 7
# Deliberately loose: one @, no spaces, a dot in the domain. Deliverability is the
# admin's business; this only catches a name or a code typed into the wrong option.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# ------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class Node:
    code: str
    name: str
    status: str
    parent_code: str | None
    email: str | None
    created_at: datetime
    updated_at: datetime
    broker_user: str = ""  # the broker account whose user_id its packages carry
    # Its limits (vdx.hub.limits; None: none): packages/s, burst, bytes per UTC day.
    rate_per_second: float | None = None
    burst: int | None = None
    max_bytes_per_day: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Certificate:
    """One certificate of a node's history. ``status`` is as of the ``now`` it was read
    with: a ``previous`` certificate whose overlap has ended reads as ``retired``."""

    node_code: str
    fingerprint: str
    serial: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    status: str
    added_at: datetime
    retired_at: datetime | None
    overlap_until: datetime | None
    pem: str = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate (cached per process)."""
        return _load_pem(self.pem)

    def to_dict(self, *, with_pem: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_pem:
            del data["pem"]
        return _jsonable(data)


@dataclass(frozen=True)
class AdminEntry:
    at: datetime
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Transition:
    """A status change as requested: ``changed`` is false when the node was already there."""

    before: Node
    after: Node

    @property
    def changed(self) -> bool:
        return self.before.status != self.after.status


class CertificateCheck(Protocol):
    """Chain, key usage and revocation of a certificate about to be registered.

    Raises :class:`RegistryError` (``registry.certificate_untrusted``,
    ``registry.certificate_revoked``, ``registry.bad_certificate``…); returns nothing.
    """

    def __call__(self, certificate: x509.Certificate, now: datetime) -> None: ...


# ------------------------------------------------------------------------ validation


# The hub's own broker accounts and queues are named vdx.* (the gateway's account is
# vdx.gateway): a node's code becomes its broker account and its inbox's name, so no node
# may take one of these names. Official codes never start so; others could.
RESERVED_PREFIX = "vdx"


def check_code(code: str, *, what: str = "agency code", allow_nonstandard: bool = False) -> None:
    """Refuse a malformed agency code with ``registry.bad_code`` and the exact reason.

    A code in neither official form (``vxp.saas.03``) passes only with
    ``allow_nonstandard``, and then only if it can name a node
    (:func:`vdx.core.identifiers.node_code_problem`) and does not start with ``vdx``.
    """
    problem = identifier_problem(code)
    if problem is None:
        return
    unusable = node_code_problem(code)
    if unusable is not None:
        raise RegistryError("registry.bad_code", f"{what}: {unusable}")
    if not allow_nonstandard:
        raise RegistryError("registry.bad_code",
                            f"{what}: {problem}. If the national axis really uses this code "
                            f"(a test system such as vxp.saas.03, an older code), register it "
                            f"with --allow-nonstandard-code")
    if code.lower().startswith(RESERVED_PREFIX):
        raise RegistryError("registry.bad_code",
                            f"{what}: {code!r} starts with {RESERVED_PREFIX!r}, which names the "
                            f"hub's own broker accounts and queues")


def parse_certificate(data: bytes | str) -> x509.Certificate:
    """Exactly one X.509 certificate, PEM or DER; anything else is ``registry.bad_certificate``."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if b"-----BEGIN" in raw:
            certs = x509.load_pem_x509_certificates(raw)
        else:
            certs = [x509.load_der_x509_certificate(raw)]
    except ValueError as exc:
        raise RegistryError("registry.bad_certificate",
                            f"not a PEM or DER X.509 certificate ({exc})") from exc
    if len(certs) != 1:
        raise RegistryError("registry.bad_certificate",
                            f"the file holds {len(certs)} certificates; give only the "
                            f"agency's own signing certificate")
    return certs[0]


def fingerprint_of(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lower-case hex: how the registry names a certificate."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def check_certificate_for(certificate: x509.Certificate, code: str, now: datetime,
                          check: CertificateCheck) -> None:
    """Every rule a certificate must pass to speak for agency ``code`` at ``now``."""
    if _is_ca(certificate):
        raise RegistryError("registry.bad_certificate",
                            "this is a CA certificate; register the agency's signing certificate")
    if now < certificate.not_valid_before_utc:
        raise RegistryError("registry.certificate_expired",
                            f"the certificate is valid only from "
                            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if now > certificate.not_valid_after_utc:
        raise RegistryError("registry.certificate_expired",
                            f"the certificate expired on "
                            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    owner = agency_code_of(certificate)
    if owner is None:
        raise RegistryError("registry.certificate_wrong_agency",
                            "the certificate's subject carries no agency code "
                            "(organizationIdentifier, OID 2.5.4.97)")
    if owner != code:
        raise RegistryError("registry.certificate_wrong_agency",
                            f"the certificate was issued to {owner}, not {code}")
    check(certificate, now)


# How the verifier's refusals read when the registry asks the same question.
_FROM_SIGNATURE = {
    "signature.untrusted_certificate": "registry.certificate_untrusted",
    "signature.revocation_unknown": "registry.certificate_untrusted",
    "signature.revoked_certificate": "registry.certificate_revoked",
    "signature.expired_certificate": "registry.certificate_expired",
    "signature.key_usage": "registry.bad_certificate",
}


def trust_check(trust: TrustStore, *, require_crl: bool = True) -> CertificateCheck:
    """A :class:`CertificateCheck` that asks the signature verifier's own certificate
    step (chain to ``trust``'s anchors, key usage, CRL), so the registry accepts exactly
    the certificates the hub will later accept signatures from."""
    from vdx.xmldsig.verify import VerificationPolicy, Verifier

    def check(certificate: x509.Certificate, now: datetime) -> None:
        policy = VerificationPolicy(require_crl=require_crl, clock=lambda: now)
        try:
            Verifier(trust, policy).check_certificate(certificate)
        except SignatureError as exc:
            code = _FROM_SIGNATURE.get(exc.code, "registry.certificate_untrusted")
            raise RegistryError(code, exc.message) from exc

    return check


def _check_unused(session: Session, certificate: x509.Certificate) -> str:
    fingerprint = fingerprint_of(certificate)
    owner = session.scalar(
        select(CertificateRow.node_code).where(CertificateRow.fingerprint == fingerprint))
    if owner is not None:
        raise RegistryError("registry.certificate_in_use",
                            f"certificate {fingerprint[:16]}… is already registered to {owner}")
    return fingerprint


# ---------------------------------------------------------------------------- reading


def find_node(session: Session, code: str) -> Node | None:
    row = session.get(NodeRow, code)
    return None if row is None else _node(row)


def get_node(session: Session, code: str) -> Node:
    """The node, or ``registry.unknown_node``."""
    return _node(_row(session, code))


def node_status(session: Session, code: str) -> str | None:
    """``active``, ``suspended``, ``revoked`` or ``None``: :class:`vdx.core.routing.Directory`'s
    question, answered from the registry."""
    return reading(session).scalar(_STATUS, {"code": code})


def node_entry(session: Session, code: str) -> tuple[str, str] | None:
    """``(status, broker user)`` of node ``code``, or ``None`` for an unknown code."""
    row = reading(session).execute(_ENTRY, {"code": code}).first()
    return None if row is None else (row.status, row.broker_user)


def node_of_account(session: Session, user: str) -> str | None:
    """The code of the node whose broker user is ``user``, if any."""
    return reading(session).scalar(_OF_ACCOUNT, {"user": user})


def node_accounts(session: Session) -> tuple[tuple[str, str, bool], ...]:
    """``(code, broker user, has limits)`` of every registered node (what a hub worker
    reads every few seconds: whose submit queues to consume, who is limited)."""
    limited = (_NODES.c.rate_per_second.is_not(None)) | (_NODES.c.max_bytes_per_day.is_not(None))
    rows = reading(session).execute(select(_NODES.c.code, _NODES.c.broker_user, limited))
    return tuple((code, user, bool(has)) for code, user, has in rows)


_UNSET: Any = object()


def set_limits(session: Session, code: str, *, actor: str, rate: float | None = _UNSET,
               burst: int | None = _UNSET, max_bytes_per_day: int | None = _UNSET,
               now: datetime | None = None) -> Node:
    """Change node ``code``'s limits (those given; None removes one) and log it."""
    now = now or utcnow()
    row = _row(session, code)
    before = _snapshot(session, code, now)
    if rate is not _UNSET:
        row.rate_per_second = rate
    if burst is not _UNSET:
        row.burst = burst
    if max_bytes_per_day is not _UNSET:
        row.max_bytes_per_day = max_bytes_per_day
    row.updated_at = now
    _flush(session, code)
    _log(session, actor, "set_limits", code, before, _snapshot(session, code, now), now)
    return _node(row)


def set_broker_user(session: Session, code: str, user: str, *, actor: str,
                    now: datetime | None = None) -> None:
    """Record that node ``code`` now logs in as ``user`` (a credentials reset moved it)."""
    now = now or utcnow()
    row = _row(session, code)
    if row.broker_user == user:
        return
    before = _snapshot(session, code, now)
    row.broker_user, row.updated_at = user, now
    _flush(session, code)
    _log(session, actor, "move_account", code, before, _snapshot(session, code, now), now)


# Asked for every package the hub checks: prebuilt, and run on the session's connection
# (a query through the ORM session costs several times the query itself).
_NODES, _CERTIFICATES = NodeRow.__table__, CertificateRow.__table__
_STATUS = select(_NODES.c.status).where(_NODES.c.code == bindparam("code"))
_ENTRY = select(_NODES.c.status, _NODES.c.broker_user).where(_NODES.c.code == bindparam("code"))
_OF_ACCOUNT = select(_NODES.c.code).where(_NODES.c.broker_user == bindparam("user"))
_SIGNING_CERTIFICATES = select(
    _CERTIFICATES.c.status, _CERTIFICATES.c.pem, _CERTIFICATES.c.overlap_until,
).where(_CERTIFICATES.c.node_code == bindparam("code"),
        _CERTIFICATES.c.status.in_((CURRENT, PREVIOUS)))


def reading(session: Session) -> Connection:
    """``session``'s connection for a prebuilt read, after flushing what is pending as
    the ORM's autoflush would (unless the caller turned it off)."""
    if session.autoflush:
        session.flush()
    return session.connection()


def list_nodes(session: Session, status: str | None = None) -> tuple[Node, ...]:
    """Nodes ordered by code, optionally only those with ``status``."""
    query = select(NodeRow).order_by(NodeRow.code)
    if status is not None:
        query = query.where(NodeRow.status == status)
    return tuple(_node(row) for row in session.scalars(query))


def certificate_history(session: Session, code: str,
                        now: datetime | None = None) -> tuple[Certificate, ...]:
    """Every certificate the node ever had, oldest first, with statuses as of ``now``."""
    _row(session, code)
    now = now or utcnow()
    rows = session.scalars(select(CertificateRow).where(CertificateRow.node_code == code)
                           .order_by(CertificateRow.added_at, CertificateRow.id))
    return tuple(_certificate(row, now) for row in rows)


def admin_log(session: Session, target: str | None = None) -> tuple[AdminEntry, ...]:
    """Admin log entries, oldest first, optionally only those about node ``target``."""
    query = select(AdminLogRow).order_by(AdminLogRow.at, AdminLogRow.id)
    if target is not None:
        query = query.where(AdminLogRow.target == target)
    return tuple(AdminEntry(r.at, r.actor, r.action, r.target, r.before, r.after)
                 for r in session.scalars(query))


def registered_certificates(session: Session, code: str,
                            now: datetime | None = None) -> tuple[x509.Certificate, ...]:
    """The certificates that may sign for ``code`` at ``now``: the current one first, then
    the previous one while its overlap lasts.

    This is the signature verifier's ``registered`` lookup. It refuses senders that may
    not send at all: ``registry.unknown_node``, ``registry.node_suspended``,
    ``registry.node_revoked``.
    """
    return signing_certificates(session, code, node_status(session, code), now)


def signing_certificates(session: Session, code: str, status: str | None,
                         now: datetime | None = None) -> tuple[x509.Certificate, ...]:
    """:func:`registered_certificates` for a caller that read the node's ``status``."""
    if status is None:
        raise RegistryError("registry.unknown_node", f"{code} is not registered")
    if status != ACTIVE:
        raise RegistryError(f"registry.node_{status}", f"{code} is {status}")
    now = now or utcnow()
    rows = reading(session).execute(_SIGNING_CERTIFICATES, {"code": code})
    usable = [r for r in rows if r.status == CURRENT
              or (r.overlap_until is not None and now < r.overlap_until)]
    usable.sort(key=lambda r: r.status != CURRENT)
    return tuple(_load_pem_cached(r.pem) for r in usable)


@functools.lru_cache(maxsize=1024)
def _load_pem_cached(pem: str) -> x509.Certificate:
    """Parsing a certificate costs more than reading it: the same PEM is the same
    (immutable) certificate object, so a worker parses each one once."""
    return _load_pem(pem)


def registered_lookup(session: Session) -> Callable[[str], tuple[x509.Certificate, ...]]:
    """:func:`registered_certificates` bound to ``session``, in the shape of
    :data:`vdx.xmldsig.verify.Registered` (``registered(code) -> certificates``)."""
    return functools.partial(registered_certificates, session)


# ---------------------------------------------------------------------------- changes


def register_node(session: Session, code: str, name: str, certificate: bytes | str, *,
                  check: CertificateCheck, actor: str, parent_code: str | None = None,
                  email: str | None = None, now: datetime | None = None,
                  allow_nonstandard: bool = False, broker_user: str | None = None) -> Node:
    """Register agency ``code`` with ``certificate`` (PEM or DER) as its current one.

    Validated in this order, cheapest first: the code (one in neither official form only
    with ``allow_nonstandard``, see :func:`check_code`), name, parent and e-mail; that the
    code was never registered; the certificate (readable, a leaf, valid at ``now``,
    issued to ``code``, then ``check``); that no node has it already.
    """
    now = now or utcnow()
    check_code(code, allow_nonstandard=allow_nonstandard)
    name = name.strip()
    if not name:
        raise RegistryError("registry.bad_details", "the agency name is empty")
    if parent_code is not None:
        check_code(parent_code, what="parent code", allow_nonstandard=allow_nonstandard)
        if parent_code == code:
            raise RegistryError("registry.bad_code", f"{code} cannot be its own parent")
    if email is not None and not _EMAIL.fullmatch(email):
        raise RegistryError("registry.bad_details", f"{email!r} is not an e-mail address")
    existing = session.get(NodeRow, code)
    if existing is not None:
        reuse = "; codes are never reused" if existing.status == REVOKED else ""
        raise RegistryError("registry.duplicate_node",
                            f"{code} is already registered ({existing.status}){reuse}")
    cert = parse_certificate(certificate)
    check_certificate_for(cert, code, now, check)
    _check_unused(session, cert)
    row = NodeRow(code=code, name=name, parent_code=parent_code, email=email, status=ACTIVE,
                  created_at=now, updated_at=now, broker_user=broker_user or code)
    session.add(row)
    _flush(session, code)  # the node first: no relationship() tells the unit of work so
    session.add(_certificate_row(code, cert, now))
    _flush(session, code)
    _log(session, actor, "register", code, None, _snapshot(session, code, now), now)
    return _node(row)


def suspend_node(session: Session, code: str, *, actor: str,
                 now: datetime | None = None) -> Transition:
    """active → suspended: its packages are refused and nothing is delivered to it."""
    return _set_status(session, code, SUSPENDED, actor=actor, now=now)


def resume_node(session: Session, code: str, *, actor: str,
                now: datetime | None = None) -> Transition:
    """suspended → active. A revoked node cannot come back (``registry.node_revoked``)."""
    return _set_status(session, code, ACTIVE, actor=actor, now=now)


def revoke_node(session: Session, code: str, *, actor: str,
                now: datetime | None = None) -> Transition:
    """→ revoked, for good. The node, its certificates and its log stay as history."""
    return _set_status(session, code, REVOKED, actor=actor, now=now)


def rotate_cert(session: Session, code: str, certificate: bytes | str, *,
                check: CertificateCheck, actor: str,
                overlap_days: int = DEFAULT_OVERLAP_DAYS,
                now: datetime | None = None) -> Certificate:
    """Make ``certificate`` the node's current one; returns it.

    The old current certificate becomes ``previous`` for ``overlap_days`` (0 retires it
    at once), so packages signed just before the rotation still verify; an older
    ``previous`` is retired now: at most two certificates speak for a node at any time.
    Allowed for active and suspended nodes (a suspension for a lost key is lifted after
    the rotation), refused for revoked ones.
    """
    if overlap_days < 0:
        raise ValueError("overlap_days must not be negative")
    now = now or utcnow()
    row = _row(session, code)
    if row.status == REVOKED:
        raise RegistryError("registry.node_revoked", f"{code} is revoked")
    cert = parse_certificate(certificate)
    check_certificate_for(cert, code, now, check)
    _check_unused(session, cert)
    retire_lapsed(session, now)
    before = _snapshot(session, code, now)
    session.execute(update(CertificateRow).where(
        CertificateRow.node_code == code, CertificateRow.status == PREVIOUS,
    ).values(status=RETIRED, retired_at=now))
    overlap_until = now + timedelta(days=overlap_days)
    session.execute(update(CertificateRow).where(
        CertificateRow.node_code == code, CertificateRow.status == CURRENT,
    ).values(status=PREVIOUS if overlap_days else RETIRED, overlap_until=overlap_until,
             retired_at=None if overlap_days else now))
    # The bulk updates above reach the database first, so the one-current index holds.
    new = _certificate_row(code, cert, now)
    session.add(new)
    row.updated_at = now
    _flush(session, code)
    _log(session, actor, "rotate_cert", code, before, _snapshot(session, code, now), now)
    return _certificate(new, now)


def record_action(session: Session, code: str, action: str, *, actor: str,
                  now: datetime | None = None) -> None:
    """Log an action on the node that changes nothing in the registry itself (a broker
    password reset, say): before and after are the same snapshot."""
    now = now or utcnow()
    _row(session, code)
    snapshot = _snapshot(session, code, now)
    _log(session, actor, action, code, snapshot, snapshot, now)


def log_action(session: Session, actor: str, action: str, target: str, *,
               before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
               now: datetime | None = None) -> None:
    """Write one admin log entry about something that is not a node's registry change:
    a console account's creation (target ``user:NAME``), an action refused to a person
    (``denied``)."""
    _log(session, actor, action, target, before, after, now or utcnow())


def retire_lapsed(session: Session, now: datetime | None = None) -> int:
    """Record as ``retired`` every ``previous`` certificate whose overlap has ended.

    Readers already treat those as retired; this only makes the table say so. Returns
    how many rows changed.
    """
    now = now or utcnow()
    rows = session.scalars(select(CertificateRow).where(
        CertificateRow.status == PREVIOUS, CertificateRow.overlap_until <= now)).all()
    for row in rows:
        row.status, row.retired_at = RETIRED, row.overlap_until
    return len(rows)


# -------------------------------------------------------------------------- internals

_ALLOWED = {SUSPENDED: {ACTIVE}, ACTIVE: {SUSPENDED}, REVOKED: {ACTIVE, SUSPENDED}}


def _set_status(session: Session, code: str, status: str, *, actor: str,
                now: datetime | None) -> Transition:
    now = now or utcnow()
    row = _row(session, code)
    before_node = _node(row)
    if row.status == status:
        return Transition(before_node, before_node)
    if row.status not in _ALLOWED[status]:
        raise RegistryError(f"registry.node_{row.status}",
                            f"{code} is {row.status} and cannot become {status}")
    before = _snapshot(session, code, now)
    row.status, row.updated_at = status, now
    _flush(session, code)
    _log(session, actor, {ACTIVE: "resume", SUSPENDED: "suspend", REVOKED: "revoke"}[status],
         code, before, _snapshot(session, code, now), now)
    return Transition(before_node, _node(row))


def _row(session: Session, code: str) -> NodeRow:
    row = session.get(NodeRow, code)
    if row is None:
        raise RegistryError("registry.unknown_node", f"{code} is not registered")
    return row


def _flush(session: Session, code: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        # Two admins racing: the other one's row arrived between our check and our insert.
        raise RegistryError("registry.duplicate_node",
                            f"{code} or its certificate was registered concurrently") from exc


def _log(session: Session, actor: str, action: str, target: str,
         before: dict[str, Any] | None, after: dict[str, Any] | None, now: datetime) -> None:
    session.add(AdminLogRow(at=now, actor=actor, action=action, target=target,
                            before=before, after=after))


def _snapshot(session: Session, code: str, now: datetime) -> dict[str, Any]:
    """The node and its certificates (without PEM) as the admin log keeps them."""
    session.flush()
    node = _node(_row(session, code)).to_dict()
    node["certificates"] = [c.to_dict() for c in certificate_history(session, code, now)]
    return node


def _node(row: NodeRow) -> Node:
    return Node(row.code, row.name, row.status, row.parent_code, row.email, row.created_at,
                row.updated_at, row.broker_user, row.rate_per_second, row.burst,
                row.max_bytes_per_day)


def _certificate(row: CertificateRow, now: datetime) -> Certificate:
    status, retired_at = row.status, row.retired_at
    if status == PREVIOUS and row.overlap_until is not None and row.overlap_until <= now:
        status, retired_at = RETIRED, row.overlap_until
    return Certificate(row.node_code, row.fingerprint, row.serial, row.subject, row.issuer,
                       row.not_before, row.not_after, status, row.added_at, retired_at,
                       row.overlap_until, row.pem)


def _certificate_row(code: str, cert: x509.Certificate, now: datetime) -> CertificateRow:
    return CertificateRow(
        node_code=code, fingerprint=fingerprint_of(cert), serial=serial_hex(cert.serial_number),
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        status=CURRENT, added_at=now, retired_at=None, overlap_until=None)


@functools.lru_cache(maxsize=4096)
def _load_pem(pem: str) -> x509.Certificate:
    # Certificates are immutable: parse each registered PEM once per process.
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}
