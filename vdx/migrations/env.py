"""Alembic environment for the hub's schema, run programmatically by :func:`vdx.store.migrate`.

No ``alembic.ini`` is needed at run time: :func:`vdx.store.migrate` passes the engine in
``config.attributes["engine"]``. A developer writing a new migration can still use the
``alembic`` command with a small ini naming ``script_location = vdx/migrations``; the
database is then ``$VDX_DATABASE_URL`` (or the default SQLite file).
"""

from __future__ import annotations

from alembic import context

from vdx import store
from vdx.hub import journal
from vdx.registry import delegates

# Every module that defines tables on store.Base must be imported here for
# ``alembic revision --autogenerate`` to see its tables (upgrades do not need it).
target_metadata = store.Base.metadata
assert journal.DocumentRow.__table__.metadata is target_metadata
assert delegates.GatewaySystemNodeRow.__table__.metadata is target_metadata
try:  # the VXP gateway's own tables, in the same database and migrations
    from vdx_adapters.gateway import tables as gateway_tables
except ImportError:  # pragma: no cover - the adapters are installed with the hub
    gateway_tables = None
else:
    assert gateway_tables.GatewaySystemRow.__table__.metadata is target_metadata


def run_migrations() -> None:
    engine = context.config.attributes.get("engine") or store.make_engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode copies the table.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `vdx init`")
run_migrations()
