"""``vdx demo``: the offline part of an exchange, end to end, in a throw-away workspace.

It builds a document with an attachment, checks it as the hub would, builds the
recipient's status answer, and shows a tampered package being refused with its reason.
Each step reports through ``say`` so the CLI can show progress.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from . import envelope, model

SENDER, RECIPIENTS = "000.00.00.G22", ("000.00.00.H41", "000.00.00.H49")
Say = Callable[[str, str], None]


@dataclass(frozen=True)
class DemoResult:
    workspace: Path
    steps: tuple[tuple[str, bool], ...]

    @property
    def ok(self) -> bool:
        return all(ok for _, ok in self.steps)


def run(say: Say, workspace: Path | None = None) -> DemoResult:
    ws = workspace or Path(tempfile.mkdtemp(prefix="vdx-demo-"))
    steps: list[tuple[str, bool]] = []

    def step(name: str, ok: bool, detail: str) -> None:
        steps.append((name, ok))
        say(name, detail)

    attachment = ws / "quyet-dinh-12.pdf"
    attachment.write_bytes(b"%PDF-1.7\n% demo decision\n")
    document = _document(model.Attachment.from_file(attachment))
    doc_bytes = envelope.build(document)
    (ws / "document.edxml").write_bytes(doc_bytes)
    step("build", True, f"document {document.document_id} for {', '.join(RECIPIENTS)} "
                        f"with {attachment.name} ({len(doc_bytes):,} bytes)")

    verdict = envelope.check(doc_bytes)
    step("check", verdict.valid, "schema, identifiers, manifest: valid" if verdict.valid
         else "; ".join(p.message for p in verdict.problems))

    status = model.StatusPackage(
        sender=model.Organization(RECIPIENTS[0]),
        response_for=model.ResponseFor(SENDER, str(document.code), document.document_id,
                                       document.promulgation.date),
        staff=model.StaffInfo("Văn thư", "Trần Thị B"),
        status_code="03", description=model.STATUS_MEANINGS["03"][0],
        timestamp=datetime.now(model.VIETNAM_TZ).replace(microsecond=0),
    )
    status_bytes = envelope.build(status)
    (ws / "status-03.edxml").write_bytes(status_bytes)
    step("status", envelope.check(status_bytes).valid,
         f"{RECIPIENTS[0]} answers 03 ({model.STATUS_MEANINGS['03'][1]})")

    hostile = doc_bytes.replace(b"?>", b'?>\n<!DOCTYPE edXML [<!ENTITY x SYSTEM '
                                       b'"file:///etc/passwd">]>', 1)
    refused = envelope.check(hostile)
    reason = refused.problems[0] if refused.problems else None
    step("refuse", reason is not None and reason.code == "envelope.dtd_forbidden",
         f"XXE attempt refused: {reason.code}: {reason.message}" if reason else "NOT refused")
    return DemoResult(ws, tuple(steps))


def _document(attachment: model.Attachment) -> model.DocumentPackage:
    today = date.today()
    return model.DocumentPackage(
        sender=model.Organization(SENDER, organ_name="Văn phòng Chính phủ"),
        recipients=tuple(model.Organization(code) for code in RECIPIENTS),
        document_id=f"{SENDER},{today:%Y/%m/%d},12/QĐ-TTg",
        code=model.Code("12", "QĐ-TTg"),
        promulgation=model.PromulgationInfo("Hà Nội", today),
        document_type=model.DocumentType(2, "Quyết định"),
        subject="Ban hành Quy chế liên thông văn bản điện tử",
        signer=model.SignerInfo("Nguyễn Văn A", "KT. THỦ TƯỚNG", "Phó Thủ tướng"),
        trace=(model.TraceHeader(SENDER, datetime.now(model.VIETNAM_TZ).replace(microsecond=0)),),
        attachments=(attachment,),
    )
