"""``vdx hub run`` and what the hub recorded: ``vdx receipts``, ``vdx document`` and
``vdx audit`` (the ledger, its signed heads and offline proof bundles).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from vdx.commands.common import (
    CommandError,
    VdxGroup,
    agency_code,
    emit_json,
    finish,
    hub_admin,
    write_file,
)
from vdx.core import model
from vdx.errors import VdxError


@click.group("hub", cls=VdxGroup)
def hub_group() -> None:
    """Run the hub: validate, route and receipt every submitted package."""


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

    admin = hub_admin()
    with admin.transaction():
        pass  # refuses an uninitialised database with one line, before any worker starts
    try:  # the same configuration every worker loads: refuse a bad one once, clearly
        load_services(admin.config)
    except (OSError, ValueError, TrustStoreError) as exc:
        raise CommandError(f"cannot start the hub: {exc}") from exc
    code = run_hub(admin.config, workers=workers, prefetch=prefetch, hub_id=hub_id,
                   metrics_port=metrics_port)
    click.get_current_context().exit(code)


def _parse_time(ctx, param, value: str | None):
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, e.g. 2026-11-22T09:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=model.VIETNAM_TZ)


@click.group("receipts", cls=VdxGroup)
def receipts_group() -> None:
    """Query the receipts the hub issued."""


@receipts_group.command("query")
@click.option("--document", "document_id", help="DocumentId.")
@click.option("--sender", callback=agency_code, help="Agency the receipts were issued to.")
@click.option("--recipient", callback=agency_code, help="Recipient of the document.")
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
    with hub_admin().transaction() as session:
        found = audit.query_receipts(session, document_id=document_id, sender=sender,
                                     recipient=recipient, kind=kind, since=since, until=until)
    rows = [r.to_dict() for r in found]
    if as_json:
        emit_json(rows)
    elif as_csv:
        import csv

        fields = list(rows[0]) if rows else list(audit.ReceiptView.__dataclass_fields__)
        writer = csv.DictWriter(sys.stdout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    else:
        print_receipts(found)


def print_receipts(found) -> None:
    """One line per receipt (``vdx receipts query``, ``vdx demo``)."""
    if not found:
        click.echo("no receipts match")
        return
    for r in found:
        extra = r.error_code or (f"status {r.status_code}" if r.status_code else "")
        click.echo(f"{r.created_at:%Y-%m-%d %H:%M:%S}  {r.kind:<9}  to {r.addressee:<14}  "
                   f"{r.document_id or '-'}  {r.recipient or ''}  {extra}".rstrip())


@click.group("document", cls=VdxGroup)
def document_group() -> None:
    """Follow one document through the hub."""


@document_group.command("show")
@click.argument("document_id")
@click.option("--json", "as_json", is_flag=True)
def document_show(document_id: str, as_json: bool) -> None:
    """The whole timeline of DOCUMENT_ID across all its recipients (in arrival order),
    then each recipient's current status (its furthest by meaning)."""
    from vdx.hub import audit

    with hub_admin().transaction() as session:
        events = audit.document_timeline(session, document_id)
        current = audit.current_statuses(session, document_id)
    if not events:
        raise CommandError(f"the hub has no record of {document_id}")
    if as_json:
        emit_json({"document_id": document_id, "events": [e.to_dict() for e in events],
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


@click.group("audit", cls=VdxGroup)
def audit_group() -> None:
    """Check the ledger; export proof for third parties."""


@audit_group.command("verify")
@click.option("--expect-head", "expect_head", type=click.Path(exists=True, path_type=Path),
              help="A head file from `vdx audit head`, or a directory of them from "
                   "`vdx audit publish-heads`: the ledger must still reach each one.")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(expect_head: Path | None, as_json: bool) -> None:
    """Check the whole ledger chain and every hub signature, and every receipt against its
    ledger entry. Exit 1 on any problem, each reported at its position (entry seq).
    Each run is recorded (the console shows the last one)."""
    from vdx.core.ledger import make_hash_verifier
    from vdx.hub import audit, reports

    admin = hub_admin()
    certificate = _hub_certificate(admin)
    heads = []
    if expect_head is not None:
        try:
            heads = audit.read_heads(expect_head, certificate)
        except audit.HeadError as exc:
            raise CommandError(f"cannot use the expected head: {exc}", exit_code=2) from exc
    with admin.transaction() as session:
        report = audit.verify_ledger(session, make_hash_verifier(certificate),
                                     expected_heads=[h.head for h in heads])
    try:  # kept for the console's overview; a read-only account still verifies
        with admin.transaction() as session:
            reports.record_ledger_check(session, report, actor=admin.config.actor)
    except VdxError as exc:
        click.echo(f"warning: the result was not recorded for the console: {exc}", err=True)
    if as_json:
        emit_json({"intact": report.intact, "entries": report.entries,
                   "head": report.head_seq, "receipts": report.receipts,
                   "expected_heads": [h.to_dict() for h in heads],
                   "problems": [p.to_dict() for p in report.problems]})
    elif report.intact:
        reached = (f"; it reaches the expected head, entry {max(h.head.seq for h in heads)}"
                   if heads else "")
        click.echo(f"ledger intact: {report.entries} entries, every hash and hub signature "
                   f"checks, {report.receipts} receipts match their entries{reached}")
    else:
        click.echo(f"ledger NOT intact: {len(report.problems)} problem(s) in "
                   f"{report.entries} entries and {report.receipts} receipts")
        for p in report.problems:
            where = f"entry {p.seq}" if p.seq is not None else "no entry"
            click.echo(f"  {where}: {p.code}: {p.message}")
    finish(report.intact)


@audit_group.command("head")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.xml")
@click.option("--hub-id", envvar="VDX_HUB_ID", default="vdx-hub", show_default=True,
              help="This hub's name, written in the head.")
@click.option("--json", "as_json", is_flag=True)
def audit_head(out: str, hub_id: str, as_json: bool) -> None:
    """Write the ledger's current head (entry seq, its hash, the time), signed by the hub
    as receipts are. Keep it away from the hub: `vdx audit verify --expect-head FILE` later
    proves that no entry up to it was removed. Anyone can check it offline with
    `xmlsec1 --verify --enabled-key-data x509 --pubkey-cert-pem hub.pem FILE`."""
    from vdx.core.ledger import make_hash_verifier
    from vdx.core.ledger_head import HeadRecord
    from vdx.hub import audit

    admin = hub_admin()
    certificate, signer = _hub_certificate(admin), _hub_signer(admin)
    with admin.transaction() as session:
        try:
            head = audit.current_head(session, make_hash_verifier(certificate))
        except audit.HeadError as exc:
            raise CommandError(str(exc)) from exc
    if head is None:
        raise CommandError("the ledger is empty: there is no head to record yet")
    record = HeadRecord(hub_id, datetime.now(UTC), head)
    write_file(out, audit.sign_head(record, signer))
    if as_json:
        emit_json(record.to_dict())
    else:
        click.echo(f"head: entry {head.seq}, {head.entry_hash}")


@audit_group.command("publish-heads")
@click.option("--dir", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the head files (one per head, named by its seq).")
@click.option("--every", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds between two looks at the head.")
@click.option("--once", is_flag=True, help="Look once and exit (to run from cron).")
@click.option("--hub-id", envvar="VDX_HUB_ID", default="vdx-hub", show_default=True,
              help="This hub's name, written in each head.")
def audit_publish_heads(directory: Path, every: float, once: bool, hub_id: str) -> None:
    """Write the hub-signed current head into DIR whenever it moved, as
    ledger-head-<SEQ>.xml, until SIGTERM (or once with --once). Auditors copy DIR away
    from the hub and pass it to `vdx audit verify --expect-head DIR`. A head file that the
    ledger no longer matches is never replaced: the command stops with exit 1."""
    import signal
    import threading

    from vdx.core.ledger import make_hash_verifier
    from vdx.hub import audit

    admin = hub_admin()
    certificate, signer = _hub_certificate(admin), _hub_signer(admin)
    verify_sig = make_hash_verifier(certificate)

    def report(published) -> None:
        if published is not None and published.written:
            click.echo(f"published entry {published.record.head.seq} to {published.path}")
        elif once:
            click.echo("the head has not moved" if published else "the ledger is empty")

    try:
        if once:
            with admin.transaction() as session:
                report(audit.publish_head(session, signer, verify_sig, directory,
                                          hub_id=hub_id, now=datetime.now(UTC)))
            return
        with admin.transaction():
            pass  # refuses an uninitialised database with one line, before the loop
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        audit.publish_heads(admin.transaction, signer, verify_sig, directory, hub_id=hub_id,
                            every=every, wait=stop.wait, report=report)
    except (audit.HeadError, OSError) as exc:
        raise CommandError(str(exc)) from exc


def _hub_certificate(admin):
    try:
        certificate = admin.hub_certificate()
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the hub certificate: {exc}") from exc
    if certificate is None:
        raise CommandError("no hub certificate; run `vdx init`")
    return certificate


def _hub_signer(admin):
    from vdx.xmldsig import pki
    from vdx.xmldsig.sign import Signer

    ca = pki.CaDir(admin.config.pki_dir)
    try:
        return Signer.from_files(ca.hub_key, ca.hub_cert)
    except (OSError, ValueError, pki.PkiError) as exc:
        raise CommandError(f"cannot load the hub's signing key: {exc}") from exc


@audit_group.command("export")
@click.argument("document_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.zip")
def audit_export(document_id: str, out: str) -> None:
    """Write a proof bundle for DOCUMENT_ID that anyone can check offline with xmlsec1."""
    from vdx.hub import audit
    from vdx.xmldsig.trust import TrustStoreError

    admin = hub_admin()

    with admin.transaction() as session:
        try:
            certificates = audit.bundle_certificates(session, admin.config, document_id)
        except (OSError, ValueError, TrustStoreError) as exc:
            raise CommandError(f"cannot gather the certificates: {exc}") from exc
        data = audit.export_bundle(session, document_id, certificates)
        if not certificates or data is None:
            raise CommandError(f"the hub has no record of {document_id}")
    write_file(out, data)
