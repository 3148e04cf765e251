"""People's accounts for the web console: who may sign in, with which role, and how
repeated failures are slowed down.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second
recommended set: 64 MiB, 3 passes), never stored or logged. A sign-in to an unknown name
spends the same time on a hash of nothing (:func:`authenticate`), so timing does not
say which names exist. After :data:`MAX_FAILURES` wrong passwords in a row an account is
locked for :data:`FIRST_LOCK`, doubled by each further failure up to :data:`LONGEST_LOCK`;
while locked, no password is tried at all. Every change to an account writes one entry in
the admin log (target ``user:NAME``), with the actor.

Functions take the session; the caller owns the transaction.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vdx.registry import nodes as registry
from vdx.store import ConsoleUserRow, utcnow

ROLES = ("auditor", "admin")
AUDITOR, ADMIN = ROLES
MIN_PASSWORD = 10
MAX_FAILURES = 5
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(hours=1)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_hasher = PasswordHasher()


class AccountError(Exception):
    """An account request that cannot be done; the message says why (one line)."""


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str
    created_at: datetime
    updated_at: datetime
    failed_logins: int = 0
    locked_until: datetime | None = None
    last_login_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def stamp(self) -> str:
        """Changes whenever the password or role does: sessions issued before end."""
        return self.updated_at.isoformat()

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Login:
    """The outcome of :func:`authenticate`: ``user`` when the password was right."""

    user: ConsoleUser | None
    locked_until: datetime | None = None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise AccountError(f"{name!r} is not a usable name: 1 to 64 letters, digits, '.', "
                           f"'_', '@' or '-', starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short ({MIN_PASSWORD} characters at least)")
    if password != password.strip():
        raise AccountError("the password starts or ends with a space (a paste error?)")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _nobody_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(24))


def _matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --------------------------------------------------------------------- reading


def get_user(session: Session, name: str) -> ConsoleUser | None:
    row = session.scalar(select(ConsoleUserRow).where(ConsoleUserRow.name == name))
    return None if row is None else _user(row)


def list_users(session: Session) -> tuple[ConsoleUser, ...]:
    return tuple(_user(r) for r in session.scalars(
        select(ConsoleUserRow).order_by(ConsoleUserRow.name)))


# --------------------------------------------------------------------- changes


def add_user(session: Session, name: str, role: str, password: str, *, actor: str,
             now: datetime | None = None) -> ConsoleUser:
    now = now or utcnow()
    check_name(name)
    if role not in ROLES:
        raise AccountError(f"role {role!r}: choose auditor or admin")
    check_password(password)
    if _row(session, name, required=False) is not None:
        raise AccountError(f"a console user named {name} exists already")
    row = ConsoleUserRow(name=name, role=role, password_hash=hash_password(password),
                         created_at=now, updated_at=now, failed_logins=0)
    session.add(row)
    session.flush()
    registry.log_action(session, actor, "console_add_user", f"user:{name}",
                        after={"name": name, "role": role}, now=now)
    return _user(row)


def reset_password(session: Session, name: str, password: str, *, actor: str,
                   now: datetime | None = None) -> ConsoleUser:
    """A new password; the lock and the failure count are cleared and the user's open
    sessions end."""
    now = now or utcnow()
    check_password(password)
    row = _row(session, name)
    row.password_hash = hash_password(password)
    row.failed_logins, row.locked_until, row.updated_at = 0, None, _later(row.updated_at, now)
    session.flush()
    registry.log_action(session, actor, "console_reset_password", f"user:{name}",
                        after={"name": name, "role": row.role}, now=now)
    return _user(row)


def remove_user(session: Session, name: str, *, actor: str, now: datetime | None = None,
                ) -> None:
    now = now or utcnow()
    row = _row(session, name)
    before = {"name": row.name, "role": row.role}
    session.delete(row)
    session.flush()
    registry.log_action(session, actor, "console_remove_user", f"user:{name}",
                        before=before, now=now)


def authenticate(session: Session, name: str, password: str,
                 now: datetime | None = None) -> Login:
    """Check ``password`` for ``name``, counting failures and locking (module doc).

    The same answer, and about the same time, for an unknown name, a wrong password
    and a locked account: only ``locked_until`` (for the log) tells them apart.
    """
    now = now or utcnow()
    row = session.scalar(select(ConsoleUserRow).where(ConsoleUserRow.name == name)
                         .with_for_update())
    if row is None or (row.locked_until is not None and row.locked_until > now):
        _matches(_nobody_hash(), password)
        return Login(None, row.locked_until if row is not None else None)
    if not _matches(row.password_hash, password):
        # Counted in SQL: concurrent failures (several workers on PostgreSQL) all count.
        session.execute(update(ConsoleUserRow).where(ConsoleUserRow.id == row.id)
                        .values(failed_logins=ConsoleUserRow.failed_logins + 1))
        session.refresh(row)
        if row.failed_logins >= MAX_FAILURES:
            row.locked_until = now + lock_time(row.failed_logins)
            registry.log_action(session, f"console:{name}", "console_locked",
                                f"user:{name}", after={"failed_logins": row.failed_logins,
                                                       "locked_until":
                                                           row.locked_until.isoformat()},
                                now=now)
        return Login(None, row.locked_until)
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = hash_password(password)
    row.failed_logins, row.locked_until, row.last_login_at = 0, None, now
    return Login(_user(row))


def lock_time(failures: int) -> timedelta:
    """How long the ``failures``-th failure in a row locks an account."""
    if failures < MAX_FAILURES:
        return timedelta(0)
    doublings = min(failures - MAX_FAILURES, 32)  # past the longest lock: no overflow
    return min(FIRST_LOCK * 2 ** doublings, LONGEST_LOCK)


# ------------------------------------------------------------------- internals


def _row(session: Session, name: str, *, required: bool = True) -> ConsoleUserRow:
    row = session.scalar(select(ConsoleUserRow).where(ConsoleUserRow.name == name))
    if row is None and required:
        raise AccountError(f"there is no console user named {name}")
    return row


def _later(previous: datetime, now: datetime) -> datetime:
    # The stamp must change even when two changes fall within the clock's resolution.
    return now if now > previous else previous + timedelta(microseconds=1)


def _user(row: ConsoleUserRow) -> ConsoleUser:
    return ConsoleUser(row.name, row.role, row.created_at, row.updated_at,
                       row.failed_logins or 0, row.locked_until, row.last_login_at)
