"""Which broker user may publish for which node: the VXP gateway's delegation.

A node publishes as itself (its own broker account); the VXP gateway publishes for the
nodes its connected systems serve, through one account of its own. The hub asks
:func:`serves` for every package the gateway's account publishes; the gateway's other
tables live with the gateway (``adapters/gateway/tables.py``), on the same
:class:`~vdx.store.Base` and in the same migrations.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, bindparam, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from vdx.registry import nodes as registry
from vdx.store import Base

GATEWAY_USER = "vdx.gateway"


def gateway_user(vhost: str) -> str:
    """The gateway's broker account for the hub in ``vhost``.

    Broker users are global while vhosts are not: a hub in another vhost (a test, a
    second environment on the same broker) gets an account of its own, so provisioning
    one never resets another's password. Never a valid agency code (lower case), so it
    can never be mistaken for a node.
    """
    return GATEWAY_USER if vhost == "/" else f"{GATEWAY_USER}@{vhost}"


# ------------------------------------------------------------------------------- tables


class GatewaySystemNodeRow(Base):
    __tablename__ = "gateway_system_nodes"

    system_id: Mapped[str] = mapped_column(ForeignKey("gateway_systems.system_id"),
                                           primary_key=True)
    node_code: Mapped[str] = mapped_column(ForeignKey("nodes.code"), primary_key=True,
                                           index=True)


# ------------------------------------------------------------------------------ reading


def served_nodes(session: Session) -> tuple[str, ...]:
    """Every node some connected system serves, sorted."""
    return tuple(session.scalars(select(GatewaySystemNodeRow.node_code).distinct()
                                 .order_by(GatewaySystemNodeRow.node_code)))


_SERVES = (select(GatewaySystemNodeRow.__table__.c.node_code)
           .where(GatewaySystemNodeRow.__table__.c.node_code == bindparam("code")).limit(1))


def serves(session: Session, code: str) -> bool:
    """Whether some connected system acts for node ``code``."""
    return registry.reading(session).scalar(_SERVES, {"code": code}) is not None
