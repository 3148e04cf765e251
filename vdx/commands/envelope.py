"""``vdx envelope``: build, inspect, check, sign and verify edXML packages, offline.

The signature commands import :mod:`vdx.xmldsig` inside themselves, so the others do not
pay for signxml.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

import vdx
from vdx.commands.common import (
    CommandError,
    VdxGroup,
    agency_code,
    emit_json,
    finish,
    parse_date,
    read_file,
    write_file,
)
from vdx.core import envelope, model
from vdx.errors import VdxError


@click.group("envelope", cls=VdxGroup)
def envelope_group() -> None:
    """Build, inspect and check edXML packages (offline)."""


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
               for name, data in ((name, read_file(name)) for name in files)]
    if as_json:
        emit_json([_verdict_json(name, v) for name, v in results])
    else:
        for name, v in results:
            _print_verdict(name, v)
    finish(all(v.valid for _, v in results))


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
@click.option("--from", "sender", required=True, callback=agency_code,
              help="Sender agency code, e.g. 000.00.00.G22.")
@click.option("--to", "recipients", required=True, multiple=True, callback=agency_code,
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
@click.option("--date", "promulgation_date", callback=parse_date,
              help="Promulgation date (default today).")
@click.option("--place", default="Hà Nội", show_default=True)
@click.option("--type", "doc_type", type=int, default=1, show_default=True)
@click.option("--content", help="Full text or summary of the document.")
@click.option("--signer", default="Văn thư", show_default=True, help="Signer's full name.")
@click.option("--position", help="Signer's position.")
@click.option("--from-name", help="Sender organisation name.")
@click.option("--due-date", callback=parse_date)
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
    write_file(out, vdx.build(package))


def _response_for(document_id: str | None) -> tuple[model.ResponseFor, ...]:
    if document_id is None:
        return ()
    return (_reference_to(document_id),)


def _reference_to(document_id: str, organ_id: str | None = None) -> model.ResponseFor:
    """ResponseFor of a DocumentId in the form ``OrganId,yyyy/MM/dd,Number/Notation``."""
    parts = document_id.split(",")
    if len(parts) == 3:
        promulgated = parse_date(None, None, parts[1])  # type: ignore[arg-type]
        return model.ResponseFor(organ_id or parts[0], parts[2], document_id, promulgated)
    if organ_id is None:
        raise click.BadParameter(
            f"{document_id!r} does not name its sender; give --to CODE", param_hint="--for")
    return model.ResponseFor(organ_id, "", document_id)


@envelope_group.command("status")
@click.option("--from", "sender", required=True, callback=agency_code,
              help="Agency sending the status.")
@click.option("--for", "document_id", required=True, metavar="DOCID",
              help="DocumentId the status is about.")
@click.option("--code", "status_code", required=True, type=click.Choice(model.STATUS_CODES),
              help="01 arrived … 06 finished, 13 recall, 15/16 agree/refuse.")
@click.option("--description", help="Default: the meaning of the code.")
@click.option("--to", "original_sender", callback=agency_code,
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
    write_file(out, vdx.build(package))


@envelope_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def envelope_show(file: str, as_json: bool) -> None:
    """Show the header fields and attachments a clerk would want to see."""
    package = vdx.parse(read_file(file))
    summary = _summary(package)
    if as_json:
        emit_json(summary)
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


def _verifier(trust_dir: str, crl_files: tuple[str, ...] = ()):
    from vdx.xmldsig.verify import TrustStore, TrustStoreError, Verifier, load_crl

    try:
        return Verifier(TrustStore.from_dir(trust_dir, [load_crl(f) for f in crl_files]))
    except (TrustStoreError, OSError) as exc:
        raise CommandError(f"cannot use the trust material in {trust_dir}: {exc}",
                           exit_code=2) from exc


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

    data = read_file(file)
    verdict = vdx.check(data)
    if not verdict.valid:
        _print_verdict(file, verdict)
        finish(False)
    try:
        signer = Signer.from_files(key_file, cert_file)
    except (ValueError, TypeError, OSError, PkiError) as exc:
        raise CommandError(f"cannot sign with {key_file} and {cert_file}: {exc}",
                           exit_code=2) from exc
    write_file(out, signer.sign(data))


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
        raise CommandError(f"cannot read --cert {cert_file}: {exc}", exit_code=2) from exc
    try:
        summary = verify_offline(read_file(file), verifier, certs).summary()
    except VdxError as exc:
        if as_json:
            emit_json({"file": file, "valid": False, "problems": [exc.problem.to_dict()]})
        else:
            click.echo(f"{click.style('invalid', fg='red')}  {file}\n  {exc.code}\n"
                       f"    {exc.message}")
        finish(False)
    if as_json:
        emit_json({"file": file, "valid": True, **summary, "problems": []})
        return
    click.echo(f"{click.style('valid', fg='green')}    {file}: signed for {summary['sender']}")
    for key in ("signer", "serial", "not_after", "signature_algorithm", "digest_algorithm"):
        click.echo(f"  {key:<20} {summary[key]}")
    if summary["legacy_sha1"]:
        click.echo("  warning: SHA-1 accepted for a legacy sender", err=True)
