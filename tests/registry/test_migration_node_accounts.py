"""Migration 0006: nodes registered before accounts were named per vhost keep logging in
under their bare code, recorded as their broker user; new ones record CODE@VHOST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import column, insert, inspect, select, table

from tests.support.registry import database
from vdx import store
from vdx.registry import nodes as registry
from vdx.store import NodeRow

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_existing_nodes_keep_their_bare_code_as_their_account(backend, tmp_path):
    now = datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    nodes = NodeRow.__table__
    before = table("nodes", *(column(c) for c in ("code", "name", "status", "created_at",
                                                    "updated_at")))
    with database(backend, tmp_path, revision="0005_gateway_policy") as engine:
        with engine.begin() as connection:
            for code in ("000.00.00.G22", "vxp.saas.03"):
                connection.execute(insert(before).values(
                    code=code, name="x", status="active", created_at=now, updated_at=now))
        assert store.migrate(engine, "0006_node_accounts") == "0006_node_accounts"
        with store.session_factory(engine)() as session:
            assert registry.node_entry(session, "000.00.00.G22") == ("active", "000.00.00.G22")
            assert registry.node_of_account(session, "vxp.saas.03") == "vxp.saas.03"
            assert registry.node_of_account(session, "vxp.saas.03@training") is None
        with engine.begin() as connection:  # one account, one node
            with pytest.raises(Exception, match="(?i)unique"):
                connection.execute(nodes.update().where(nodes.c.code == "vxp.saas.03")
                                   .values(broker_user="000.00.00.G22"))
        with engine.connect() as connection:
            users = dict(connection.execute(select(nodes.c.code, nodes.c.broker_user)).all())
        assert users == {"000.00.00.G22": "000.00.00.G22", "vxp.saas.03": "vxp.saas.03"}
        command.downgrade(store._alembic_config(engine), "0005_gateway_policy")
        assert "broker_user" not in {c["name"] for c in inspect(engine).get_columns("nodes")}
        with engine.connect() as connection:
            assert connection.execute(select(nodes.c.code).order_by(nodes.c.code)) \
                .scalars().all() == ["000.00.00.G22", "vxp.saas.03"]
