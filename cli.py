"""The ``vdx`` command: parses options, calls :mod:`vdx`, prints. Nothing else lives here.

Exit codes: 0 success, 1 a checked thing is invalid or an operation was refused (the
reason is one line on stderr), 2 usage errors (click's own convention).
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path

import click

import vdx
from vdx.core import envelope, model
from vdx.core.identifiers import identifier_problem, node_code_problem
from vdx.errors import VdxError

# ----------------------------------------------------------------------------- helpers


def _emit_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _VdxGroup(click.Group):
    """Turns any :class:`VdxError` escaping a command into one line and exit 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VdxError as exc:
            click.echo(f"error: {exc.code}: {exc.message}", err=True)
            ctx.exit(1)


def _agency_code(ctx: click.Context, param: click.Parameter, value):
    # Any code that can name a node: one outside the official forms (vxp.saas.03) is a
    # node the registry may hold, so it is a warning here; the command that uses it
    # says if the registry does not have it.
    values = value if isinstance(value, tuple) else (value,)
    for code in values:
        if code is None:
            continue
        if problem := node_code_problem(code):
            raise click.BadParameter(problem)
        if problem := identifier_problem(code):
            click.echo(f"warning: quirk.nonstandard_identifier: {problem}", err=True)
    return value


def _parse_date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    for fmt in ("%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            pass
    raise click.BadParameter(f"{value!r} is not a date (yyyy/MM/dd)")


def _write(out: str, data: bytes) -> None:
    path = Path(out)
    try:
        path.write_bytes(data)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror}")
    click.echo(f"wrote {path} ({len(data):,} bytes)", err=True)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", code=2)
        raise  # unreachable: _fail exits


# -------------------------------------------------------------------------------- root


@click.group(cls=_VdxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vdx.__version__, prog_name="vdx")
def main() -> None:
    """VDX hub: national edXML document exchange between government agencies."""


# ---------------------------------------------------------------------------- envelope


@main.group(cls=_VdxGroup)
def envelope_group() -> None:
    """Build, inspect and check edXML packages (offline)."""


main.add_command(envelope_group, "envelope")


@envelope_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON verdict per file.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=vdx.ParseLimits().max_bytes,
              show_default=True, help="Refuse packages larger than this.")
@click.option("--trust", "trust_dir", type=click.Path(exists=True, file_okay=False),
              help="Then verify each signature against the trust anchors and CRLs in DIR.")
def envelope_check(files: tuple[str, ...], as_json: bool, max_bytes: int,
                   trust_dir: str | None) -> None:
    """Check each FILE against the edXML schema, its consistency, its attachments and
    the identifier rules (and, with --trust, its signature), reporting every problem
    found, and name the tolerated quirks of live traffic as warnings.

    Exit 0 when every file is valid (warnings or not), 1 when any is not.
    """
    limits = vdx.ParseLimits(max_bytes=max_bytes)
    verifier = _verifier(trust_dir) if trust_dir else None
    results = [(name, _with_signature(data, vdx.check(data, limits), verifier))
               for name, data in ((name, _read(name)) for name in files)]
    if as_json:
        _emit_json([_verdict_json(name, v) for name, v in results])
    else:
        for name, v in results:
            _print_verdict(name, v)
    sys.exit(0 if all(v.valid for _, v in results) else 1)


def _verdict_json(name: str, verdict: envelope.Verdict) -> dict[str, object]:
    package = verdict.package
    return {
        "file": name,
        "valid": verdict.valid,
        "kind": package.kind if package else None,
        "problems": [p.to_dict() for p in verdict.problems],
        "warnings": [p.to_dict() for p in verdict.warnings],
    }


def _print_verdict(name: str, verdict: envelope.Verdict) -> None:
    if verdict.valid:
        package = verdict.package
        what = (f"document {package.document_id}" if isinstance(package, model.DocumentPackage)
                else f"status {package.status_code} for {package.response_for.document_id}")
        click.echo(f"{click.style('valid', fg='green')}    {name}: {what}")
    else:
        click.echo(f"{click.style('invalid', fg='red')}  {name}")
    for p in verdict.problems:
        click.echo(f"  {p.code}  {_where(p)}\n    {p.message}")
    for p in verdict.warnings:
        click.echo(f"  {click.style('warning', fg='yellow')} {p.code}  {_where(p)}\n"
                   f"    {p.message}")


def _where(p: vdx.Problem) -> str:
    return " ".join(x for x in (f"line {p.line}" if p.line else "", p.path or "") if x)


@envelope_group.command("new")
@click.option("--from", "sender", required=True, callback=_agency_code,
              help="Sender agency code, e.g. 000.00.00.G22.")
@click.option("--to", "recipients", required=True, multiple=True, callback=_agency_code,
              help="Recipient agency code (repeat for several).")
@click.option("--subject", required=True, help="Trích yếu: what the document is about.")
@click.option("--code", "code", required=True, metavar="NUMBER/NOTATION",
              help="Số, ký hiệu, e.g. 7816/VPCP-TTĐT.")
@click.option("--type-name", required=True, help="e.g. Công văn, Quyết định.")
@click.option("--attach", "attachments", multiple=True,
              type=click.Path(exists=True, dir_okay=False), help="File to attach (repeatable).")
@click.option("--response-for", metavar="DOCID", help="DocumentId this document answers.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write.")
@click.option("--document-id", help="Default: SENDER,yyyy/MM/dd,NUMBER/NOTATION.")
@click.option("--date", "promulgation_date", callback=_parse_date,
              help="Promulgation date (default today).")
@click.option("--place", default="Hà Nội", show_default=True)
@click.option("--type", "doc_type", type=int, default=1, show_default=True)
@click.option("--content", help="Full text or summary of the document.")
@click.option("--signer", default="Văn thư", show_default=True, help="Signer's full name.")
@click.option("--position", help="Signer's position.")
@click.option("--from-name", help="Sender organisation name.")
@click.option("--due-date", callback=_parse_date)
def envelope_new(sender, recipients, subject, code, type_name, attachments, response_for, out,
                 document_id, promulgation_date, place, doc_type, content, signer, position,
                 from_name, due_date) -> None:
    """Build a schema-valid document package (unsigned)."""
    number, _, notation = code.partition("/")
    if not number:
        raise click.BadParameter("the number is empty", param_hint="--code")
    when = promulgation_date or date.today()
    package = model.DocumentPackage(
        sender=model.Organization(sender, organ_name=from_name),
        recipients=tuple(model.Organization(r) for r in recipients),
        document_id=document_id or f"{sender},{when:%Y/%m/%d},{code}",
        code=model.Code(number, notation),
        promulgation=model.PromulgationInfo(place, when),
        document_type=model.DocumentType(doc_type, type_name),
        subject=subject,
        signer=model.SignerInfo(signer, position=position),
        content=content,
        due_date=due_date,
        response_for=_response_for(response_for),
        trace=(model.TraceHeader(sender, datetime.now(model.VIETNAM_TZ).replace(microsecond=0)),),
        attachments=tuple(model.Attachment.from_file(a) for a in attachments),
    )
    _write(out, vdx.build(package))


def _response_for(document_id: str | None) -> tuple[model.ResponseFor, ...]:
    if document_id is None:
        return ()
    return (_reference_to(document_id),)


def _reference_to(document_id: str, organ_id: str | None = None) -> model.ResponseFor:
    """ResponseFor of a DocumentId in the form ``OrganId,yyyy/MM/dd,Number/Notation``."""
    parts = document_id.split(",")
    if len(parts) == 3:
        promulgated = _parse_date(None, None, parts[1])  # type: ignore[arg-type]
        return model.ResponseFor(organ_id or parts[0], parts[2], document_id, promulgated)
    if organ_id is None:
        raise click.BadParameter(
            f"{document_id!r} does not name its sender; give --to CODE", param_hint="--for")
    return model.ResponseFor(organ_id, "", document_id)


@envelope_group.command("status")
@click.option("--from", "sender", required=True, callback=_agency_code,
              help="Agency sending the status.")
@click.option("--for", "document_id", required=True, metavar="DOCID",
              help="DocumentId the status is about.")
@click.option("--code", "status_code", required=True, type=click.Choice(model.STATUS_CODES),
              help="01 arrived … 06 finished, 13 recall, 15/16 agree/refuse.")
@click.option("--description", help="Default: the meaning of the code.")
@click.option("--to", "original_sender", callback=_agency_code,
              help="Sender of the original document (default: from DOCID).")
@click.option("--department", default="Văn thư", show_default=True)
@click.option("--staff", default="Văn thư", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def envelope_status(sender, document_id, status_code, description, original_sender, department,
                    staff, out) -> None:
    """Build a status package about a document."""
    package = model.StatusPackage(
        sender=model.Organization(sender),
        response_for=_reference_to(document_id, original_sender),
        staff=model.StaffInfo(department, staff),
        status_code=status_code,
        description=description or model.STATUS_MEANINGS[status_code][0],
        timestamp=datetime.now(model.VIETNAM_TZ).replace(microsecond=0),
    )
    _write(out, vdx.build(package))


@envelope_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def envelope_show(file: str, as_json: bool) -> None:
    """Show the header fields and attachments a clerk would want to see."""
    package = vdx.parse(_read(file))
    summary = _summary(package)
    if as_json:
        _emit_json(summary)
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if key == "attachments":
            click.echo(f"{key:<{width}}  {len(value)}")
            for a in value:
                click.echo(f"  - {a['name']}  ({a['content_type']}, {a['size']:,} bytes)")
        elif isinstance(value, list):
            click.echo(f"{key:<{width}}  {', '.join(value) if value else '-'}")
        else:
            click.echo(f"{key:<{width}}  {value if value is not None else '-'}")


def _summary(package: model.Package) -> dict[str, object]:
    sender = package.sender
    base: dict[str, object] = {
        "kind": package.kind,
        "from": f"{sender.organ_id} {sender.organ_name or ''}".strip(),
    }
    if isinstance(package, model.StatusPackage):
        meaning = model.STATUS_MEANINGS[package.status_code]
        return base | {
            "status": f"{package.status_code} {meaning[0]} ({meaning[1]})",
            "about": package.response_for.document_id,
            "description": package.description,
            "staff": f"{package.staff.staff}, {package.staff.department}",
            "timestamp": package.timestamp.strftime("%Y/%m/%d %H:%M:%S"),
        }
    business = package.business
    return base | {
        "to": [f"{r.organ_id} {r.organ_name or ''}".strip() for r in package.recipients],
        "document_id": package.document_id,
        "code": str(package.code),
        "type": package.document_type.type_name,
        "subject": package.subject,
        "promulgated": f"{package.promulgation.place}, {package.promulgation.date:%Y/%m/%d}",
        "signer": package.signer.full_name,
        "due": package.due_date.strftime("%Y/%m/%d") if package.due_date else None,
        "business": None if business is None else business.doc_type,
        "response_for": [r.document_id for r in package.response_for],
        "attachments": [
            {"name": a.name, "content_type": a.content_type, "size": len(a.data)}
            for a in package.attachments
        ],
    }


# -------------------------------------------------------------------------------- demo


@main.command("demo")
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
        _fail(f"the demo stopped: {exc}")
        return
    _print_receipts(result.receipts)
    click.echo(f"done in {time.monotonic() - started:.1f} s; "
               + (f"workspace kept at {result.workspace}" if keep
                  else "workspace, vhost and accounts removed"))


# ------------------------------------------------------------ signatures and PKI (issue 3)
# vdx.xmldsig's modules are imported inside the commands, like _admin(): the other commands
# do not pay for signxml.


def _verifier(trust_dir: str, crl_files: tuple[str, ...] = ()):
    from vdx.xmldsig.verify import TrustStore, TrustStoreError, Verifier, load_crl

    try:
        return Verifier(TrustStore.from_dir(trust_dir, [load_crl(f) for f in crl_files]))
    except (TrustStoreError, OSError) as exc:
        _fail(f"cannot use the trust material in {trust_dir}: {exc}", code=2)


def _with_signature(data: bytes, verdict: envelope.Verdict, verifier) -> envelope.Verdict:
    """``verdict``, or the signature's problem when the schema passed but it does not."""
    from vdx.xmldsig.verify import verify_offline

    if verifier is None or not verdict.valid:
        return verdict
    try:
        verify_offline(data, verifier)
    except VdxError as exc:
        return envelope.Verdict((exc.problem,), None, verdict.warnings)
    return verdict


@envelope_group.command("sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The signer's private key (PEM, unencrypted).")
@click.option("--cert", "cert_file", required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="The signer's certificate (PEM; further certificates are its chain).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write.")
def envelope_sign(file: str, key_file: str, cert_file: str, out: str) -> None:
    """Sign FILE, a valid unsigned package, with an enveloped XML-DSig signature."""
    from vdx.xmldsig.pki import PkiError
    from vdx.xmldsig.sign import Signer

    data = _read(file)
    verdict = vdx.check(data)
    if not verdict.valid:
        _print_verdict(file, verdict)
        sys.exit(1)
    try:
        signer = Signer.from_files(key_file, cert_file)
    except (ValueError, TypeError, OSError, PkiError) as exc:
        _fail(f"cannot sign with {key_file} and {cert_file}: {exc}", code=2)
    _write(out, signer.sign(data))


@envelope_group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--trust", "trust_dir", required=True,
              type=click.Path(exists=True, file_okay=False),
              help="Trust anchors and CRLs (a folder like certs/, or a `vdx ca` directory).")
@click.option("--cert", "cert_file", type=click.Path(exists=True, dir_okay=False),
              help="The sender's registered certificate(s), PEM. Without it the signer "
                   "certificate must carry the sender's agency code.")
@click.option("--crl", "crl_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A CRL to use besides those in --trust (repeatable).")
@click.option("--json", "as_json", is_flag=True)
def envelope_verify(file: str, trust_dir: str, cert_file: str | None,
                    crl_files: tuple[str, ...], as_json: bool) -> None:
    """Verify FILE's signature: exit 0 and the signer when valid, 1 and the reason if not."""
    from cryptography import x509

    from vdx.xmldsig.verify import verify_offline

    verifier = _verifier(trust_dir, crl_files)
    try:
        certs = x509.load_pem_x509_certificates(Path(cert_file).read_bytes()) if cert_file \
            else []
    except (ValueError, OSError) as exc:
        _fail(f"cannot read --cert {cert_file}: {exc}", code=2)
    try:
        summary = verify_offline(_read(file), verifier, certs).summary()
    except VdxError as exc:
        if as_json:
            _emit_json({"file": file, "valid": False, "problems": [exc.problem.to_dict()]})
        else:
            click.echo(f"{click.style('invalid', fg='red')}  {file}\n  {exc.code}\n"
                       f"    {exc.message}")
        sys.exit(1)
    if as_json:
        _emit_json({"file": file, "valid": True, **summary, "problems": []})
        return
    click.echo(f"{click.style('valid', fg='green')}    {file}: signed for {summary['sender']}")
    for key in ("signer", "serial", "not_after", "signature_algorithm", "digest_algorithm"):
        click.echo(f"  {key:<20} {summary[key]}")
    if summary["legacy_sha1"]:
        click.echo("  warning: SHA-1 accepted for a legacy sender", err=True)


@main.group(cls=_VdxGroup)
def ca_group() -> None:
    """Run a development PKI: a TEST root, agency and hub certificates, a CRL."""


main.add_command(ca_group, "ca")

_ca_dir = click.option("--dir", "ca_dir", required=True, type=click.Path(file_okay=False),
                       help="The CA directory (layout in certs/README.md).")


def _pki(operation, *args, **kwargs):
    """Run a vdx.xmldsig.pki operation; its refusals become one line and exit 1."""
    from vdx.xmldsig.pki import PkiError

    try:
        return operation(*args, **kwargs)
    except (PkiError, OSError) as exc:
        _fail(str(exc))


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


# ------------------------------------------------------------------- registry (issue 4)


def _admin(trust: str | None = None):
    # Imported here, not at the top: the envelope commands must not pay for SQLAlchemy,
    # Alembic and the verifier, and the import block stays free of merge conflicts.
    from dataclasses import replace

    from vdx.registry.admin import Admin, HubConfig

    config = HubConfig.from_env()
    return Admin(replace(config, trust_dir=Path(trust)) if trust else config)


def _show_credentials(code: str, credentials, credentials_file: str | None) -> None:
    from vdx.broker.provision import write_credentials

    if credentials_file:
        try:
            path = write_credentials(credentials_file, credentials)
        except OSError as exc:
            _fail(f"cannot write {credentials_file}: {exc.strerror}; the password was not "
                  f"shown, run `vdx node credentials {code} --reset`")
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


@main.command("init")
@click.option("--dev-ca/--no-dev-ca", default=True, show_default=True,
              help="Without a CA or hub certificate, create a TEST development CA and "
                   "issue the hub certificate from it.")
def init(dev_ca: bool) -> None:
    """Create or migrate the database, the hub certificate and the broker topology.

    Safe to run again: it also repairs every node's inbox, binding and rights (it never
    creates or resets a password).
    """
    from vdx.xmldsig.pki import PkiError

    try:
        report = _admin().init(dev_ca=dev_ca)
    except PkiError as exc:
        _fail(str(exc))
    except OSError as exc:  # the PKI directory is not writable, say
        _fail(f"{exc.filename or 'the hub certificate'}: {exc.strerror}")
    click.echo(f"database     schema {report.revision}")
    if report.created_test_ca:
        click.echo(f"warning: created a TEST development CA in {report.hub_cert.parent.parent}; "
                   f"never use it in production", err=True)
    state = "issued" if report.issued_hub_cert else "present"
    click.echo(f"hub cert     {state}: {report.hub_cert}")
    click.echo(f"broker       topology declared{' (new vhost)' if report.created_vhost else ''}; "
               f"{report.nodes_checked} node(s) checked")
    for code in report.missing_accounts:
        click.echo(f"warning: {code} has no broker account: run `vdx node credentials {code} "
                   f"--reset`", err=True)
    for code in report.shared_name_accounts:
        click.echo(f"warning: {code} logs in under a name not bound to this hub's vhost, "
                   f"which another hub on this broker could share: run `vdx node credentials "
                   f"{code} --reset` to move it to its own (a new password)", err=True)


@main.group(cls=_VdxGroup)
def node_group() -> None:
    """Register agency nodes; manage their status, certificates and broker accounts."""


main.add_command(node_group, "node")


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
    node, credentials = _admin(trust).register(code, name, _read(cert_file),
                                               parent_code=parent_code, email=email,
                                               allow_nonstandard_code=nonstandard)
    if as_json and not credentials_file:
        _emit_json(node.to_dict() | {"credentials": credentials.to_dict()})
        return
    click.echo(f"registered {node.code} ({node.name})")
    _show_credentials(code, credentials, credentials_file)


@node_group.command("list")
@click.option("--status", type=click.Choice(("active", "suspended", "revoked")))
@click.option("--json", "as_json", is_flag=True)
def node_list(status: str | None, as_json: bool) -> None:
    """List registered nodes."""
    nodes = _admin().list_nodes(status)
    if as_json:
        _emit_json([n.to_dict() for n in nodes])
        return
    if not nodes:
        click.echo("no nodes" + (f" are {status}" if status else " registered"))
        return
    width = max(len(n.code) for n in nodes)
    for n in nodes:
        click.echo(f"{n.code:<{width}}  {n.status:<9}  {n.name}"
                   + (f"  (parent {n.parent_code})" if n.parent_code else ""))


@node_group.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
def node_show(code: str, as_json: bool) -> None:
    """Show a node, its certificate history and its admin log."""
    view = _admin().show(code)
    if as_json:
        _emit_json(view.to_dict())
        return
    node = view.node
    for key, value in (("code", node.code), ("name", node.name), ("status", node.status),
                       ("parent", node.parent_code), ("email", node.email),
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
        transition = getattr(_admin(), name)(code)
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
    cert = _admin(trust).rotate_cert(code, _read(cert_file), overlap_days)
    click.echo(f"{code}: certificate serial {cert.serial} is current (valid until "
               f"{cert.not_after:%Y-%m-%d})"
               + (f"; the previous one verifies until {overlap_days} day(s) from now"
                  if overlap_days else "; the previous one is retired"))


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
        _fail("the hub keeps no broker passwords to show; pass --reset to issue a new one")
    credentials = _admin().reset_credentials(code)
    if as_json and not credentials_file:
        _emit_json(credentials.to_dict())
        return
    _show_credentials(code, credentials, credentials_file)


@main.command("doctor")
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check that the database, the broker and the registry agree; say how to fix what not.

    Exit 0 when nothing is in error (warnings allowed), 1 otherwise.
    """
    from vdx.registry import doctor as doctor_mod

    findings = doctor_mod.diagnose(_admin())
    if as_json:
        _emit_json([f.to_dict() for f in findings])
    else:
        colours = {"ok": "green", "warning": "yellow", "error": "red"}
        for f in findings:
            click.echo(f"{click.style(f'{f.status:<7}', fg=colours[f.status])}  {f.area}: "
                       f"{f.detail}")
            if f.fix:
                click.echo(f"         fix: {f.fix}")
    sys.exit(0 if doctor_mod.healthy(findings) else 1)

# ----------------------------------------------------------------- hub and audit (issue 5)


@main.group(cls=_VdxGroup)
def hub_group() -> None:
    """Run the hub: validate, route and receipt every submitted package."""


main.add_command(hub_group, "hub")


@hub_group.command("run")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (each one CPU core at most).")
@click.option("--prefetch", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Unacknowledged messages a worker may hold.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics on 127.0.0.1:PORT (+1 per further worker).")
@click.option("--hub-id", envvar="VDX_HUB_ID", default="vdx-hub", show_default=True,
              help="This hub's name in receipts and trace headers.")
def hub_run(workers: int, prefetch: int, metrics_port: int | None, hub_id: str) -> None:
    """Serve until SIGTERM: finishes the work in hand, then exits."""
    from vdx.hub.supervisor import load_services, run_hub
    from vdx.xmldsig.trust import TrustStoreError

    admin = _admin()
    with admin.transaction():
        pass  # refuses an uninitialised database with one line, before any worker starts
    try:  # the same configuration every worker loads: refuse a bad one once, clearly
        load_services(admin.config)
    except (OSError, ValueError, TrustStoreError) as exc:
        _fail(f"cannot start the hub: {exc}")
    sys.exit(run_hub(admin.config, workers=workers, prefetch=prefetch, hub_id=hub_id,
                     metrics_port=metrics_port))


def _parse_time(ctx, param, value: str | None):
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, e.g. 2026-11-22T09:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=model.VIETNAM_TZ)


@main.group(cls=_VdxGroup)
def receipts_group() -> None:
    """Query the receipts the hub issued."""


main.add_command(receipts_group, "receipts")


@receipts_group.command("query")
@click.option("--document", "document_id", help="DocumentId.")
@click.option("--sender", callback=_agency_code, help="Agency the receipts were issued to.")
@click.option("--recipient", callback=_agency_code, help="Recipient of the document.")
@click.option("--status", "kind", type=click.Choice(
    ["accepted", "rejected", "delivered", "duplicate", "status"]), help="Receipt kind.")
@click.option("--since", callback=_parse_time, help="ISO time (Vietnam time if no zone).")
@click.option("--until", callback=_parse_time, help="ISO time, exclusive.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
def receipts_query(document_id, sender, recipient, kind, since, until, as_json, as_csv) -> None:
    """List receipts matching every filter given, oldest first."""
    from vdx.hub import audit

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    with _admin().transaction() as session:
        found = audit.query_receipts(session, document_id=document_id, sender=sender,
                                     recipient=recipient, kind=kind, since=since, until=until)
    rows = [r.to_dict() for r in found]
    if as_json:
        _emit_json(rows)
    elif as_csv:
        import csv

        fields = list(rows[0]) if rows else list(audit.ReceiptView.__dataclass_fields__)
        writer = csv.DictWriter(sys.stdout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_receipts(found)


def _print_receipts(found) -> None:
    if not found:
        click.echo("no receipts match")
        return
    for r in found:
        extra = r.error_code or (f"status {r.status_code}" if r.status_code else "")
        click.echo(f"{r.created_at:%Y-%m-%d %H:%M:%S}  {r.kind:<9}  to {r.addressee:<14}  "
                   f"{r.document_id or '-'}  {r.recipient or ''}  {extra}".rstrip())


@main.group(cls=_VdxGroup)
def document_group() -> None:
    """Follow one document through the hub."""


main.add_command(document_group, "document")


@document_group.command("show")
@click.argument("document_id")
@click.option("--json", "as_json", is_flag=True)
def document_show(document_id: str, as_json: bool) -> None:
    """The whole timeline of DOCUMENT_ID across all its recipients (in arrival order),
    then each recipient's current status (its furthest by meaning)."""
    from vdx.hub import audit

    with _admin().transaction() as session:
        events = audit.document_timeline(session, document_id)
        current = audit.current_statuses(session, document_id)
    if not events:
        _fail(f"the hub has no record of {document_id}")
    if as_json:
        _emit_json({"document_id": document_id, "events": [e.to_dict() for e in events],
                    "current_status": [c.to_dict() for c in current]})
        return
    for e in events:
        who = f"{e.actor} → {e.recipient}" if e.recipient else e.actor
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.event:<10}  {who}"
                   + (f"  ({e.detail})" if e.detail else ""))
    for c in current:
        click.echo(f"{'current':<19}  {'status ' + c.status_code:<10}  {c.recipient}  "
                   f"({model.STATUS_MEANINGS[c.status_code][0]}, since "
                   f"{c.at:%Y-%m-%d %H:%M:%S})")


@main.group(cls=_VdxGroup)
def audit_group() -> None:
    """Check the ledger; export proof for third parties."""


main.add_command(audit_group, "audit")


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(as_json: bool) -> None:
    """Check the whole ledger chain and every hub signature. Exit 1 on any problem."""
    from vdx.core.ledger import make_hash_verifier
    from vdx.hub import audit

    admin = _admin()
    try:
        certificate = admin.hub_certificate()
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the hub certificate: {exc}")
    if certificate is None:
        _fail("no hub certificate; run `vdx init`")
    with admin.transaction() as session:
        report = audit.verify_ledger(session, make_hash_verifier(certificate))
    if as_json:
        _emit_json({"intact": report.intact, "entries": report.entries,
                    "head": report.head_seq, "problems": [p.to_dict() for p in report.problems]})
    elif report.intact:
        click.echo(f"ledger intact: {report.entries} entries, every hash and hub signature "
                   f"checks")
    else:
        click.echo(f"ledger NOT intact: {len(report.problems)} problem(s) in "
                   f"{report.entries} entries")
        for p in report.problems:
            click.echo(f"  entry {p.seq}: {p.code}: {p.message}")
    sys.exit(0 if report.intact else 1)


@audit_group.command("export")
@click.argument("document_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.zip")
def audit_export(document_id: str, out: str) -> None:
    """Write a proof bundle for DOCUMENT_ID that anyone can check offline with xmlsec1."""
    from vdx.hub import audit

    admin = _admin()
    from vdx.xmldsig.trust import TrustStoreError

    with admin.transaction() as session:
        try:
            certificates = audit.bundle_certificates(session, admin.config, document_id)
        except (OSError, ValueError, TrustStoreError) as exc:
            _fail(f"cannot gather the certificates: {exc}")
        data = audit.export_bundle(session, document_id, certificates)
        if not certificates or data is None:
            _fail(f"the hub has no record of {document_id}")
    _write(out, data)


# --- folder bridge (issue 6)


@main.group(cls=_VdxGroup)
def folder_group() -> None:
    """Exchange packages through folders (outbox/, sent/, failed/, inbox/, receipts/)."""


main.add_command(folder_group, "folder")


@folder_group.command("run")
@click.option("--node", required=True, callback=_agency_code, help="This node's agency code.")
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
        _fail("give the node's broker URL: --amqp-url, $VDX_NODE_AMQP_URL or "
              "--credentials-file", code=2)
    if not trust:
        _fail("give the trust anchors received packages are verified against: --trust DIR "
              "or $VDX_TRUST_DIR", code=2)
    if bool(key) != bool(cert):
        _fail("--key and --cert go together", code=2)
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
        _fail(f"cannot load the node's keys or trust material: {exc}")
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
        _fail(f"{exc.filename or directory}: {exc.strerror or exc}")
    except ValueError as exc:  # configuration the client refuses (e.g. another node's URL)
        _fail(str(exc))
    except VdxError:
        raise  # one line, from the group
    except Exception as exc:  # noqa: BLE001 - never a traceback: the state is crash-safe
        _fail(f"the bridge stopped on an unexpected {type(exc).__name__}: {exc}; nothing "
              f"is lost, run it again")
    click.echo(summary.line())


def _folder_credentials(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())["amqp_url"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _fail(f"{path} holds no broker credentials ({exc})", code=2)
        raise  # unreachable: _fail exits


# --- gateway (issue 6)


@main.group(cls=_VdxGroup)
def gateway_group() -> None:
    """The VXP-compatible HTTP gateway: connected systems and the server."""


main.add_command(gateway_group, "gateway")

_gateway_credentials = click.option(
    "--credentials-file", type=click.Path(dir_okay=False),
    help="The gateway's broker credentials (mode 0600); default $VDX_HOME/gateway-broker.json.")


def _gateway_admin():
    from vdx_adapters.gateway import systems

    return systems, _admin()


@gateway_group.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--replay-window", type=click.IntRange(10, 86_400), default=300,
              show_default=True, help="Seconds a strict system's timestamp may differ from "
                                      "the gateway's clock (under some reading of its zone); "
                                      "signatures are remembered until no reading accepts "
                                      "them.")
@_gateway_credentials
def gateway_run(host: str, port: int, replay_window: int, credentials_file: str | None) -> None:
    """Serve the VXP operations until SIGTERM; agency software points its endpoint here."""
    from vdx_adapters.gateway.run import config_from_env, serve

    config = config_from_env(credentials_file=Path(credentials_file) if credentials_file
                             else None, replay_window=replay_window)
    with _admin().transaction():
        pass  # refuses an uninitialised database with one line, before serving
    click.echo(f"VXP gateway on http://{host}:{port}/ (replay window {replay_window} s)",
               err=True)
    serve(config, host, port)


@gateway_group.command("add-system")
@click.argument("system_id")
@click.option("--node", "nodes", required=True, multiple=True, callback=_agency_code,
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
        _emit_json(new.system.to_dict() | {"secret": new.secret})
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


@gateway_group.command("systems")
@click.option("--json", "as_json", is_flag=True)
def gateway_systems(as_json: bool) -> None:
    """List connected systems and the nodes each acts for."""
    systems, admin = _gateway_admin()
    found = systems.list_systems(admin)
    if as_json:
        _emit_json([s.to_dict() for s in found])
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
        _emit_json(system.to_dict())
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
@click.argument("code", callback=_agency_code)
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


if __name__ == "__main__":
    main()
