"""``vdx console`` user commands: add, list, reset, remove; one-line errors; the admin log."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from vdx_cli.cli import main

from tests.support.registry import database
from vdx import store
from vdx.console import users
from vdx.store import AdminLogRow, ConsoleUserRow


@pytest.fixture
def env(tmp_path, monkeypatch):
    with database("sqlite", tmp_path) as engine:
        monkeypatch.setenv("VDX_DATABASE_URL", str(engine.url))
        monkeypatch.setenv("VDX_PKI_DIR", str(tmp_path / "pki"))
        monkeypatch.setenv("VDX_ACTOR", "ops-alice")
        monkeypatch.delenv("VDX_CONSOLE_KEY", raising=False)
        monkeypatch.delenv("VDX_CONSOLE_KEY_FILE", raising=False)
        yield engine, tmp_path


def vdx(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin)


def test_add_list_reset_remove(env):
    engine, tmp = env
    added = vdx("console", "add-user", "lan", "--role", "admin", "--password-stdin",
                stdin="a long enough pw\n")
    assert added.exit_code == 0, added.output
    assert "added console user lan (admin)" in added.output
    key = tmp / "pki" / "hub" / "console-sessions.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) >= 32
    listed = json.loads(vdx("console", "users", "--json").stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("lan", "admin")]
    assert "password_hash" not in listed[0]
    assert "lan" in vdx("console", "users").output
    with store.session_factory(engine)() as session:
        first = session.scalar(select(ConsoleUserRow.password_hash))
        assert users.authenticate(session, "lan", "a long enough pw").user is not None
        session.commit()
    reset = vdx("console", "reset-password", "lan", "--password-stdin", stdin="another password\n")
    assert reset.exit_code == 0, reset.output
    with store.session_factory(engine)() as session:
        assert session.scalar(select(ConsoleUserRow.password_hash)) != first
        assert users.authenticate(session, "lan", "another password").user is not None
    assert vdx("console", "remove-user", "lan").exit_code == 0
    assert json.loads(vdx("console", "users", "--json").stdout) == []
    with store.session_factory(engine)() as session:
        log = session.execute(select(AdminLogRow.actor, AdminLogRow.action, AdminLogRow.target)
                              .order_by(AdminLogRow.id)).all()
    assert [tuple(r) for r in log] == [
        ("ops-alice", "console_add_user", "user:lan"),
        ("ops-alice", "console_reset_password", "user:lan"),
        ("ops-alice", "console_remove_user", "user:lan")]


def test_the_password_prompt_asks_twice(env):
    mismatch = vdx("console", "add-user", "minh", "--role", "auditor",
                   stdin="first password!\nsecond password\nfirst password!\nfirst password!\n")
    assert mismatch.exit_code == 0, mismatch.output
    assert "do not match" in mismatch.output.lower()
    assert json.loads(vdx("console", "users", "--json").stdout)[0]["role"] == "auditor"


@pytest.mark.parametrize("args, stdin, message", [
    (("add-user", "x y", "--role", "admin", "--password-stdin"), "long enough pw\n",
     "not a usable name"),
    (("add-user", "ok", "--role", "admin", "--password-stdin"), "short\n", "too short"),
    (("add-user", "ok", "--role", "admin", "--password-stdin"), "\n", "no password"),
    (("reset-password", "ghost", "--password-stdin"), "long enough pw\n", "no console user"),
    (("remove-user", "ghost"), None, "no console user named ghost"),
])
def test_refusals_are_one_line(env, args, stdin, message):
    result = vdx("console", *args, stdin=stdin)
    assert result.exit_code in (1, 2)
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("error:") == 1


def test_a_name_is_taken_once_and_roles_are_checked(env):
    assert vdx("console", "add-user", "hoa", "--role", "auditor", "--password-stdin",
               stdin="long enough pw\n").exit_code == 0
    again = vdx("console", "add-user", "hoa", "--role", "admin", "--password-stdin",
                stdin="long enough pw\n")
    assert again.exit_code == 1 and "exists already" in again.output
    bad = vdx("console", "add-user", "tu", "--role", "root", "--password-stdin", stdin="x\n")
    assert bad.exit_code == 2


def test_an_uninitialised_database_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("VDX_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    result = vdx("console", "users")
    assert result.exit_code == 1 and "run `vdx init`" in result.output
    assert "Traceback" not in result.output


def test_audit_verify_is_recorded_for_the_console(env):
    from vdx.hub import reports

    engine, tmp = env
    from vdx.xmldsig import pki

    pki.init_ca(tmp / "pki", ec_key=True)
    pki.issue_hub(tmp / "pki", ec_key=True)
    result = vdx("audit", "verify")
    assert result.exit_code == 0, result.output
    with store.session_factory(engine)() as session:
        check = reports.last_ledger_check(session)
    assert check is not None and check.intact and check.actor == "ops-alice"
    assert check.entries == 0


def test_demo_keep_says_how_to_open_the_console(monkeypatch, tmp_path):
    from vdx_adapters.demo import DemoResult, console_commands

    monkeypatch.setenv("VDX_AMQP_URL", "amqp://hub:s3cret@mq.example:5672/%2F")
    lines = console_commands(DemoResult(tmp_path, vhost="vdx-demo-ab12"))
    assert f"VDX_DATABASE_URL=sqlite:///{tmp_path / 'vdx.db'}" in lines[0]
    assert f"VDX_PKI_DIR={tmp_path / 'pki'}" in lines[0]
    assert "amqp://hub:PASSWORD@mq.example:5672/vdx-demo-ab12" in lines[0]
    assert "s3cret" not in "\n".join(lines)
    assert lines[1] == "vdx console add-user admin --role admin"
    assert lines[2].startswith("vdx console run")
