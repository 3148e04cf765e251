"""What every command group shares: the one-line failure, option callbacks, file IO.

A command that fails raises :class:`CommandError` (or lets a :class:`VdxError` escape to a
:class:`VdxGroup`): the user sees one line, ``error: …``, on stderr, and the exit code is
1, or 2 when the input given cannot be used at all.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from vdx.core.identifiers import identifier_problem, node_code_problem
from vdx.errors import VdxError

if TYPE_CHECKING:
    from vdx.registry.admin import Admin


class CommandError(click.ClickException):
    """A refusal or failure shown as one line, ``error: MESSAGE``, with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


class VdxGroup(click.Group):
    """Turns any :class:`VdxError` escaping a command into one line and exit 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VdxError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc


def finish(ok: bool) -> NoReturn:
    """Exit 0 when ``ok``, 1 when not: for commands whose report is already printed."""
    click.get_current_context().exit(0 if ok else 1)


def emit_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def agency_code(ctx: click.Context, param: click.Parameter, value):
    """Option callback: a code that can name a node (warns when it is nonstandard)."""
    # One outside the official forms (vxp.saas.03) is a node the registry may hold, so it
    # is a warning here; the command that uses it says if the registry does not have it.
    values = value if isinstance(value, tuple) else (value,)
    for code in values:
        if code is None:
            continue
        if problem := node_code_problem(code):
            raise click.BadParameter(problem)
        if problem := identifier_problem(code):
            click.echo(f"warning: quirk.nonstandard_identifier: {problem}", err=True)
    return value


def parse_date(ctx: click.Context | None, param: click.Parameter | None,
               value: str | None) -> date | None:
    """Option callback: ``yyyy/MM/dd`` (or ``yyyy-MM-dd``) as a date."""
    if value is None:
        return None
    for fmt in ("%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            pass
    raise click.BadParameter(f"{value!r} is not a date (yyyy/MM/dd)")


def write_file(out: str, data: bytes) -> None:
    """Write ``data`` to ``out`` and say so on stderr."""
    path = Path(out)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from exc
    click.echo(f"wrote {path} ({len(data):,} bytes)", err=True)


def read_file(path: str) -> bytes:
    """The bytes of ``path``; an unreadable file is a usage error (exit 2)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", exit_code=2) from exc


def hub_admin(trust: str | None = None) -> Admin:
    """The hub's :class:`Admin` from the environment (``trust`` overrides its trust dir)."""
    # Imported here: the offline commands must not pay for SQLAlchemy, Alembic and the
    # verifier.
    from dataclasses import replace

    from vdx.registry.admin import Admin, HubConfig

    config = HubConfig.from_env()
    return Admin(replace(config, trust_dir=Path(trust)) if trust else config)
