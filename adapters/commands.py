"""The adapters' commands: ``vdx folder`` (the folder bridge), ``vdx gateway`` (the
VXP-compatible HTTP gateway and its connected systems) and ``vdx demo``.

Each imports its adapter inside itself: ``vdx --help`` does not load Starlette or pika.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from vdx.commands.common import CommandError, VdxGroup, agency_code, emit_json, hub_admin
from vdx.commands.hub import print_receipts
from vdx.errors import VdxError


@click.group("folder", cls=VdxGroup)
def folder_group() -> None:
    """Exchange packages through folders (outbox/, sent/, failed/, inbox/, receipts/)."""


@folder_group.command("run")
@click.option("--node", required=True, callback=agency_code, help="This node's agency code.")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="The folder to serve (created if missing).")
@click.option("--amqp-url", envvar="VDX_NODE_AMQP_URL",
              help="The node's broker URL with its password [env VDX_NODE_AMQP_URL].")
@click.option("--credentials-file", type=click.Path(exists=True, dir_okay=False),
              help="Or: the JSON file `vdx node register --credentials-file` wrote.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False),
              help="The node's signing key (PEM): signs unsigned packages and status 01.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False),
              help="The node's certificate (PEM, chain after it), with --key.")
@click.option("--trust", type=click.Path(exists=True, file_okay=False), envvar="VDX_TRUST_DIR",
              help="Trust anchors and CRLs that received packages must chain to "
                   "[env VDX_TRUST_DIR; required].")
@click.option("--hub-cert", type=click.Path(exists=True, dir_okay=False), envvar="VDX_HUB_CERT",
              help="The hub's receipt-signing certificate: receipts are verified with it "
                   "[default: TRUST/hub/hub.pem when present].")
@click.option("--once", is_flag=True, help="Process what is there, wait for the hub's "
              "answers (see --wait), then exit (for cron and tests).")
@click.option("--wait", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="With --once: seconds to wait for the hub's answers.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between scans of outbox/ when idle.")
def folder_run(node, directory, amqp_url, credentials_file, key, cert, trust, hub_cert,
               once, wait, poll) -> None:
    """Send the packages dropped in DIR/outbox and write what arrives to DIR/inbox.

    Sent packages move to sent/, refused ones to failed/ with NAME.error.json saying
    why; every hub receipt is written to receipts/. Killing the bridge at any moment
    loses and duplicates nothing. Stop it with Ctrl-C or SIGTERM.
    """
    import logging
    import signal

    from vdx_adapters.folder.bridge import BridgeConfig, FolderBridge

    from vdx import logs
    from vdx.xmldsig.pki import PkiError, load_certificate
    from vdx.xmldsig.sign import Signer
    from vdx.xmldsig.trust import TrustStore

    url = amqp_url or _folder_credentials(credentials_file)
    if not url:
        raise CommandError("give the node's broker URL: --amqp-url, $VDX_NODE_AMQP_URL or "
                           "--credentials-file", exit_code=2)
    if not trust:
        raise CommandError("give the trust anchors received packages are verified against: "
                           "--trust DIR or $VDX_TRUST_DIR", exit_code=2)
    if bool(key) != bool(cert):
        raise CommandError("--key and --cert go together", exit_code=2)
    if hub_cert is None and trust and (Path(trust) / "hub" / "hub.pem").is_file():
        hub_cert = str(Path(trust) / "hub" / "hub.pem")
    try:
        config = BridgeConfig(
            node=node, root=Path(directory), amqp_url=url,
            signer=Signer.from_files(key, cert) if key else None,
            trust=TrustStore.from_dir(trust),
            hub_certificate=load_certificate(hub_cert) if hub_cert else None,
            poll=poll, wait=wait)
    except (OSError, ValueError, PkiError) as exc:
        raise CommandError(f"cannot load the node's keys or trust material: {exc}") from exc
    if not logging.getLogger().handlers:  # unless whoever runs us set logging up already
        try:
            logs.configure(logging.WARNING)  # progress goes to stdout; problems as JSON
        except (OSError, ValueError):  # stderr is no file (an embedding program, a test)
            logging.basicConfig(level=logging.WARNING)
        # The client reports connection trouble itself, with the reason; pika's own
        # account of the same event is a page of stack bring-up errors.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    bridge = FolderBridge(config, report=lambda line: click.echo(line))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: bridge.stop())
    if not key:
        click.echo("no --key/--cert: unsigned packages fail and no status 01 is sent", err=True)
    try:
        summary = bridge.run(once=once)
    except OSError as exc:
        raise CommandError(f"{exc.filename or directory}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # configuration the client refuses (e.g. another node's URL)
        raise CommandError(str(exc)) from exc
    except VdxError:
        raise  # one line, from the group
    except Exception as exc:  # noqa: BLE001 - never a traceback: the state is crash-safe
        raise CommandError(f"the bridge stopped on an unexpected {type(exc).__name__}: {exc}; "
                           f"nothing is lost, run it again") from exc
    click.echo(summary.line())


def _folder_credentials(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())["amqp_url"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"{path} holds no broker credentials ({exc})", exit_code=2) from exc


@click.group("gateway", cls=VdxGroup)
def gateway_group() -> None:
    """The VXP-compatible HTTP gateway: connected systems and the server."""


_gateway_credentials = click.option(
    "--credentials-file", type=click.Path(dir_okay=False),
    help="The gateway's broker credentials (mode 0600); default $VDX_HOME/gateway-broker.json.")


def _gateway_admin():
    from vdx_adapters.gateway import systems

    return systems, hub_admin()


@gateway_group.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--replay-window", type=click.IntRange(10, 86_400), default=300,
              show_default=True, help="Seconds a strict system's timestamp may differ from "
                                      "the gateway's clock (under some reading of its zone); "
                                      "signatures are remembered until no reading accepts "
                                      "them.")
@click.option("--max-per-client", type=click.IntRange(1, 10_000), default=16,
              show_default=True, help="Requests served at once for one client address; "
                                      "more are answered HTTP 429 gateway.too_many_requests.")
@_gateway_credentials
def gateway_run(host: str, port: int, replay_window: int, max_per_client: int,
                credentials_file: str | None) -> None:
    """Serve the VXP operations until SIGTERM; agency software points its endpoint here."""
    from dataclasses import replace

    from vdx_adapters.gateway.run import config_from_env, serve

    config = config_from_env(credentials_file=Path(credentials_file) if credentials_file
                             else None, replay_window=replay_window)
    config = replace(config, max_per_client=max_per_client)
    with hub_admin().transaction():
        pass  # refuses an uninitialised database with one line, before serving
    click.echo(f"VXP gateway on http://{host}:{port}/ (replay window {replay_window} s)",
               err=True)
    serve(config, host, port)


@gateway_group.command("add-system")
@click.argument("system_id")
@click.option("--node", "nodes", required=True, multiple=True, callback=agency_code,
              help="An agency code the system acts for (repeat for several).")
@click.option("--sign-with-key", "sign_key", type=click.Path(exists=True, dir_okay=False),
              help="With one --node: sign that node's unsigned packages with this key "
                   "(PEM, mode 0600; the file stays where it is).")
@click.option("--cert", "sign_cert", type=click.Path(exists=True, dir_okay=False),
              help="The node's registered certificate, with --sign-with-key.")
@click.option("--policy", type=click.Choice(["strict", "compatible"]), default="strict",
              show_default=True,
              help="strict: each signed request once, its timestamp fresh; compatible: the VXP "
                   "SDK as deployed (one service object kept for the whole run).")
@click.option("--zone", type=click.Choice(["auto", "UTC", "Asia/Ho_Chi_Minh"],
                                          case_sensitive=False), default="auto",
              show_default=True, help="How its timestamps are read (auto: Vietnam time or UTC).")
@click.option("--allow-from", "allow_from", multiple=True, metavar="CIDR",
              help="Accept its requests only from this address or network (repeatable; "
                   "default any).")
@_gateway_credentials
@click.option("--json", "as_json", is_flag=True)
def gateway_add_system(system_id, nodes, sign_key, sign_cert, policy, zone, allow_from,
                       credentials_file, as_json) -> None:
    """Register SYSTEMID (the VXP SDK's systemId) and print its secret, once."""
    systems, admin = _gateway_admin()
    new = systems.add_system(admin, system_id, tuple(nodes),
                             credentials_file=Path(credentials_file) if credentials_file
                             else None, sign_key=Path(sign_key) if sign_key else None,
                             sign_cert=Path(sign_cert) if sign_cert else None,
                             policy=policy, zone=zone, allow_from=allow_from)
    if as_json:
        emit_json(new.system.to_dict() | {"secret": new.secret})
    else:
        click.echo(f"system   {new.system.system_id}  for {', '.join(new.system.nodes)}")
        click.echo(f"judged   {_judged(new.system)}")
        click.echo(f"secret   {new.secret}")
        click.echo("shown once: give it to the system's VXP SDK configuration (secret); "
                   "the hub cannot show it again", err=True)
    if new.credentials_written:
        click.echo(f"gateway broker account created; credentials in {new.credentials_written} "
                   f"(mode 0600) for `vdx gateway run`", err=True)
    if new.credentials_missing:
        click.echo(f"warning: no gateway broker credentials at {new.credentials_missing}: run "
                   f"`vdx gateway credentials --reset` where the gateway runs", err=True)
    _key_created(new.key_created)
    for warning in new.warnings:
        click.echo(f"warning: {warning}", err=True)


def _key_created(path: Path | None) -> None:
    if path is not None:
        click.echo(f"created {path} (mode 0600): the key that encrypts the systems' secrets; "
                   f"`vdx gateway run` needs it too", err=True)


def ensure_gateway_key(admin) -> None:
    """For ``vdx init``: the key of the gateway systems' secrets, created if missing; and
    the gateway's broker rights, brought up to date (the queues a release adds)."""
    from vdx_adapters.gateway import keyfile, systems

    key = keyfile.ensure_key(admin.config.pki_dir)
    click.echo(f"gateway key  {'created' if key.created else 'present'}: {key.source}")
    systems.refresh_account(admin)


@gateway_group.command("rotate-secret")
@click.argument("system_id")
@click.option("--json", "as_json", is_flag=True)
def gateway_rotate_secret(system_id: str, as_json: bool) -> None:
    """Issue a new secret for SYSTEMID and print it, once; the old one stops working."""
    systems, admin = _gateway_admin()
    new = systems.rotate_secret(admin, system_id)
    if as_json:
        emit_json(new.system.to_dict() | {"secret": new.secret})
    else:
        click.echo(f"system   {new.system.system_id}  for {', '.join(new.system.nodes)}")
        click.echo(f"secret   {new.secret}")
        click.echo("shown once: put it in the system's VXP SDK configuration; the old secret "
                   "no longer works", err=True)
    _key_created(new.key_created)


@gateway_group.command("systems")
@click.option("--json", "as_json", is_flag=True)
def gateway_systems(as_json: bool) -> None:
    """List connected systems and the nodes each acts for."""
    systems, admin = _gateway_admin()
    found = systems.list_systems(admin)
    if as_json:
        emit_json([s.to_dict() for s in found])
        return
    if not found:
        click.echo("no connected systems (`vdx gateway add-system SYSTEMID --node CODE`)")
    for s in found:
        click.echo(f"{s.system_id:<24}  {', '.join(s.nodes)}  (added {s.created_at:%Y-%m-%d} "
                   f"by {s.created_by})  {_judged(s)}")


@gateway_group.command("set-policy")
@click.argument("system_id")
@click.option("--policy", type=click.Choice(["strict", "compatible"]),
              help="strict: each signed request once, its timestamp fresh; compatible: the VXP "
                   "SDK as deployed (one service object kept for the whole run).")
@click.option("--zone", type=click.Choice(["auto", "UTC", "Asia/Ho_Chi_Minh"],
                                          case_sensitive=False),
              help="How its timestamps are read (auto: Vietnam time or UTC).")
@click.option("--allow-from", "allow_from", multiple=True, metavar="CIDR",
              help="Accept its requests only from these addresses or networks (repeatable; "
                   "replaces the list).")
@click.option("--any-address", is_flag=True, help="Accept its requests from any address.")
@click.option("--json", "as_json", is_flag=True)
def gateway_set_policy(system_id, policy, zone, allow_from, any_address, as_json) -> None:
    """Change how SYSTEMID's requests are judged; takes effect with its next request."""
    if allow_from and any_address:
        raise click.UsageError("give --allow-from or --any-address, not both")
    systems, admin = _gateway_admin()
    system = systems.set_policy(admin, system_id, policy=policy, zone=zone,
                                allow_from=() if any_address else (allow_from or None))
    if as_json:
        emit_json(system.to_dict())
    else:
        click.echo(f"{system.system_id}: {_judged(system)}")


def _judged(system) -> str:
    addresses = ", ".join(system.allow_from) or "any address"
    return f"policy {system.policy}, zone {system.zone}, from {addresses}"


@gateway_group.command("remove-system")
@click.argument("system_id")
def gateway_remove_system(system_id: str) -> None:
    """Remove SYSTEMID: its secret stops working at once."""
    systems, admin = _gateway_admin()
    removed = systems.remove_system(admin, system_id)
    click.echo(f"removed {removed.system_id} (it acted for {', '.join(removed.nodes)})")


@gateway_group.command("sign-for")
@click.argument("code", callback=agency_code)
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False),
              help="The node's private key (PEM, mode 0600).")
@click.option("--cert", "cert_file", type=click.Path(exists=True, dir_okay=False),
              help="The node's registered certificate (PEM).")
@click.option("--stop", is_flag=True, help="Stop signing for CODE.")
def gateway_sign_for(code: str, key_file: str | None, cert_file: str | None, stop: bool) -> None:
    """Let the gateway sign CODE's unsigned packages with the node's own key."""
    systems, admin = _gateway_admin()
    if stop:
        done = systems.stop_signing(admin, code)
        click.echo(f"the gateway {'no longer signs' if done else 'was not signing'} for {code}")
        return
    if not key_file or not cert_file:
        raise click.UsageError("give --key and --cert (or --stop)")
    config = systems.sign_for(admin, code, Path(key_file), Path(cert_file))
    click.echo(f"the gateway signs {code}'s unsigned packages with {config.key_path}")


@gateway_group.command("credentials")
@click.option("--reset", is_flag=True, required=True,
              help="Issue a new password for the gateway's broker account.")
@_gateway_credentials
def gateway_credentials(reset: bool, credentials_file: str | None) -> None:
    """Write new broker credentials for the gateway (restart `vdx gateway run` after)."""
    systems, admin = _gateway_admin()
    path = systems.reset_credentials(admin, Path(credentials_file) if credentials_file
                                     else None)
    click.echo(f"gateway broker credentials written to {path} (mode 0600); the old password "
               f"no longer works")


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the workspace, vhost and accounts for exploring.")
def demo(keep: bool) -> None:
    """A real exchange between three agencies through the SDK, the VXP gateway and the
    folder bridge, in a throw-away workspace (needs RabbitMQ with its management plugin)."""
    import time

    from vdx_adapters import demo as demo_mod

    started = time.monotonic()

    def say(step: str, detail: str) -> None:
        click.echo(f"{click.style(f'[{step}]', fg='cyan'):<20} {detail}")

    try:
        result = demo_mod.run(say, keep=keep)
    except demo_mod.DemoFailed as exc:
        raise CommandError(f"the demo stopped: {exc}") from exc
    print_receipts(result.receipts)
    click.echo(f"done in {time.monotonic() - started:.1f} s; "
               + (f"workspace kept at {result.workspace}" if keep
                  else "workspace, vhost and accounts removed"))
    if keep:
        click.echo("to look at it in the web console:")
        for line in demo_mod.console_commands(result):
            click.echo(f"  {line}")
