"""``vdx console``: the web console for auditors and admins, and the people's accounts
that may sign in to it (:mod:`vdx.console`).
"""

from __future__ import annotations

import sys

import click

from vdx.commands.common import CommandError, VdxGroup, emit_json, hub_admin


@click.group("console", cls=VdxGroup)
def console_group() -> None:
    """The web console: serve it; add, reset and remove the people who may sign in."""


def _password(stdin: bool, prompt: str = "Password") -> str:
    if stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise CommandError("no password on standard input", exit_code=2)
        return password
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


def _accounts(action):
    """Run ``action(session, actor)`` in one transaction; an account refusal is one line."""
    from vdx.console.users import AccountError

    admin = hub_admin()
    try:
        with admin.transaction() as session:
            return action(session, admin.config.actor)
    except AccountError as exc:
        raise CommandError(str(exc)) from exc


_password_stdin = click.option("--password-stdin", "password_stdin", is_flag=True,
                               help="Read the password from the first line of standard "
                                    "input instead of prompting.")


@console_group.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(("auditor", "admin")), required=True,
              help="auditor: reads everything but attachments; admin: also suspends and "
                   "resumes nodes.")
@_password_stdin
def add_user(name: str, role: str, password_stdin: bool) -> None:
    """Let NAME sign in to the console with a password (asked twice, never shown)."""
    from vdx.console import users

    try:
        users.check_name(name)
    except users.AccountError as exc:
        raise CommandError(str(exc), exit_code=2) from exc
    if _accounts(lambda session, _actor: users.get_user(session, name)) is not None:
        raise CommandError(f"a console user named {name} exists already")
    password = _password(password_stdin)
    user = _accounts(lambda session, actor: users.add_user(session, name, role, password,
                                                           actor=actor))
    _ensure_session_key()
    click.echo(f"added console user {user.name} ({user.role})")


@console_group.command("reset-password")
@click.argument("name")
@_password_stdin
def reset_password(name: str, password_stdin: bool) -> None:
    """Give NAME a new password; unlocks the account and ends its open sessions."""
    from vdx.console import users

    if _accounts(lambda session, _actor: users.get_user(session, name)) is None:
        raise CommandError(f"there is no console user named {name}")
    password = _password(password_stdin, "New password")
    _accounts(lambda session, actor: users.reset_password(session, name, password,
                                                          actor=actor))
    click.echo(f"new password set for {name}; its open sessions have ended")


@console_group.command("remove-user")
@click.argument("name")
def remove_user(name: str) -> None:
    """Remove NAME: it can no longer sign in, and its open sessions end."""
    from vdx.console import users

    _accounts(lambda session, actor: users.remove_user(session, name, actor=actor))
    click.echo(f"removed console user {name}")


@console_group.command("users")
@click.option("--json", "as_json", is_flag=True)
def list_users(as_json: bool) -> None:
    """List the people who may sign in to the console."""
    from vdx.console import users

    found = _accounts(lambda session, _actor: users.list_users(session))
    if as_json:
        emit_json([u.to_dict() for u in found])
        return
    if not found:
        click.echo("no console users; add one with `vdx console add-user NAME --role admin`")
        return
    for u in found:
        locked = (f"  locked until {u.locked_until:%Y-%m-%d %H:%M:%S} UTC"
                  if u.locked_until else "")
        last = f"last sign-in {u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else \
            "never signed in"
        click.echo(f"{u.name:<24} {u.role:<8} {last}{locked}")


@console_group.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8090, show_default=True)
@click.option("--secure-cookies/--no-secure-cookies", default=None,
              help="Mark the session cookie Secure (serve it over HTTPS) "
                   "[default: VDX_CONSOLE_SECURE_COOKIES].")
def run(host: str, port: int, secure_cookies: bool | None) -> None:
    """Serve the console until SIGTERM (sign in with an account from `add-user`)."""
    from vdx.console.run import config_from_env, serve
    from vdx.console.secret import SessionKeyError

    admin = hub_admin()
    with admin.transaction():
        pass  # refuses an uninitialised database with one line, before serving
    try:
        config = config_from_env(secure_cookies=secure_cookies)
    except SessionKeyError as exc:
        raise CommandError(str(exc)) from exc
    click.echo(f"VDX console on http://{host}:{port}/", err=True)
    serve(config, host, port)


def _ensure_session_key() -> None:
    from vdx.console.secret import SessionKeyError, ensure_key

    try:
        ensure_key(hub_admin().config.pki_dir)
    except SessionKeyError as exc:
        click.echo(f"warning: {exc}", err=True)
