"""Gateway systems' secrets encrypted at rest.

Revision ID: 0008_gateway_secrets
Revises: 0007_node_limits
Create Date: 2026-12-05

Every secret still stored as ``plain:…`` is encrypted (``fernet:…``) with the key the
gateway finds at run time (``adapters/gateway/keyfile.py``: ``$VDX_GATEWAY_KEY``,
``$VDX_GATEWAY_KEY_FILE``, or ``gateway-secrets.key`` beside the hub's key in
``$VDX_PKI_DIR``, default ``$VDX_HOME/pki``). When there is a plain secret and no key yet,
the key file is created there (mode 0600); when it cannot be, the upgrade stops with the
reason and changes nothing. With no plain secret, nothing is read or created. The
systems keep authenticating with the secrets they have.

The downgrade writes them back as ``plain:…``, which the code before this revision reads
without any key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_gateway_secrets"
down_revision = "0007_node_limits"
branch_labels = None
depends_on = None

_systems = sa.table("gateway_systems", sa.column("system_id", sa.String(128)),
                    sa.column("secret", sa.String(512)))


def _rows(prefix: str) -> list[tuple[str, str]]:
    return [tuple(row) for row in op.get_bind().execute(
        sa.select(_systems.c.system_id, _systems.c.secret)
        .where(_systems.c.secret.like(f"{prefix}:%")))]


def _store(system_id: str, secret: str) -> None:
    op.get_bind().execute(_systems.update().where(_systems.c.system_id == system_id)
                          .values(secret=secret))


def upgrade() -> None:
    plain = _rows("plain")
    if not plain:
        return
    from vdx_adapters.gateway import keyfile, tables

    key = keyfile.ensure_key().key
    for system_id, stored in plain:
        _store(system_id, tables.seal_secret(tables.open_secret(stored, None), key))


def downgrade() -> None:
    sealed = _rows("fernet")
    if not sealed:
        return
    from vdx_adapters.gateway import keyfile, tables

    key = keyfile.require_key()
    for system_id, stored in sealed:
        _store(system_id, "plain:" + tables.open_secret(stored, key))
