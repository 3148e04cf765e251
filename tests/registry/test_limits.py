"""Per-node limits: the token bucket and daily volume rule, migration 0007, and
``vdx node set-limits`` / ``show`` / ``list``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import column, insert, inspect, table
from vdx_cli.cli import main

from tests.support.hub import running_hub
from tests.support.registry import database
from vdx import store
from vdx.hub import limits
from vdx.hub.limits import NodeLimits, Usage, spend

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# ------------------------------------------------------------------------- the rule


def test_a_burst_then_the_rate():
    rule = NodeLimits(rate=2.0, burst=3)
    fits, after = spend(limits.fresh_usage(rule, NOW), rule, [10] * 5, NOW)
    assert fits == [True, True, True, False, False]
    fits, _ = spend(after, rule, [10] * 3, NOW + timedelta(seconds=1))  # two refilled
    assert fits == [True, True, False]


def test_the_bucket_never_holds_more_than_the_burst():
    rule = NodeLimits(rate=1.0, burst=2)
    usage = Usage(0.0, NOW, NOW.date().isoformat(), 0)
    fits, _ = spend(usage, rule, [1] * 4, NOW + timedelta(hours=1))
    assert fits == [True, True, False, False]


def test_the_daily_volume_counts_what_fits_and_starts_again_each_utc_day():
    rule = NodeLimits(max_bytes_per_day=100)
    fits, after = spend(limits.fresh_usage(rule, NOW), rule, [60, 50, 40], NOW)
    assert fits == [True, False, True] and after.bytes_today == 100
    fits, after = spend(after, rule, [1], NOW + timedelta(hours=1))
    assert fits == [False]
    fits, after = spend(after, rule, [100], NOW + timedelta(days=1))
    assert fits == [True] and after.day == "2026-12-06"


def test_the_default_burst_is_ten_seconds_of_the_rate():
    assert NodeLimits(rate=0.5).capacity == 5
    assert NodeLimits(rate=0.01).capacity == 1
    assert not NodeLimits().any and NodeLimits(max_bytes_per_day=1).any


def test_the_refusal_says_which_limit():
    error = limits.refusal("000.00.00.G22", NodeLimits(rate=5, max_bytes_per_day=1000))
    assert error.code == "transport.rate_limited"
    assert "5 packages/s (burst 50)" in error.message and "1,000 bytes a day" in error.message


# ------------------------------------------------------------------------ migration


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0007_adds_no_limit_to_existing_nodes_and_goes_back(backend, tmp_path):
    before = table("nodes", *(column(c) for c in ("code", "name", "status", "created_at",
                                                    "updated_at", "broker_user")))
    with database(backend, tmp_path, revision="0006_node_accounts") as engine:
        with engine.begin() as connection:
            connection.execute(insert(before).values(
                code="000.00.00.G22", name="x", status="active", created_at=NOW,
                updated_at=NOW, broker_user="000.00.00.G22"))
        assert store.migrate(engine, "0007_node_limits") == "0007_node_limits"
        with store.session_factory(engine)() as session:
            assert limits.read_limits(session, ["000.00.00.G22"]) == {}
            verdicts = limits.charge(session, {"000.00.00.G22": [10]},
                                     {"000.00.00.G22": NodeLimits(rate=1, burst=1)}, NOW)
            session.commit()
            assert verdicts == {"000.00.00.G22": [True]}
        command.downgrade(store._alembic_config(engine), "0006_node_accounts")
        inspector = inspect(engine)
        assert "node_usage" not in inspector.get_table_names()
        assert "rate_per_second" not in {c["name"] for c in inspector.get_columns("nodes")}


# ----------------------------------------------------------------------------- CLI


@pytest.mark.rabbitmq
def test_set_limits_show_and_list(tmp_path):
    with running_hub("sqlite", tmp_path, agencies=("G22",), start=False) as hub:
        code = hub.agency("G22").code
        env = hub.environment()
        runner = CliRunner()

        def vdx(*args: str, ok: bool = True):
            result = runner.invoke(main, list(args), env=env)
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert (result.exit_code == 0) == ok, result.output
            return result

        out = vdx("node", "set-limits", code, "--rate", "5/s", "--max-bytes-per-day", "500m")
        assert "5/s, burst 50; 500,000,000 bytes/day" in out.stdout
        shown = json.loads(vdx("node", "set-limits", code, "--burst", "7", "--json").stdout)
        assert (shown["rate_per_second"], shown["burst"],
                shown["max_bytes_per_day"]) == (5.0, 7, 500_000_000)
        assert "limits    5/s, burst 7" in vdx("node", "show", code).stdout
        assert "[limits 5/s, burst 7" in vdx("node", "list").stdout
        assert json.loads(vdx("node", "list", "--json").stdout)[0]["burst"] == 7
        vdx("node", "set-limits", code, "--rate", "none")
        assert json.loads(vdx("node", "show", code, "--json").stdout)[
            "rate_per_second"] is None
        assert vdx("node", "set-limits", code, "--clear").stdout == f"{code}: limits none\n"
        assert "limits    none" in vdx("node", "show", code).stdout
        for bad in (("--rate", "-1"), ("--rate", "fast"), ("--burst", "0")):
            assert "positive number" in vdx("node", "set-limits", code, *bad, ok=False).output
        assert "give --rate" in vdx("node", "set-limits", code, ok=False).output
        assert "not registered" in vdx("node", "set-limits", "000.00.00.Z99", "--rate", "1",
                                       ok=False).output
        log = json.loads(vdx("node", "show", code, "--json").stdout)["admin_log"]
        assert [e["action"] for e in log].count("set_limits") == 4
