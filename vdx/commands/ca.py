"""``vdx ca``: a development PKI (a TEST root, agency and hub certificates, a CRL).

:mod:`vdx.xmldsig.pki` is imported inside the commands: the others do not pay for it.
"""

from __future__ import annotations

import click

from vdx.commands.common import CommandError, VdxGroup


@click.group("ca", cls=VdxGroup)
def ca_group() -> None:
    """Run a development PKI: a TEST root, agency and hub certificates, a CRL."""


_ca_dir = click.option("--dir", "ca_dir", required=True, type=click.Path(file_okay=False),
                       help="The CA directory (layout in certs/README.md).")


def _pki(operation, *args, **kwargs):
    """Run a vdx.xmldsig.pki operation; its refusals become one line and exit 1."""
    from vdx.xmldsig.pki import PkiError

    try:
        return operation(*args, **kwargs)
    except (PkiError, OSError) as exc:
        raise CommandError(str(exc)) from exc


def _print_issued(what: str, issued) -> None:
    from vdx.xmldsig.pki import agency_code_of

    cert = issued.certificate
    click.echo(f"{what:<12} {cert.subject.rfc4514_string()}")
    code = agency_code_of(cert)
    if code:
        click.echo(f"{'agency code':<12} {code}")
    click.echo(f"{'serial':<12} {issued.serial}")
    click.echo(f"{'valid until':<12} {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    click.echo(f"{'certificate':<12} {issued.cert_path}")
    click.echo(f"{'key':<12} {issued.key_path} (mode 0600)")


@ca_group.command("init")
@_ca_dir
@click.option("--days", type=click.IntRange(min=1), default=3650, show_default=True)
@click.option("--ec", is_flag=True, help="ECDSA P-384 instead of RSA-3072.")
def ca_init(ca_dir: str, days: int, ec: bool) -> None:
    """Create a development root CA, "VDX TEST National Root CA", and an empty CRL."""
    from vdx.xmldsig import pki

    _print_issued("root CA", _pki(pki.init_ca, ca_dir, days=days, ec_key=ec))


@ca_group.command("issue")
@click.argument("code")
@click.option("--name", required=True, help="The agency's name, e.g. 'Văn phòng Chính phủ'.")
@_ca_dir
@click.option("--days", type=click.IntRange(min=1), default=730, show_default=True)
@click.option("--ec", is_flag=True, help="ECDSA P-256 instead of RSA-2048.")
@click.option("--replace", is_flag=True, help="Overwrite the agency's existing key.")
def ca_issue(code: str, name: str, ca_dir: str, days: int, ec: bool, replace: bool) -> None:
    """Issue agency CODE's signing certificate and key."""
    from vdx.xmldsig import pki

    _print_issued("agency", _pki(pki.issue_agency, ca_dir, code, name, days=days, ec_key=ec,
                                 replace=replace))


@ca_group.command("issue-hub")
@_ca_dir
@click.option("--days", type=click.IntRange(min=1), default=730, show_default=True)
@click.option("--ec", is_flag=True, help="ECDSA P-256 instead of RSA-2048.")
@click.option("--replace", is_flag=True, help="Overwrite the hub's existing key.")
def ca_issue_hub(ca_dir: str, days: int, ec: bool, replace: bool) -> None:
    """Issue the hub's receipt-signing certificate and key."""
    from vdx.xmldsig import pki

    _print_issued("hub", _pki(pki.issue_hub, ca_dir, days=days, ec_key=ec, replace=replace))


@ca_group.command("revoke")
@click.argument("serial")
@_ca_dir
def ca_revoke(serial: str, ca_dir: str) -> None:
    """Revoke SERIAL (0x-hex as `vdx ca issue` prints it, or decimal) and write a new CRL."""
    from vdx.xmldsig import pki

    number = _pki(pki.parse_serial, serial)
    crl = _pki(pki.revoke, ca_dir, number)
    click.echo(f"revoked {pki.serial_hex(number)}; CRL written to {crl}")


@ca_group.command("crl")
@_ca_dir
@click.option("--days", type=click.IntRange(min=1), default=7, show_default=True,
              help="Until when verifiers may use this CRL.")
def ca_crl(ca_dir: str, days: int) -> None:
    """Sign and write a fresh CRL listing every revoked serial."""
    from vdx.xmldsig import pki

    click.echo(f"CRL written to {_pki(pki.write_crl, ca_dir, days=days)}")

