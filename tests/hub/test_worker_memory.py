"""The hub worker end to end on SQLite with the in-memory broker: no RabbitMQ.

The same worker, journal, signatures and registry as in ``test_hub.py``; the broker is
:class:`vdx.broker.memory.MemoryBroker`, which can also fail on purpose (a connection
lost between the commit and the ack, publications refused, an unbound inbox). Each
test runs a worker until the broker is idle, then stops it as SIGTERM would.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256 as sha256_of
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tests.support.hub import Agency, register_offline
from tests.support.registry import TestPki, database
from vdx import store
from vdx.broker.memory import MemoryBroker, MemoryChannel
from vdx.core import model
from vdx.core.ledger import make_hash_verifier
from vdx.core.receipts import parse_receipt
from vdx.hub import audit, journal
from vdx.hub.supervisor import load_services
from vdx.hub.worker import POISON_AFTER, HubServices, HubWorker, WorkerConfig
from vdx.xmldsig import pki


@dataclass
class Site:
    """A hub's database, keys and registered agencies, and its in-memory broker."""

    engine: Engine
    services: HubServices
    pki_path: Path
    broker: MemoryBroker
    agencies: dict[str, Agency] = field(default_factory=dict)

    def agency(self, prefix: str) -> Agency:
        return self.agencies[prefix]

    def serve(self, timeout: float = 30.0, *, sessions: sessionmaker | None = None,
              at_idle: Callable[[], None] | None = None, **config) -> HubWorker:
        """Run a worker until nothing is left to do, then stop it (as SIGTERM does);
        ``at_idle`` runs first, when the broker turns idle. ``config``: the worker's
        settings beyond the defaults."""
        worker = HubWorker(WorkerConfig(hub_id="test-hub", amqp_url="amqp://unused", **config),
                           sessions or store.session_factory(self.engine), self.services,
                           channel=self.broker.connect)

        def idle() -> None:
            if at_idle is not None:
                at_idle()
            worker.request_stop()

        self.broker.on_idle = idle
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            worker.request_stop()
            thread.join(15)
            pytest.fail(f"the worker was still busy after {timeout} s")
        return worker

    def receipts(self, code: str) -> list[tuple[str, str | None]]:
        return [(r.kind, r.error_code) for r in (
            parse_receipt(m.body) for m in self.broker.received(code) if m.type == "vdx.receipt")]

    def packages_ids(self, code: str) -> list[str]:
        """The delivery ids of what node ``code`` received (packages only)."""
        return [m.message_id for m in self.broker.received(code)
                if m.type.startswith("edxml.")]

    def packages(self, code: str) -> list[bytes]:
        return [m.body for m in self.broker.received(code) if m.type.startswith("edxml.")]

    def count(self, row: type) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(row))

    def unpublished(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(journal.OutboxRow)
                                  .where(journal.OutboxRow.published_at.is_(None)))

    def delivered_receipts(self) -> Counter[str]:
        """How many ``delivered`` receipts each delivery got (recorded rows)."""
        with Session(self.engine) as session:
            return Counter(session.scalars(select(journal.ReceiptRow.delivery_id).where(
                journal.ReceiptRow.kind == "delivered")))

    def receipts_in_ledger_order(self) -> list[tuple[str, str]]:
        """(kind, document id) of every receipt, in the ledger's order."""
        with Session(self.engine) as session:
            return [(kind, document_id) for kind, document_id in session.execute(
                select(journal.ReceiptRow.kind, journal.ReceiptRow.document_id)
                .join(journal.LedgerRow, journal.LedgerRow.receipt_id == journal.ReceiptRow.id)
                .order_by(journal.LedgerRow.seq))]

    def ledger_intact(self) -> bool:
        verify = make_hash_verifier(pki.load_certificate(pki.CaDir(self.pki_path).hub_cert))
        with Session(self.engine) as session:
            report = audit.verify_ledger(session, verify)
            return report.intact and report.entries == session.scalar(
                select(func.count()).select_from(journal.ReceiptRow))


@pytest.fixture
def site(tmp_path):
    test_pki = TestPki.create(tmp_path / "pki")
    pki.issue_hub(test_pki.path, ec_key=True)
    with database("sqlite", tmp_path) as engine:
        agencies, config = register_offline(engine, test_pki, ("G22", "H41", "H49"),
                                                    actor="test")
        yield Site(engine, load_services(config), test_pki.path,
                   MemoryBroker(bound=[a.code for a in agencies.values()]), agencies)


def test_a_package_is_delivered_with_its_receipts_and_acked_after_its_commit(site):
    g22, h41 = site.agency("G22"), site.agency("H41")
    body = g22.document(h41.code)
    recorded_at_ack = []
    site.broker.on_ack = lambda _m: recorded_at_ack.append(site.count(journal.DocumentRow))
    site.broker.submit(body, user_id=g22.code)
    site.serve()
    assert site.packages(h41.code) == [body]  # the signed package, as it came
    assert site.receipts(g22.code) == [("accepted", None), ("delivered", None)]
    (delivery,) = site.broker.received(h41.code)
    delivered = parse_receipt(site.broker.received(g22.code)[1].body)
    assert (delivered.recipient, delivered.delivery_id) == (h41.code, delivery.message_id)
    assert recorded_at_ack == [1]  # the document was committed when the ack went out
    assert [m.body for m in site.broker.acked] == [body]
    assert not site.broker.queue and not site.broker.dead
    assert site.unpublished() == 0
    assert site.ledger_intact()


def test_a_refused_package_gets_a_rejected_receipt(site):
    g22, h41 = site.agency("G22"), site.agency("H41")
    site.broker.submit(b"not xml at all", user_id=g22.code)
    site.broker.submit(g22.document(h41.code), user_id=h41.code)  # not H41's to publish
    site.broker.submit(b"<nobody/>", user_id="someone-unregistered")  # no one to tell
    site.serve()
    assert site.receipts(g22.code) == [("rejected", "envelope.not_xml")]
    assert site.receipts(h41.code) == [("rejected", "routing.sender_mismatch")]
    assert len(site.broker.acked) == 3 and not site.broker.dead
    assert site.count(journal.DocumentRow) == 0
    assert site.count(journal.InboundRow) == 3  # each refusal recorded, for redeliveries
    assert site.ledger_intact()


def test_a_redelivery_after_the_commit_duplicates_nothing(site):
    """The connection drops between the commit and the ack: the broker redelivers the
    message, the worker's next connection relays the outbox, nothing is sent twice."""
    g22, h41 = site.agency("G22"), site.agency("H41")
    body = g22.document(h41.code)
    site.broker.drop_connection_at_next_ack()
    site.broker.submit(body, user_id=g22.code)
    site.serve()
    assert site.packages(h41.code) == [body]
    assert site.receipts(g22.code) == [("accepted", None), ("delivered", None)]
    assert [m.redelivered for m in site.broker.acked] == [True]
    assert site.count(journal.DocumentRow) == 1
    assert site.unpublished() == 0
    assert site.ledger_intact()


def test_copies_and_duplicates_within_a_batch_and_after_it(site):
    g22, h41 = site.agency("G22"), site.agency("H41")
    body = g22.document(h41.code)
    site.broker.submit(body, user_id=g22.code, message_id="first")
    site.broker.submit(body, user_id=g22.code, message_id="first")  # a copy: no receipt
    site.broker.submit(body, user_id=g22.code, message_id="second")  # a duplicate
    site.serve()
    site.broker.submit(body, user_id=g22.code, message_id="third")  # later, again
    site.serve()
    assert site.packages(h41.code) == [body]
    assert sorted(site.receipts(g22.code)) == [
        ("accepted", None), ("delivered", None), ("duplicate", None), ("duplicate", None)]
    assert site.count(journal.DeliveryRow) == 1


def test_one_to_many_and_a_status_back(site):
    g22, h41, h49 = site.agency("G22"), site.agency("H41"), site.agency("H49")
    body = g22.document(h41.code, h49.code)
    site.broker.submit(body, user_id=g22.code)
    site.serve()
    document_id = parse_receipt(site.broker.received(g22.code)[0].body).document_id
    site.broker.submit(h41.status(g22.code, document_id, "03"), user_id=h41.code)
    site.serve()
    assert site.packages(h41.code) == [body] and site.packages(h49.code) == [body]
    assert [m.type for m in site.broker.received(g22.code)].count("edxml.status") == 1
    assert Counter(site.receipts(g22.code)) == {("accepted", None): 1, ("delivered", None): 2}
    assert site.receipts(h41.code) == [("accepted", None), ("delivered", None)]


def test_an_unroutable_or_refused_publication_stays_in_the_outbox(site):
    """No ``delivered`` receipt for a publication the broker returned or nacked."""
    g22, h41 = site.agency("G22"), site.agency("H41")
    del site.broker.inboxes[h41.code]  # its inbox is not bound
    site.broker.submit(g22.document(h41.code), user_id=g22.code)
    site.serve()
    assert site.receipts(g22.code) == [("accepted", None)]
    assert site.unpublished() == 1  # the delivery, for the relay
    site.broker.refuse_publications = True
    site.broker.submit(g22.document(h41.code), user_id=g22.code)
    site.serve()
    assert site.receipts(g22.code) == [("accepted", None)]
    assert site.unpublished() == 1 + 2  # the first delivery relayed, in vain, and the new
    site.broker.refuse_publications = False
    site.broker.inboxes[h41.code] = []
    site.serve()  # the relay on connecting
    assert len(site.packages(h41.code)) == 2
    assert sorted(site.receipts(g22.code)) == [("accepted", None)] * 2 + [("delivered", None)] * 2
    assert site.unpublished() == 0


def test_a_database_error_closes_the_channel_and_the_batch_is_redelivered(site, monkeypatch):
    g22, h41 = site.agency("G22"), site.agency("H41")
    real_insert = journal.insert_rows
    failures = []

    def failing_once(session, model, rows):
        if not failures:
            failures.append(model)
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real_insert(session, model, rows)

    monkeypatch.setattr(journal, "insert_rows", failing_once)
    body = g22.document(h41.code)
    site.broker.submit(body, user_id=g22.code)
    site.serve()
    assert failures and site.packages(h41.code) == [body]
    assert site.receipts(g22.code) == [("accepted", None), ("delivered", None)]
    assert [m.redelivered for m in site.broker.acked] == [True]


def test_a_poison_message_is_dead_lettered_with_a_rejected_receipt(site, monkeypatch):
    import vdx.hub.worker

    real_admit = vdx.hub.worker.admit
    attempts = Counter()

    def crashing_admit(body, *args, **kwargs):
        if b"<!-- poison -->" in body:
            attempts["poison"] += 1
            raise RuntimeError("a bug this package triggers")
        return real_admit(body, *args, **kwargs)

    monkeypatch.setattr(vdx.hub.worker, "admit", crashing_admit)
    g22, h41 = site.agency("G22"), site.agency("H41")
    good = g22.document(h41.code)
    poison = g22.document(h41.code).replace(b"?>", b"?><!-- poison -->", 1)
    site.broker.submit(good, user_id=g22.code)
    site.broker.submit(poison, user_id=g22.code)
    site.serve()
    assert sorted(site.receipts(g22.code), key=str) == [
        ("accepted", None), ("delivered", None), ("rejected", "transport.poison")]
    assert site.packages(h41.code) == [good]
    assert [m.body for m in site.broker.dead] == [poison]
    # in its batch, alone to find the culprit, then POISON_AFTER times alone
    assert attempts["poison"] == 2 + POISON_AFTER


# ---------------------------------------------------------------- one commit per batch


def accepted_before_delivered(order: list[tuple[str, str]]) -> bool:
    """Every document's ``delivered`` receipts come after its ``accepted`` one."""
    accepted = set()
    for kind, document_id in order:
        if kind == "accepted":
            accepted.add(document_id)
        elif kind == "delivered" and document_id not in accepted:
            return False
    return True


def test_a_steady_stream_costs_one_commit_per_batch(site, monkeypatch):
    """Each batch's transaction records the confirms of the one before: only the last
    batch's (and those of the receipts they publish) get transactions of their own."""
    g22, h41 = site.agency("G22"), site.agency("H41")
    sessions = store.session_factory(site.engine)
    commits = []
    event.listen(sessions, "after_commit", lambda _session: commits.append(1))
    batches = []
    real_plan = HubWorker._plan

    def counting_plan(worker, batch, *args):
        batches.append(len(batch))
        return real_plan(worker, batch, *args)

    monkeypatch.setattr(HubWorker, "_plan", counting_plan)
    bodies = [g22.document(h41.code) for _ in range(60)]
    for body in bodies:
        site.broker.submit(body, user_id=g22.code)
    site.serve(sessions=sessions, batch_max=10)
    assert sum(batches) == 60 and len(batches) >= 6
    assert len(commits) <= len(batches) + 2  # was two per batch
    assert site.packages(h41.code) == bodies
    assert Counter(site.receipts(g22.code)) == {("accepted", None): 60, ("delivered", None): 60}
    assert set(site.delivered_receipts().values()) == {1}
    assert site.unpublished() == 0
    assert site.ledger_intact()
    assert accepted_before_delivered(site.receipts_in_ledger_order())


def test_an_idle_worker_records_its_confirms_without_waiting_for_a_batch(site):
    g22, h41 = site.agency("G22"), site.agency("H41")
    sessions = store.session_factory(site.engine)
    commits = []
    event.listen(sessions, "after_commit", lambda _session: commits.append(1))
    at_idle = {}

    def look():  # before the worker is asked to stop (draining would record them too)
        at_idle.update(receipts=site.receipts(g22.code), unpublished=site.unpublished(),
                       commits=len(commits))

    site.broker.submit(g22.document(h41.code), user_id=g22.code)
    site.serve(sessions=sessions, at_idle=look)
    assert at_idle == {"receipts": [("accepted", None), ("delivered", None)],
                       "unpublished": 0,
                       "commits": 3}  # the batch, its confirms, the receipt's confirm
    assert site.delivered_receipts() == {site.packages_ids(h41.code)[0]: 1}
    assert site.ledger_intact()


@pytest.mark.parametrize("failure", ["conflict", "database", "crash"])
def test_confirms_carried_by_a_failed_batch_are_recorded_once(site, monkeypatch, failure):
    """Package A is journalled and confirmed; B1 and B2 come right after and their batch
    carries A's confirm, then fails once: on a conflict (each retried alone), a database
    error (the channel closed, the batch redelivered) or a crash (the culprit sought).
    A's confirm is still recorded, once, and the ledger holds together."""
    g22, h41 = site.agency("G22"), site.agency("H41")
    first, *then = [g22.document(h41.code) for _ in range(3)]
    carried_in = []  # the sessions that recorded confirms
    failed_in = []
    real_claim, real_insert = journal.claim_confirmations, journal.insert_rows

    def claiming(session, delivery_ids, when):
        if delivery_ids:
            carried_in.append(session)
        return real_claim(session, delivery_ids, when)

    def failing_once(session, model, rows):
        if (model is journal.InboundRow and not failed_in
                and any(row["sha256"] != sha256_of(first).hexdigest() for row in rows)):
            failed_in.append(session)
            raise {"conflict": IntegrityError("INSERT", {}, Exception("UNIQUE failed")),
                   "database": OperationalError("INSERT", {}, Exception("disk I/O error")),
                   "crash": RuntimeError("a bug")}[failure]
        return real_insert(session, model, rows)

    def submit_then(message):
        if message.body == first:
            for body in then:
                site.broker.submit(body, user_id=g22.code)

    monkeypatch.setattr(journal, "claim_confirmations", claiming)
    monkeypatch.setattr(journal, "insert_rows", failing_once)
    site.broker.on_ack = submit_then
    site.broker.submit(first, user_id=g22.code)
    site.serve()
    assert failed_in and failed_in[0] is carried_in[0]  # B's batch carried A's confirm
    assert len(carried_in) >= 2  # and it was recorded again, apart
    assert sorted(site.packages(h41.code)) == sorted([first, *then])
    assert site.delivered_receipts() == dict.fromkeys(site.packages_ids(h41.code), 1)
    ids = {kind: set() for kind in ("accepted", "delivered")}
    for m in site.broker.received(g22.code):
        receipt = parse_receipt(m.body)
        ids[receipt.kind].add(receipt.receipt_id)
    assert {kind: len(found) for kind, found in ids.items()} == {"accepted": 3, "delivered": 3}
    assert site.unpublished() == 0
    assert site.ledger_intact()
    assert accepted_before_delivered(site.receipts_in_ledger_order())


def test_connections_start_afresh_after_a_large_package_only(site):
    """A batch of small packages that adds up past ``batch_bytes`` keeps the worker's
    database connections (a new PostgreSQL backend costs more than a few MiB of driver
    buffers); one package past it replaces them."""
    g22, h41 = site.agency("G22"), site.agency("H41")
    small = [g22.document(h41.code) for _ in range(6)]
    limit = 3 * max(len(body) for body in small)
    for body in small:
        site.broker.submit(body, user_id=g22.code)
    pool = site.engine.pool
    site.serve(batch_bytes=limit)
    assert site.packages(h41.code) == small
    assert site.engine.pool is pool

    large = g22.document(h41.code, attachments=[model.Attachment(
        "scan.pdf", "application/pdf", b"%PDF" + bytes(limit))])
    assert len(large) >= limit
    site.broker.submit(large, user_id=g22.code)
    site.serve(batch_bytes=limit)
    assert site.packages(h41.code)[-1] == large
    assert site.engine.pool is not pool


def test_a_batch_closes_when_the_socket_is_drained_not_on_a_timer(site, monkeypatch):
    """A lone package is journaled at the loop's next turn: no batch waits on a timer
    for company that is not coming (p99 at half the maximum rate, issue 14)."""
    g22, h41 = site.agency("G22"), site.agency("H41")
    flushes = []
    real_call_later = MemoryChannel.call_later

    def call_later(channel, delay, fn):
        if getattr(fn, "__name__", "") == "_flush":
            flushes.append(delay)
        return real_call_later(channel, delay, fn)

    monkeypatch.setattr(MemoryChannel, "call_later", call_later)
    body = g22.document(h41.code)
    site.broker.submit(body, user_id=g22.code)
    site.serve()
    assert site.packages(h41.code) == [body]
    assert flushes and set(flushes) == {0.0}
