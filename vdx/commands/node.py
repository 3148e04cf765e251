"""``vdx init``, ``vdx node`` and ``vdx doctor``: the hub's database, certificate and
broker topology; agency nodes, their status, certificates and broker accounts.
"""

from __future__ import annotations

import click

from vdx.commands.common import CommandError, VdxGroup, emit_json, finish, hub_admin, read_file


def _show_credentials(code: str, credentials, credentials_file: str | None) -> None:
    from vdx.broker.provision import write_credentials

    if credentials_file:
        try:
            path = write_credentials(credentials_file, credentials)
        except OSError as exc:
            raise CommandError(f"cannot write {credentials_file}: {exc.strerror}; the password "
                               f"was not shown, run `vdx node credentials {code} --reset`"
                               ) from exc
        click.echo(f"broker credentials written to {path} (mode 0600); the hub keeps no copy")
        return
    click.echo(f"broker user  {credentials.username}  (vhost {credentials.vhost})")
    click.echo(f"password     {credentials.password}")
    click.echo(f"AMQP URL     {credentials.amqp_url}")
    click.echo("shown once: the hub keeps no copy (`vdx node credentials CODE --reset` "
               "issues a new one)", err=True)


_trust_dir = click.option(
    "--trust", type=click.Path(file_okay=False), envvar="VDX_TRUST_DIR",
    help="Trust anchors and CRLs the certificate must chain to (as for `vdx envelope "
         "verify`); default: the hub's PKI directory.")

_credentials_file = click.option(
    "--credentials-file", type=click.Path(dir_okay=False),
    help="Write the broker password to this file (mode 0600) instead of printing it.")


@click.command("init")
@click.option("--dev-ca/--no-dev-ca", default=True, show_default=True,
              help="Without a CA or hub certificate, create a TEST development CA and "
                   "issue the hub certificate from it.")
def init(dev_ca: bool) -> None:
    """Create or migrate the database, the hub certificate, the key of the gateway
    systems' secrets and the broker topology.

    Safe to run again: it also repairs every node's inbox, binding and rights (it never
    creates or resets a password).
    """
    from vdx_adapters.commands import ensure_gateway_key

    from vdx.xmldsig.pki import PkiError

    admin = hub_admin()
    try:
        report = admin.init(dev_ca=dev_ca)
    except PkiError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:  # the PKI directory is not writable, say
        raise CommandError(f"{exc.filename or 'the hub certificate'}: {exc.strerror}") from exc
    click.echo(f"database     schema {report.revision}")
    if report.created_test_ca:
        click.echo(f"warning: created a TEST development CA in {report.hub_cert.parent.parent}; "
                   f"never use it in production", err=True)
    state = "issued" if report.issued_hub_cert else "present"
    click.echo(f"hub cert     {state}: {report.hub_cert}")
    ensure_gateway_key(admin)
    click.echo(f"broker       topology declared{' (new vhost)' if report.created_vhost else ''}; "
               f"{report.nodes_checked} node(s) checked")
    for code in report.missing_accounts:
        click.echo(f"warning: {code} has no broker account: run `vdx node credentials {code} "
                   f"--reset`", err=True)
    for code in report.shared_name_accounts:
        click.echo(f"warning: {code} logs in under a name not bound to this hub's vhost, "
                   f"which another hub on this broker could share: run `vdx node credentials "
                   f"{code} --reset` to move it to its own (a new password)", err=True)

@click.group("node", cls=VdxGroup)
def node_group() -> None:
    """Register agency nodes; manage their status, certificates and broker accounts."""


@node_group.command("register")
@click.argument("code")
@click.option("--name", required=True, help="The agency's name, e.g. 'Văn phòng Chính phủ'.")
@click.option("--cert", "cert_file", required=True, type=click.Path(dir_okay=False),
              help="The agency's signing certificate (PEM or DER).")
@click.option("--parent", "parent_code", help="Code of the parent agency.")
@click.option("--email", help="Contact e-mail of the agency's administrator.")
@_trust_dir
@_credentials_file
@click.option("--allow-nonstandard-code", "nonstandard", is_flag=True,
              help="Accept a CODE in neither official form (QCVN 102:2016, Decision "
                   "20/2020) that the national axis uses, e.g. vxp.saas.03 or 01.02.G22.")
@click.option("--json", "as_json", is_flag=True, help="Print the node and credentials as JSON.")
def node_register(code, name, cert_file, parent_code, email, trust, credentials_file,
                  nonstandard, as_json) -> None:
    """Register agency CODE with its certificate and give it a broker account."""
    node, credentials = hub_admin(trust).register(code, name, read_file(cert_file),
                                               parent_code=parent_code, email=email,
                                               allow_nonstandard_code=nonstandard)
    if as_json and not credentials_file:
        emit_json(node.to_dict() | {"credentials": credentials.to_dict()})
        return
    click.echo(f"registered {node.code} ({node.name})")
    _show_credentials(code, credentials, credentials_file)


@node_group.command("list")
@click.option("--status", type=click.Choice(("active", "suspended", "revoked")))
@click.option("--json", "as_json", is_flag=True)
def node_list(status: str | None, as_json: bool) -> None:
    """List registered nodes."""
    nodes = hub_admin().list_nodes(status)
    if as_json:
        emit_json([n.to_dict() for n in nodes])
        return
    if not nodes:
        click.echo("no nodes" + (f" are {status}" if status else " registered"))
        return
    width = max(len(n.code) for n in nodes)
    for n in nodes:
        limits = _limits_line(n)
        click.echo(f"{n.code:<{width}}  {n.status:<9}  {n.name}"
                   + (f"  (parent {n.parent_code})" if n.parent_code else "")
                   + (f"  [limits {limits}]" if limits != "none" else ""))


@node_group.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
def node_show(code: str, as_json: bool) -> None:
    """Show a node, its certificate history and its admin log."""
    view = hub_admin().show(code)
    if as_json:
        emit_json(view.to_dict())
        return
    node = view.node
    for key, value in (("code", node.code), ("name", node.name), ("status", node.status),
                       ("parent", node.parent_code), ("email", node.email),
                       ("limits", _limits_line(node)),
                       ("created", f"{node.created_at:%Y-%m-%d %H:%M} UTC"),
                       ("updated", f"{node.updated_at:%Y-%m-%d %H:%M} UTC")):
        click.echo(f"{key:<8}  {value or '-'}")
    click.echo("certificates")
    for c in view.certificates:
        until = f", overlap until {c.overlap_until:%Y-%m-%d %H:%M}" if c.overlap_until else ""
        click.echo(f"  {c.status:<8}  serial {c.serial}  valid {c.not_before:%Y-%m-%d} → "
                   f"{c.not_after:%Y-%m-%d}  sha256 {c.fingerprint[:16]}…{until}")
    click.echo("admin log")
    for e in view.log:
        click.echo(f"  {e.at:%Y-%m-%d %H:%M:%S}  {e.actor:<12}  {e.action}")


def _status_command(name: str, doc: str) -> click.Command:
    @node_group.command(name, help=doc)
    @click.argument("code")
    def command(code: str) -> None:
        transition = getattr(hub_admin(), name)(code)
        if transition.changed:
            click.echo(f"{code}: {transition.before.status} → {transition.after.status}")
        else:
            click.echo(f"{code} is already {transition.after.status}")

    return command


node_suspend = _status_command(
    "suspend", "Suspend CODE: its packages are refused and nothing is delivered to "
    "it; its broker account stays so it can drain its inbox.")
node_resume = _status_command("resume", "Resume a suspended CODE.")
node_revoke = _status_command(
    "revoke", "Revoke CODE for good: its history stays, its broker account is "
    "closed (the inbox is kept, unbound, with what it still holds).")


@node_group.command("rotate-cert")
@click.argument("code")
@click.option("--cert", "cert_file", required=True, type=click.Path(dir_okay=False),
              help="The new signing certificate (PEM or DER).")
@click.option("--overlap-days", type=click.IntRange(min=0), default=7, show_default=True,
              help="How long the old certificate still verifies packages signed before.")
@_trust_dir
def node_rotate_cert(code: str, cert_file: str, overlap_days: int, trust: str | None) -> None:
    """Make a new certificate current for CODE; the old one retires after the overlap."""
    cert = hub_admin(trust).rotate_cert(code, read_file(cert_file), overlap_days)
    click.echo(f"{code}: certificate serial {cert.serial} is current (valid until "
               f"{cert.not_after:%Y-%m-%d})"
               + (f"; the previous one verifies until {overlap_days} day(s) from now"
                  if overlap_days else "; the previous one is retired"))


def _limit_value(kind: type, unit: str):
    def parse(_ctx, param, value: str | None):
        if value is None:
            return None
        text = value.strip().lower().removesuffix(unit).replace("_", "")
        if text in ("none", "off"):
            return "none"
        scale = 1
        for suffix, factor in (("k", 1000), ("m", 1000**2), ("g", 1000**3)):
            if unit == "" and text.endswith(suffix):
                text, scale = text[:-1], factor
        try:
            number = kind(text) * scale
        except ValueError:
            number = 0
        if number <= 0:
            raise click.BadParameter(f"{value!r}: give a positive number, or 'none'",
                                     param=param)
        return number
    return parse


def _limits_line(node) -> str:
    from vdx.hub.limits import NodeLimits

    limits = NodeLimits(node.rate_per_second, node.burst, node.max_bytes_per_day)
    shown = []
    if limits.rate is not None:
        shown.append(f"{limits.rate:g}/s, burst {int(limits.capacity)}")
    if limits.max_bytes_per_day is not None:
        shown.append(f"{limits.max_bytes_per_day:,} bytes/day")
    return "; ".join(shown) or "none"


@node_group.command("set-limits")
@click.argument("code")
@click.option("--rate", callback=_limit_value(float, "/s"), metavar="N/s",
              help="Packages per second on average (e.g. 5 or 0.5/s); 'none' removes it.")
@click.option("--burst", callback=_limit_value(int, "x"), metavar="N",
              help="Packages accepted at once above the rate (default: 10 s of the rate); "
                   "'none' restores the default.")
@click.option("--max-bytes-per-day", callback=_limit_value(int, ""), metavar="N",
              help="Bytes of packages per UTC day (suffix k, m, g: 500m); 'none' removes it.")
@click.option("--clear", is_flag=True, help="Remove every limit of CODE.")
@click.option("--json", "as_json", is_flag=True, help="Print the node as JSON.")
def node_set_limits(code: str, rate, burst, max_bytes_per_day, clear: bool,
                    as_json: bool) -> None:
    """Limit what the hub takes from CODE: a package beyond gets a `rejected` receipt
    (transport.rate_limited), checked before its signature. Limits hold across all the
    hub's workers."""
    given = {"rate": rate, "burst": burst, "max_bytes_per_day": max_bytes_per_day}
    if clear:
        if any(v is not None for v in given.values()):
            raise CommandError("--clear removes every limit; give it alone")
        changes = dict.fromkeys(given)
    else:
        changes = {k: None if v == "none" else v for k, v in given.items() if v is not None}
        if not changes:
            raise CommandError("give --rate, --burst, --max-bytes-per-day or --clear")
    node = hub_admin().set_limits(code, **changes)
    if as_json:
        emit_json(node.to_dict())
        return
    click.echo(f"{code}: limits {_limits_line(node)}")


@node_group.command("credentials")
@click.argument("code")
@click.option("--reset", is_flag=True, help="Issue a new broker password (the old one stops "
                                            "working and open connections are closed).")
@_credentials_file
@click.option("--json", "as_json", is_flag=True)
def node_credentials(code: str, reset: bool, credentials_file: str | None,
                     as_json: bool) -> None:
    """Issue CODE a new broker password (the hub stores none, so it cannot show the old)."""
    if not reset:
        raise CommandError("the hub keeps no broker passwords to show; pass --reset to issue "
                           "a new one")
    credentials = hub_admin().reset_credentials(code)
    if as_json and not credentials_file:
        emit_json(credentials.to_dict())
        return
    _show_credentials(code, credentials, credentials_file)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check that the database, the broker and the registry agree; say how to fix what not.

    Exit 0 when nothing is in error (warnings allowed), 1 otherwise.
    """
    from vdx.registry import doctor as doctor_mod

    findings = doctor_mod.diagnose(hub_admin())
    if as_json:
        emit_json([f.to_dict() for f in findings])
    else:
        colours = {"ok": "green", "warning": "yellow", "error": "red"}
        for f in findings:
            click.echo(f"{click.style(f'{f.status:<7}', fg=colours[f.status])}  {f.area}: "
                       f"{f.detail}")
            if f.fix:
                click.echo(f"         fix: {f.fix}")
    finish(doctor_mod.healthy(findings))
