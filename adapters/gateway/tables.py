"""The VXP gateway's tables and its registry of connected systems (SQL edge).

The gateway program lives in ``adapters/gateway``; its tables live here, on the hub's
:class:`~vdx.store.Base` and in the hub's migrations (0003). The hub reads one of them,
``gateway_system_nodes``, through :mod:`vdx.registry.delegates`: a package published by
the gateway's broker account is accepted for a sender only when a connected system serves
that node.

Tables:

- ``gateway_systems``: one row per connected software installation (its VXP system id),
  its secret, and how its requests are judged: its policy (``strict``, ``compatible``),
  the zone its timestamps are read in (``auto``, ``UTC``, ``Asia/Ho_Chi_Minh``) and the
  networks it may connect from (see ``adapters/gateway/auth.py``). The secret is
  *stored*, not hashed: the VXP SDK proves it knows the secret with an HMAC over each
  request, and checking an HMAC needs the key itself. It is kept encrypted at rest
  (Fernet) with the key :mod:`adapters.gateway.keyfile` finds;
- ``gateway_system_nodes``: which agency nodes each system may act for;
- ``gateway_signers``: nodes whose unsigned packages the gateway signs, with the paths of
  the node's key and certificate files (the key itself never enters the database);
- ``gateway_nonces``: signatures seen, each kept until no reading of its timestamp could
  be accepted again under any zone setting and replay window (``keep_until``);
- ``gateway_mailbox``: what the hub delivered to each served node, kept until the
  system acknowledges it;
- ``gateway_sent`` and ``gateway_sent_recipients``: what each system sent, what the
  hub's receipts and the recipients' statuses said about it.

Repository functions take the session; the caller owns the transaction.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from vdx.errors import GatewayError
from vdx.registry import nodes as registry
from vdx.registry.delegates import (  # noqa: F401  (the gateway's own API, kept in one place)
    GATEWAY_USER,
    GatewaySystemNodeRow,
    gateway_user,
    served_nodes,
    serves,
)
from vdx.store import Base, utcnow

# A new system's settings: replays refused, timestamps read in either zone, any address
# (see the README). Systems registered before these settings existed are pinned to
# Asia/Ho_Chi_Minh instead, the one reading they had (migration 0005).
STRICT = "strict"
AUTO_ZONE = "auto"
# VXP system ids look like "vxp.saas.03": printable ASCII without spaces.
_SYSTEM_ID = re.compile(r"[!-~]{1,128}")


# ------------------------------------------------------------------------------- tables


class GatewaySystemRow(Base):
    __tablename__ = "gateway_systems"

    system_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret: Mapped[str] = mapped_column(String(512))  # "fernet:…" (see above)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(128))
    policy: Mapped[str] = mapped_column(String(16), server_default=STRICT)
    zone: Mapped[str] = mapped_column(String(32), server_default=AUTO_ZONE)
    allow_from: Mapped[str] = mapped_column(Text, server_default="")  # networks, space-separated


class GatewaySignerRow(Base):
    __tablename__ = "gateway_signers"

    node_code: Mapped[str] = mapped_column(ForeignKey("nodes.code"), primary_key=True)
    key_path: Mapped[str] = mapped_column(Text)
    cert_path: Mapped[str] = mapped_column(Text)
    configured_at: Mapped[datetime]
    configured_by: Mapped[str] = mapped_column(String(128))


class GatewayNonceRow(Base):
    __tablename__ = "gateway_nonces"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # operation|signature
    system_id: Mapped[str] = mapped_column(String(128))
    seen_at: Mapped[datetime] = mapped_column(index=True)
    keep_until: Mapped[datetime] = mapped_column(index=True)


class GatewayMailboxRow(Base):
    """One message the hub delivered to ``node_code`` (the hub's message id is the key)."""

    __tablename__ = "gateway_mailbox"
    __table_args__ = (Index("ix_gateway_mailbox_listing", "node_code", "kind", "state"),)

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # edoc | status | receipt
    sender: Mapped[str | None] = mapped_column(String(64))
    document_id: Mapped[str | None] = mapped_column(String(512))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))  # new | processing | fail | done
    status_desc: Mapped[str | None] = mapped_column(String(512))
    attempts: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class GatewaySentRow(Base):
    """One package a system sent through the gateway (``doc_id`` is the answer's DocId)."""

    __tablename__ = "gateway_sent"
    __table_args__ = (UniqueConstraint("from_code", "sha256"),)

    doc_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    system_id: Mapped[str] = mapped_column(String(128), index=True)
    from_code: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))  # of the bytes the system sent
    published_sha256: Mapped[str] = mapped_column(String(64), index=True)  # receipts name it
    kind: Mapped[str] = mapped_column(String(16))  # edoc | status
    document_id: Mapped[str] = mapped_column(String(512))
    title: Mapped[str | None] = mapped_column(Text)
    notation: Mapped[str | None] = mapped_column(String(512))
    signed_by_gateway: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)  # kept until the broker confirms
    sent_at: Mapped[datetime]
    published_at: Mapped[datetime | None]
    send_status: Mapped[str] = mapped_column(String(16))
    send_status_desc: Mapped[str | None] = mapped_column(Text)


class GatewaySentRecipientRow(Base):
    __tablename__ = "gateway_sent_recipients"

    doc_id: Mapped[str] = mapped_column(ForeignKey("gateway_sent.doc_id"), primary_key=True)
    to_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    delivery_id: Mapped[str | None] = mapped_column(String(36))
    delivered_at: Mapped[datetime | None]
    receive_status: Mapped[str | None] = mapped_column(String(2))
    receive_status_desc: Mapped[str | None] = mapped_column(String(512))
    updated_at: Mapped[datetime]


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class System:
    """A connected system, the nodes it may act for and how its requests are judged."""

    system_id: str
    nodes: tuple[str, ...]
    created_at: datetime
    created_by: str
    policy: str = STRICT
    zone: str = AUTO_ZONE
    allow_from: tuple[str, ...] = ()  # networks (CIDR); empty: any address

    def to_dict(self) -> dict[str, Any]:
        return {"system_id": self.system_id, "nodes": list(self.nodes),
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "policy": self.policy, "zone": self.zone, "allow_from": list(self.allow_from)}


@dataclass(frozen=True)
class SignerConfig:
    node_code: str
    key_path: str
    cert_path: str


# ------------------------------------------------------------------------------ secrets


def seal_secret(secret: str, key: str) -> str:
    """How ``secret`` is stored: encrypted with ``key`` (:mod:`adapters.gateway.keyfile`)."""
    return "fernet:" + _fernet(key).encrypt(secret.encode("utf-8")).decode("ascii")


def open_secret(stored: str, key: str | None) -> str:
    """The secret of a stored value; ``gateway.unknown_system`` when it cannot be read.

    ``plain:`` values were written before migration 0008, which encrypts them all; they
    are still read, so that a database restored from an older backup keeps working."""
    kind, _, value = stored.partition(":")
    if kind == "plain":
        return value
    if kind == "fernet" and key:
        from cryptography.fernet import InvalidToken

        try:
            return _fernet(key).decrypt(value.encode("ascii")).decode("utf-8")
        except InvalidToken:
            pass
    raise GatewayError("gateway.unknown_system",
                       "the system's secret is encrypted and the gateway's key (VDX_GATEWAY_KEY, "
                       "VDX_GATEWAY_KEY_FILE or gateway-secrets.key beside the hub's key) is "
                       "missing or is not the key it was stored with")


def _fernet(key: str):
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"vdx gateway secrets").derive(key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(derived))


# --------------------------------------------------------------------------- repository


def create_system(session: Session, system_id: str, nodes: tuple[str, ...], sealed: str, *,
                  actor: str, now: datetime | None = None, policy: str = STRICT,
                  zone: str = AUTO_ZONE, allow_from: tuple[str, ...] = ()) -> System:
    """Register ``system_id`` for ``nodes`` (each registered and not revoked); ``policy``,
    ``zone`` and ``allow_from`` as validated by the caller (``adapters/gateway``)."""
    now = now or utcnow()
    if not _SYSTEM_ID.fullmatch(system_id):
        raise GatewayError("gateway.bad_request",
                           f"system id {system_id!r}: use 1 to 128 printable ASCII characters "
                           f"without spaces, e.g. vxp.saas.03")
    if not nodes:
        raise GatewayError("gateway.bad_request", "give at least one --node")
    if session.get(GatewaySystemRow, system_id) is not None:
        raise GatewayError("gateway.duplicate_system",
                           f"{system_id} is already registered; remove it first "
                           f"(`vdx gateway remove-system {system_id}`)")
    for code in dict.fromkeys(nodes):
        node = registry.get_node(session, code)
        if node.status == registry.REVOKED:
            raise GatewayError("gateway.not_your_node", f"{code} is revoked")
    session.add(GatewaySystemRow(system_id=system_id, secret=sealed, created_at=now,
                                 created_by=actor, policy=policy, zone=zone,
                                 allow_from=" ".join(allow_from)))
    session.flush()
    for code in dict.fromkeys(nodes):
        session.add(GatewaySystemNodeRow(system_id=system_id, node_code=code))
        registry.record_action(session, code, "gateway_add_system", actor=actor, now=now)
    session.flush()
    return System(system_id, tuple(dict.fromkeys(nodes)), now, actor, policy, zone,
                  tuple(allow_from))


def update_system(session: Session, system_id: str, *, actor: str, policy: str | None = None,
                  zone: str | None = None, allow_from: tuple[str, ...] | None = None,
                  ) -> System:
    """Change how ``system_id``'s requests are judged (``None`` keeps a setting); takes
    effect with its next request. Logged on each of its nodes."""
    row = session.get(GatewaySystemRow, system_id)
    if row is None:
        raise GatewayError("gateway.unknown_system",
                           f"{system_id} is not registered (`vdx gateway systems`)")
    if policy is not None:
        row.policy = policy
    if zone is not None:
        row.zone = zone
    if allow_from is not None:
        row.allow_from = " ".join(allow_from)
    system = _system(session, row)
    for code in system.nodes:
        registry.record_action(session, code, "gateway_set_policy", actor=actor)
    session.flush()
    return system


def replace_secret(session: Session, system_id: str, sealed: str, *, actor: str) -> System:
    """Store a new sealed secret for ``system_id``: the old one stops working at once."""
    row = session.get(GatewaySystemRow, system_id)
    if row is None:
        raise GatewayError("gateway.unknown_system",
                           f"{system_id} is not registered (`vdx gateway systems`)")
    row.secret = sealed
    system = _system(session, row)
    for code in system.nodes:
        registry.record_action(session, code, "gateway_rotate_secret", actor=actor)
    session.flush()
    return system


def find_system(session: Session, system_id: str) -> tuple[System, str] | None:
    """The system and its stored (sealed) secret, or ``None``."""
    row = session.get(GatewaySystemRow, system_id)
    if row is None:
        return None
    return _system(session, row), row.secret


def list_systems(session: Session) -> tuple[System, ...]:
    rows = session.scalars(select(GatewaySystemRow).order_by(GatewaySystemRow.system_id))
    return tuple(_system(session, row) for row in rows)


def delete_system(session: Session, system_id: str, *, actor: str) -> System:
    row = session.get(GatewaySystemRow, system_id)
    if row is None:
        raise GatewayError("gateway.unknown_system", f"{system_id} is not registered")
    system = _system(session, row)
    session.execute(delete(GatewaySystemNodeRow)
                    .where(GatewaySystemNodeRow.system_id == system_id))
    session.delete(row)
    for code in system.nodes:
        registry.record_action(session, code, "gateway_remove_system", actor=actor)
    session.flush()
    return system


def set_signer(session: Session, code: str, key_path: str, cert_path: str, *,
               actor: str) -> SignerConfig:
    """Let the gateway sign ``code``'s unsigned packages with these files (paths only)."""
    registry.get_node(session, code)
    row = session.get(GatewaySignerRow, code)
    if row is None:
        row = GatewaySignerRow(node_code=code)
        session.add(row)
    row.key_path, row.cert_path = key_path, cert_path
    row.configured_at, row.configured_by = utcnow(), actor
    registry.record_action(session, code, "gateway_sign_for", actor=actor)
    session.flush()
    return SignerConfig(code, key_path, cert_path)


def clear_signer(session: Session, code: str, *, actor: str) -> bool:
    row = session.get(GatewaySignerRow, code)
    if row is None:
        return False
    session.delete(row)
    registry.record_action(session, code, "gateway_stop_signing", actor=actor)
    return True


def signer_for(session: Session, code: str) -> SignerConfig | None:
    row = session.get(GatewaySignerRow, code)
    return None if row is None else SignerConfig(row.node_code, row.key_path, row.cert_path)


def _system(session: Session, row: GatewaySystemRow) -> System:
    nodes = tuple(session.scalars(select(GatewaySystemNodeRow.node_code)
                                  .where(GatewaySystemNodeRow.system_id == row.system_id)
                                  .order_by(GatewaySystemNodeRow.node_code)))
    return System(row.system_id, nodes, row.created_at, row.created_by, row.policy, row.zone,
                  tuple(row.allow_from.split()))
