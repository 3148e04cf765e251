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
from vdx import envelope, model
from vdx.errors import VdxError
from vdx.identifiers import identifier_problem

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
    values = value if isinstance(value, tuple) else (value,)
    for code in values:
        if code is not None and (problem := identifier_problem(code)):
            raise click.BadParameter(problem)
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
def envelope_check(files: tuple[str, ...], as_json: bool, max_bytes: int) -> None:
    """Check each FILE against the edXML schema and the identifier rules.

    Exit 0 when every file is valid, 1 when any is not.
    """
    limits = vdx.ParseLimits(max_bytes=max_bytes)
    results = [(name, vdx.check(_read(name), limits)) for name in files]
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
    }


def _print_verdict(name: str, verdict: envelope.Verdict) -> None:
    if verdict.valid:
        package = verdict.package
        what = (f"document {package.document_id}" if isinstance(package, model.DocumentPackage)
                else f"status {package.status_code} for {package.response_for.document_id}")
        click.echo(f"{click.style('valid', fg='green')}    {name}: {what}")
        return
    click.echo(f"{click.style('invalid', fg='red')}  {name}")
    for p in verdict.problems:
        where = " ".join(x for x in (f"line {p.line}" if p.line else "", p.path or "") if x)
        click.echo(f"  {p.code}  {where}\n    {p.message}")


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
@click.option("--keep", is_flag=True, help="Keep the workspace for exploring.")
def demo(keep: bool) -> None:
    """Show an exchange end to end in a throw-away workspace."""
    import shutil
    import tempfile

    from vdx import demo as demo_mod

    workspace = Path(tempfile.mkdtemp(prefix="vdx-demo-"))

    def say(step: str, detail: str) -> None:
        click.echo(f"{click.style(f'[{step}]', fg='cyan'):<20} {detail}")

    try:
        result = demo_mod.run(say, workspace)
    finally:
        if not keep:
            shutil.rmtree(workspace, ignore_errors=True)
    click.echo(f"workspace kept at {workspace}" if keep else "workspace removed")
    if not result.ok:
        _fail("the demo did not go as expected (see above)")


# ------------------------------------------------------------ signatures and PKI (issue 3)

# ------------------------------------------------------------------- registry (issue 4)


if __name__ == "__main__":
    main()
