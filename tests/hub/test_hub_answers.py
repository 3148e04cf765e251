"""What the hub answers, on real RabbitMQ and a real database (SQLite and PostgreSQL): a
DocumentId reused for other content is refused with its own code, every answer is named
after its submission, and a ``rejected`` receipt names the DocumentId it could read."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from tests.support.hub import running_hub
from vdx import build
from vdx.core import model
from vdx.core.ledger import make_hash_verifier
from vdx.core.receipts import answer_id
from vdx.core.xmlsafe import parse_untrusted
from vdx.hub import audit, journal
from vdx.hub.pipeline import MAX_DOCUMENT_ID, claimed_document_id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request, tmp_path_factory):
    with running_hub(request.param, tmp_path_factory.mktemp(request.param)) as h:
        yield h


def kinds(messages):
    return sorted((m.receipt.kind for m in messages if m.receipt), key=str)


def answer(messages):
    """The one answer (accepted, rejected, duplicate) among ``messages``."""
    (found,) = [m.receipt for m in messages
                if m.receipt and m.receipt.kind in ("accepted", "rejected", "duplicate")]
    return found


def new_id(agency) -> str:
    return f"{agency.code},2026/11/22,{uuid.uuid4().hex[:8]}/TEST"


def other_content(agency, *to, document_id):
    """A package under ``document_id`` whose bytes differ (an attachment)."""
    return agency.document(*to, document_id=document_id, attachments=(
        model.Attachment("v2.txt", "text/plain", b"the second version"),))


# ------------------------------------------------------------------ reused DocumentId


def test_a_reused_document_id_with_other_content_is_refused_and_recorded(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    document_id = new_id(g22)
    first = g22.document(h41.code, document_id=document_id)
    second = other_content(g22, h41.code, document_id=document_id)
    assert first != second
    g22.send(first)
    assert h41.inbox(1)[0].body == first
    assert kinds(g22.inbox(2)) == ["accepted", "delivered"]

    g22.send(second)
    refused = answer(g22.inbox(1))
    assert refused.kind == "rejected"
    assert refused.error_code == "routing.document_id_reused"
    assert refused.document_id == document_id
    assert refused.package_sha256 == hashlib.sha256(second).hexdigest()
    assert hashlib.sha256(first).hexdigest() in refused.rejection.detail
    assert refused.rejection.message_vi and refused.rejection.message_en
    assert h41.drain() == []  # the new content went nowhere, and the sender knows it

    g22.send(first)  # an identical resend stays a plain duplicate
    assert answer(g22.inbox(1)).kind == "duplicate"
    assert h41.drain() == [] and g22.drain() == []

    sessions = sessionmaker(hub.engine)
    with sessions() as session:
        row = session.get(journal.ReceiptRow, refused.receipt_id)
        assert (row.kind, row.error_code, row.document_id) == (
            "rejected", "routing.document_id_reused", document_id)
        entry = session.scalars(select(journal.LedgerRow).where(
            journal.LedgerRow.receipt_id == refused.receipt_id)).one()
        assert (entry.kind, entry.document_id) == ("rejected", document_id)
        assert session.scalar(select(func.count()).select_from(journal.DocumentRow).where(
            journal.DocumentRow.document_id == document_id)) == 1
        assert session.scalar(select(journal.InboundRow.outcome).where(
            journal.InboundRow.sha256 == refused.package_sha256)) == "refused"
        assert audit.verify_ledger(session, make_hash_verifier(
            hub.admin.hub_certificate())).intact


def test_reusing_a_document_id_for_a_further_recipient_refuses_the_whole_package(hub):
    """A recipient that has the DocumentId would not get the new content: refused whole.
    A package to recipients that never got it is theirs (the hub's identity of a document
    is sender, DocumentId and recipient)."""
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    document_id = new_id(g22)
    g22.send(g22.document(h41.code, document_id=document_id))
    h41.inbox(1)
    g22.inbox(2)
    g22.send(g22.document(h41.code, h49.code, document_id=document_id))
    assert answer(g22.inbox(1)).error_code == "routing.document_id_reused"
    assert h41.drain() == [] and h49.drain() == []
    g22.send(g22.document(h49.code, document_id=document_id))
    assert len(h49.inbox(1)) == 1
    assert kinds(g22.inbox(2)) == ["accepted", "delivered"]


def test_a_reused_document_id_is_caught_within_one_batch(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    document_id = new_id(g22)
    first = g22.document(h41.code, document_id=document_id)
    second = other_content(g22, h41.code, document_id=document_id)
    hub.stop()
    try:
        g22.send(first)
        g22.send(second)
    finally:
        hub.start()
    assert h41.inbox(1)[0].body == first
    got = g22.inbox(3)
    assert kinds(got) == ["accepted", "delivered", "rejected"]
    assert next(m.receipt for m in got if m.receipt.kind == "rejected").error_code == \
        "routing.document_id_reused"
    assert h41.drain() == [] and g22.drain() == []


# ------------------------------------------------------------------ answers' ids


def test_each_answer_is_named_after_its_submission(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    body = g22.document(h41.code)
    sha256 = hashlib.sha256(body).hexdigest()
    first = g22.send(body)
    got = g22.inbox(2)
    h41.inbox(1)
    accepted = answer(got)
    assert accepted.receipt_id == answer_id(g22.account, first, sha256)
    (delivered,) = [m for m in got if m.receipt.kind == "delivered"]
    assert uuid.UUID(delivered.receipt.receipt_id).version == 4  # not an answer
    again = g22.send(body)  # the same bytes, another message
    duplicate = g22.inbox(1)[0]
    assert duplicate.receipt.kind == "duplicate"
    assert duplicate.receipt.receipt_id == answer_id(g22.account, again, sha256)
    assert duplicate.message_id == duplicate.receipt.receipt_id
    garbage = g22.send(b"<not xml")
    refused = answer(g22.inbox(1))
    assert refused.receipt_id == answer_id(g22.account, garbage,
                                           hashlib.sha256(b"<not xml").hexdigest())


# ------------------------------------------------------------ refusals' DocumentId


def drop(body: bytes, local_name: str) -> bytes:
    """``body`` without its first ``local_name`` element (unsigned: the signature breaks)."""
    tree = etree.fromstring(body)
    (element,) = tree.xpath(f"//*[local-name()='{local_name}']")[:1]
    element.getparent().remove(element)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def unsigned(agency, *to, document_id):
    return build(model.DocumentPackage(
        sender=model.Organization(agency.code),
        recipients=tuple(model.Organization(t) for t in to), document_id=document_id,
        code=model.Code("1", "T"), promulgation=model.PromulgationInfo(
            "Hà Nội", __import__("datetime").date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"), subject="s",
        signer=model.SignerInfo("A")))


REFUSALS = {
    # name: (how the package is made from the sender, a recipient and a DocumentId; code)
    "schema": (lambda g, r, d: drop(g.document(r, document_id=d), "Subject"),
               "envelope.schema"),
    "unsigned": (lambda g, r, d: unsigned(g, r, document_id=d), "signature.missing"),
    "tampered": (lambda g, r, d: g.document(r, document_id=d).replace(
        "Thử nghiệm trục".encode(), "Đã bị sửa".encode()), "signature.digest_mismatch"),
    "unknown_recipient": (lambda g, r, d: g.document("000.00.00.H99", document_id=d),
                          "routing.unknown_recipient"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_rejected_receipt_names_the_document_id_it_could_read(hub, name):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    make, code = REFUSALS[name]
    document_id = new_id(g22)
    g22.send(make(g22, h41.code, document_id))
    refused = answer(g22.inbox(1))
    assert (refused.kind, refused.error_code, refused.document_id) == (
        "rejected", code, document_id)
    with sessionmaker(hub.engine)() as session:
        assert session.get(journal.ReceiptRow, refused.receipt_id).document_id == document_id
    assert h41.drain() == []


def test_a_refused_status_names_the_document_it_is_about(hub):
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    document_id = new_id(g22)
    g22.send(g22.document(h41.code, document_id=document_id))
    h41.inbox(1)
    g22.inbox(2)
    h49.send(h49.status(g22.code, document_id, "06"))  # H49 never received it
    refused = answer(h49.inbox(1))
    assert (refused.error_code, refused.document_id) == ("routing.not_allowed", document_id)
    g22.drain()


def test_a_package_read_too_little_to_name_one_is_refused_without(hub):
    g22 = hub.agency("G22")
    g22.send(b"<not xml")
    assert answer(g22.inbox(1)).document_id is None
    g22.send(g22.document(hub.agency("H41").code, document_id="X" * (MAX_DOCUMENT_ID + 1)))
    refused = answer(g22.inbox(1))
    assert (refused.error_code, refused.document_id) == ("envelope.schema", None)
    hub.agency("H41").drain()


def test_the_claimed_document_id_is_read_only_when_it_is_one(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")

    def claimed(body: bytes) -> str | None:
        return claimed_document_id(etree.ElementTree(parse_untrusted(body).getroot()))

    assert claimed(g22.document(h41.code, document_id="D-1")) == "D-1"
    assert claimed(h41.status(g22.code, "D-2")) == "D-2"
    assert claimed(drop(g22.document(h41.code, document_id="D-3"), "DocumentId")) is None
    assert claimed(g22.document(h41.code, document_id=" \t ")) is None
    twice = g22.document(h41.code, document_id="D-4").replace(
        b"<edXML:DocumentId>D-4</edXML:DocumentId>",
        b"<edXML:DocumentId>D-4</edXML:DocumentId><edXML:DocumentId>D-5</edXML:DocumentId>")
    assert b"D-5" in twice and claimed(twice) is None
