"""Planning a batch on an in-memory directory: no database, broker or signature."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

import pytest

from vdx.broker.wire import Incoming
from vdx.core.routing import Route
from vdx.core.xmlsafe import ParseLimits
from vdx.errors import EnvelopeError
from vdx.hub.pipeline import Admitted
from vdx.hub.plan import Delivery, Planner, Refused, dedup_key, inbound_key

G22, H41, H49 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49"


@dataclass
class MemoryDirectory:
    """Nodes log in under their own codes; ``seen`` and ``delivered``: the journal."""

    nodes: set[str] = field(default_factory=lambda: {G22, H41, H49})
    seen: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)
    reads: Counter = field(default_factory=Counter)

    def node_status(self, code):
        return "active" if code in self.nodes else None

    def account_of(self, code):
        return code if code in self.nodes else None

    def may_publish_for(self, user_id, sender):
        return False

    def known_document(self, sender, document_id):
        return None

    def node_of_account(self, user):
        return user if user in self.nodes else None

    def verify(self, tree, sender):
        return tree

    def seen_inbound_keys(self, keys):
        self.reads["inbound"] += 1
        return {k for k in keys if k in self.seen}

    def existing_dedup_keys(self, keys):
        self.reads["dedup"] += 1
        return {k for k in keys if k in self.delivered}


def fake_admit(body, user_id, *, limits, verify, directory, sha256=None):
    """Admits ``DOCID>RECIPIENT,...`` from its publisher; refuses anything else."""
    text = body.decode()
    if ">" not in text:
        raise EnvelopeError("envelope.not_xml", "not a package")
    document_id, recipients = text.split(">")
    return Admitted(object(), Route(user_id, document_id, tuple(recipients.split(",")),
                                    "document"), sha256, len(body))


def never_admit(*_args, **_kwargs):
    raise AssertionError("a poisoned batch runs no checks")


@pytest.fixture
def planner():
    return Planner("test-hub", ParseLimits(), lambda r: f"<{r.kind}/>".encode())


def message(body: bytes, user: str = G22, message_id: str = "m1") -> Incoming:
    return Incoming(tag=1, body=body, user_id=user, message_id=message_id, redelivered=False)


def kinds(plan) -> list[str]:
    return [r["kind"] for r in plan.receipts]


def test_a_batch_reads_the_journal_twice_and_plans_each_outcome(planner):
    directory = MemoryDirectory()
    batch = [message(b"D1>" + H41.encode(), message_id="m1"),
             message(b"D1>" + H41.encode(), message_id="m1"),  # a copy: nothing at all
             message(b"D1>" + H41.encode(), message_id="m2"),  # the same document again
             message(b"garbage", message_id="m3")]
    plan = planner.plan(planner.decide(batch, directory, admit=fake_admit))
    assert directory.reads == {"inbound": 1, "dedup": 1}
    assert [row["outcome"] for row in plan.inbound] == ["admitted", "admitted", "refused"]
    assert kinds(plan) == ["accepted", "duplicate", "rejected"]
    assert [r["addressee"] for r in plan.receipts] == [G22] * 3
    assert len(plan.ledger) == 3  # one entry per receipt
    ((document, deliveries),) = plan.documents
    assert document["document_id"] == "D1" and document["body"] == batch[0].body
    assert [d["recipient"] for d in deliveries] == [H41]
    assert [(m.routing_key, m.type) for _row, m, _d in plan.outbox] == [
        (H41, "edxml.document"), (G22, "vdx.receipt"), (G22, "vdx.receipt"),
        (G22, "vdx.receipt")]


def test_the_delivery_carries_what_its_delivered_receipt_needs(planner):
    body = b"D2>" + H41.encode() + b"," + H49.encode()
    plan = planner.plan(planner.decide([message(body)], MemoryDirectory(), admit=fake_admit))
    carried = [d for _row, _m, d in plan.outbox if d is not None]
    sha256 = hashlib.sha256(body).hexdigest()
    assert [(d.recipient, d.sender, d.document_id, d.sha256) for d in carried] == [
        (H41, G22, "D2", sha256), (H49, G22, "D2", sha256)]
    for row, outgoing, delivery in plan.outbox[:2]:
        assert isinstance(delivery, Delivery)
        assert row["delivery_id"] == outgoing.message_id == delivery.delivery_id
        assert outgoing.body == body


def test_what_the_journal_has_already_is_not_planned_again(planner):
    body = b"D3>" + H41.encode() + b"," + H49.encode()
    sha256 = hashlib.sha256(body).hexdigest()
    redelivered = MemoryDirectory(seen={inbound_key(G22, "m1", sha256)})
    plan = planner.plan(planner.decide([message(body)], redelivered, admit=fake_admit))
    assert not (plan.inbound or plan.receipts or plan.outbox or plan.ledger)
    one_served = MemoryDirectory(delivered={dedup_key("document", G22, "D3", H41, sha256)})
    plan = planner.plan(planner.decide([message(body)], one_served, admit=fake_admit))
    assert [d["recipient"] for _doc, ds in plan.documents for d in ds] == [H49]
    assert kinds(plan) == ["accepted"]


def test_a_poisoned_batch_is_refused_without_its_checks(planner):
    decisions = planner.decide([message(b"D4>" + H41.encode()),
                                message(b"D5>" + H41.encode(), user="unknown", message_id="x")],
                               MemoryDirectory(), poisoned=True, admit=never_admit)
    verdicts = [o.verdict for o in decisions.outcomes]
    assert all(isinstance(v, Refused) and v.error.code == "transport.poison" for v in verdicts)
    assert [v.addressee for v in verdicts] == [G22, None]  # the unknown publisher: no one
    assert kinds(planner.plan(decisions)) == ["rejected"]


def test_statuses_are_the_same_status_only_when_the_bytes_are():
    assert dedup_key("document", G22, "D", H41, "a") == dedup_key("document", G22, "D", H41, "b")
    assert dedup_key("status", G22, "D", H41, "a") != dedup_key("status", G22, "D", H41, "b")


def test_planning_imports_neither_pika_nor_sqlalchemy():
    code = "import sys, vdx.hub.plan; print(sorted({'pika', 'sqlalchemy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
