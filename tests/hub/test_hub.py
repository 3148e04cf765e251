"""The hub end to end on real RabbitMQ and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from tests.support import TESTS
from tests.support.hub import running_hub
from vdx.broker import provision
from vdx.core import model
from vdx.core.ledger import make_hash_verifier
from vdx.hub import audit, journal

CORPUS = TESTS / "corpus" / "envelope"
# Checks that read the package's values run on the signed content only, so an unsigned
# corpus file that passes the schema is refused for its missing signature first.
AFTER_SIGNATURE = {"envelope.bad_identifier", "envelope.bad_attachment", "envelope.inconsistent"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request, tmp_path_factory):
    with running_hub(request.param, tmp_path_factory.mktemp(request.param)) as h:
        yield h


def receipts(messages):
    return sorted((m.receipt.kind for m in messages if m.receipt), key=str)


def test_one_to_one(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    body = g22.document(h41.code)
    g22.send(body)
    (delivered,) = h41.inbox(1)
    assert delivered.body == body  # the signed package is never edited
    assert delivered.type == "edxml.document"
    assert delivered.headers["x-vdx-sender"] == g22.code
    assert delivered.headers["x-vdx-delivery-id"] == delivered.message_id
    got = g22.inbox(2)
    assert receipts(got) == ["accepted", "delivered"]
    delivered_receipt = next(m.receipt for m in got if m.receipt.kind == "delivered")
    assert delivered_receipt.recipient == h41.code
    assert delivered_receipt.delivery_id == delivered.message_id


def test_one_to_many_and_duplicate(hub):
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    body = g22.document(h41.code, h49.code)
    g22.send(body)
    assert h41.inbox(1)[0].body == body
    assert h49.inbox(1)[0].body == body
    assert receipts(g22.inbox(3)) == ["accepted", "delivered", "delivered"]
    g22.send(body)  # the agency's software retries
    assert receipts(g22.inbox(1)) == ["duplicate"]
    assert h41.drain() == [] and h49.drain() == []


def test_status_goes_back_to_the_sender(hub):
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    body = g22.document(h41.code)
    g22.send(body)
    doc = h41.inbox(1)[0]
    g22.inbox(2)
    document_id = doc.headers["x-vdx-document-id"]
    h41.send(h41.status(g22.code, document_id, "03"))
    status = g22.inbox(1)[0]
    assert status.type == "edxml.status"
    assert receipts(h41.inbox(2)) == ["accepted", "delivered"]
    # H49 never received it: its status is refused, and it is told why
    h49.send(h49.status(g22.code, document_id, "06"))
    (refused,) = h49.inbox(1)
    assert refused.receipt.kind == "rejected"
    assert refused.receipt.error_code == "routing.not_allowed"


def test_publishing_another_agencys_package_is_refused(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    stolen = g22.document(h41.code)  # genuinely signed by G22 …
    h41.send(stolen)  # … but published by H41
    (refused,) = h41.inbox(1)
    assert refused.receipt.error_code == "routing.sender_mismatch"
    assert g22.drain() == []


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.xml")))
def test_hostile_corpus_is_refused_and_the_hub_keeps_serving(hub, name):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    expected = dict(line.split() for line in (CORPUS / "expected.txt").read_text().splitlines()
                    if line and not line.startswith("#"))[name]
    if expected in AFTER_SIGNATURE:
        expected = "signature.missing"
    g22.send((CORPUS / name).read_bytes())
    (refused,) = g22.inbox(1)
    assert refused.receipt.kind == "rejected"
    assert refused.receipt.error_code == expected
    g22.send(g22.document(h41.code))
    assert len(h41.inbox(1)) == 1
    assert receipts(g22.inbox(2)) == ["accepted", "delivered"]


def test_unsigned_package_is_refused(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    from tests.support.hub import build

    unsigned = build(model.DocumentPackage(
        sender=model.Organization(g22.code), recipients=(model.Organization(h41.code),),
        document_id="x-unsigned", code=model.Code("1", "T"),
        promulgation=model.PromulgationInfo("Hà Nội", __import__("datetime").date.today()),
        document_type=model.DocumentType(1, "Công văn"), subject="s",
        signer=model.SignerInfo("A")))
    g22.send(unsigned)
    assert g22.inbox(1)[0].receipt.error_code == "signature.missing"


def test_ledger_is_complete_and_tamper_evident(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    g22.send(g22.document(h41.code))
    h41.inbox(1)
    g22.inbox(2)
    verify_sig = make_hash_verifier(hub.admin.hub_certificate())
    sessions = sessionmaker(hub.engine)
    with sessions() as session:
        report = audit.verify_ledger(session, verify_sig)
        assert report.intact and report.entries >= 2
        receipts_count = session.scalar(select(func.count())
                                         .select_from(journal.ReceiptRow))
        assert report.entries == receipts_count  # every receipt is in the ledger
        target = session.scalars(select(journal.LedgerRow).order_by(journal.LedgerRow.seq)
                                 .limit(1)).one().seq
    with sessions.begin() as session:
        session.execute(update(journal.LedgerRow).where(journal.LedgerRow.seq == target)
                        .values(recipient="000.00.00.H99"))
    with sessions() as session:
        report = audit.verify_ledger(session, verify_sig)
    assert not report.intact
    assert [p.seq for p in report.problems] == [target]


def test_an_unroutable_delivery_gets_no_delivered_receipt(hub):
    """The broker acks a returned mandatory message: that must not count as delivered."""
    # Agencies of its own: the relay delivers the kept copy later, to them alone.
    g22, h41 = hub.add_agency("G23"), hub.add_agency("H50")
    api, queue = hub.admin.api, f"vdx.node.{h41.code}.inbox"
    binding = f"bindings/{quote(hub.vhost, safe='')}/e/vdx.deliver/q/{queue}"
    api.delete(f"{binding}/{quote(h41.code, safe='')}")
    try:
        g22.send(g22.document(h41.code))
        assert receipts(g22.inbox(1)) == ["accepted"]
        assert receipts(g22.drain(settle=1.5)) == []  # no "delivered"
        with sessionmaker(hub.engine)() as session:
            pending = session.scalar(select(func.count()).select_from(journal.OutboxRow)
                                     .where(journal.OutboxRow.published_at.is_(None)))
        assert pending >= 1  # kept for the relay
    finally:
        provision.ensure_topology(api, hub.vhost, provision.node_topology(h41.code))


def test_a_reused_message_id_does_not_swallow_another_package(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    first, second = g22.document(h41.code), g22.document(h41.code)
    g22.send(first, message_id="reused-id")
    g22.send(second, message_id="reused-id")
    assert sorted(m.body for m in h41.inbox(2)) == sorted([first, second])
    assert receipts(g22.inbox(4)) == ["accepted", "accepted", "delivered", "delivered"]


def test_the_same_message_twice_is_recorded_once(hub):
    """A redelivery (same publisher, message id and bytes) gets no second receipt."""
    g22 = hub.agency("G22")
    g22.send(b"<not xml", message_id="again")
    g22.send(b"<not xml", message_id="again")
    assert receipts(g22.inbox(1)) == ["rejected"]
    assert g22.drain(settle=1.0) == []


def test_an_overlong_document_id_is_refused_with_a_reason(hub):
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    g22.send(g22.document(h41.code, document_id="X" * 600))
    (refused,) = g22.inbox(1)
    assert refused.receipt.error_code == "envelope.schema"
    assert "at most 512" in refused.receipt.rejection.detail


def test_copies_within_one_batch_are_caught_before_any_write(hub):
    """Sent while the worker is stopped, the copies arrive in one batch: the dedup and
    inbound checks of the batch see each other, not only what was committed before."""
    g22, h41 = hub.agency("G22"), hub.agency("H41")
    body = g22.document(h41.code)
    hub.stop()
    try:
        g22.send(body, message_id="first")
        g22.send(body, message_id="first")  # the same message again: a copy, no receipt
        g22.send(body, message_id="second")  # the same document again: a duplicate
    finally:
        hub.start()
    assert h41.inbox(1)[0].body == body
    assert receipts(g22.inbox(3)) == ["accepted", "delivered", "duplicate"]
    assert h41.drain() == [] and g22.drain(settle=1.0) == []
    with sessionmaker(hub.engine)() as session:
        document_id = model_document_id(body)
        assert session.scalar(select(func.count()).select_from(journal.DeliveryRow)
                              .where(journal.DeliveryRow.document_id == document_id)) == 1


def test_a_batch_of_many_is_recorded_in_order_with_its_ledger(hub):
    """Twenty documents in one batch: every delivery points at its own document, and each
    receipt has its ledger entry, chained to the one before."""
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    bodies = [g22.document(h41.code if i % 2 else h49.code) for i in range(20)]
    hub.stop()
    try:
        for body in bodies:
            g22.send(body)
    finally:
        hub.start()
    got = h41.inbox(10) + h49.inbox(10)
    assert sorted(m.body for m in got) == sorted(bodies)
    answers = g22.inbox(40)
    assert receipts(answers) == ["accepted"] * 20 + ["delivered"] * 20
    with sessionmaker(hub.engine)() as session:
        for message in got:
            delivery = session.get(journal.DeliveryRow, message.message_id)
            document = session.get(journal.DocumentRow, delivery.document_pk)
            assert document.body == message.body  # the generated ids were matched in order
        entries = {row.receipt_id: row for row in session.scalars(
            select(journal.LedgerRow).where(journal.LedgerRow.receipt_id.in_(
                [m.message_id for m in answers])))}
        assert len(entries) == 40
        for row in entries.values():
            before = session.get(journal.LedgerRow, row.seq - 1)
            assert before is not None and row.prev_hash == before.entry_hash


def model_document_id(body: bytes) -> str:
    from vdx.core.envelope import parse

    return parse(body).document_id


def test_a_large_package_goes_alone_and_the_connections_start_afresh(hub):
    """Over ``batch_bytes`` (4 MiB) a batch closes at once; afterwards the worker's
    database connections are replaced (drivers keep buffers as large as the largest
    message) and the next package goes through as before."""
    import os

    g22, h41 = hub.agency("G22"), hub.agency("H41")
    big = g22.document(h41.code, attachments=[model.Attachment(
        "scan.pdf", "application/pdf", os.urandom(3_500_000))])
    assert len(big) > 4 * 1024 * 1024
    small = g22.document(h41.code)
    pool = hub.engine.pool
    g22.send(big)
    assert h41.inbox(1, timeout=60)[0].body == big
    assert hub.engine.pool is not pool  # disposed: a new pool, new connections
    g22.send(small)
    assert h41.inbox(1)[0].body == small
    assert receipts(g22.inbox(4)) == ["accepted", "accepted", "delivered", "delivered"]
