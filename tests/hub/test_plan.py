"""Planning a batch on an in-memory directory: no database, broker or signature."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

import pytest

from vdx.broker.wire import Incoming
from vdx.core.receipts import answer_id
from vdx.core.routing import Route
from vdx.core.xmlsafe import ParseLimits
from vdx.errors import EnvelopeError
from vdx.hub.pipeline import Admitted
from vdx.hub.plan import Delivery, Planner, Refused, dedup_key, inbound_key

G22, H41, H49 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49"


@dataclass
class MemoryDirectory:
    """Nodes log in under their own codes; ``seen`` and ``delivered`` (dedup key -> the
    SHA-256 delivered under it): the journal."""

    nodes: set[str] = field(default_factory=lambda: {G22, H41, H49})
    seen: set[str] = field(default_factory=set)
    delivered: dict[str, str] = field(default_factory=dict)
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

    def recorded_dedup_keys(self, keys):
        self.reads["dedup"] += 1
        return {k: self.delivered[k] for k in keys if k in self.delivered}


def fake_admit(body, user_id, *, limits, verify, directory, sha256=None):
    """Admits ``DOCID>RECIPIENT,...[#VERSION]`` from its publisher (the version changes
    the bytes, not the route); refuses anything else."""
    text = body.decode().split("#")[0]
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
    one_served = MemoryDirectory(delivered={dedup_key("document", G22, "D3", H41, sha256):
                                            sha256})
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


def test_a_reused_document_id_with_other_bytes_is_refused_not_a_duplicate(planner):
    first, again, other = (b"D6>" + H41.encode(), b"D6>" + H41.encode(),
                           b"D6>" + H41.encode() + b"#v2")
    sha = hashlib.sha256(first).hexdigest()
    journal = MemoryDirectory(delivered={dedup_key("document", G22, "D6", H41, sha): sha})
    plan = planner.plan(planner.decide([message(again, message_id="m2"),
                                        message(other, message_id="m3")],
                                       journal, admit=fake_admit))
    assert kinds(plan) == ["duplicate", "rejected"]
    assert [row["outcome"] for row in plan.inbound] == ["admitted", "refused"]
    refusal = plan.receipts[1]
    assert refusal["error_code"] == "routing.document_id_reused"
    assert refusal["document_id"] == "D6" and refusal["addressee"] == G22
    assert plan.ledger[1]["kind"] == "rejected" and plan.ledger[1]["document_id"] == "D6"
    assert not plan.documents  # nothing delivered, nothing dropped silently


def test_a_reused_document_id_is_caught_within_one_batch_and_for_any_recipient(planner):
    batch = [message(b"D7>" + H41.encode(), message_id="m1"),
             message(b"D7>" + H41.encode() + b"," + H49.encode() + b"#v2", message_id="m2"),
             message(b"D7>" + H49.encode() + b"#v3", message_id="m3")]
    plan = planner.plan(planner.decide(batch, MemoryDirectory(), admit=fake_admit))
    # H41 has other bytes under D7: the second is refused whole, H49 gets nothing from
    # it; a package to H49 alone, which never got D7, is another recipient's copy.
    assert kinds(plan) == ["accepted", "rejected", "accepted"]
    assert plan.receipts[1]["error_code"] == "routing.document_id_reused"
    assert [d["recipient"] for _doc, ds in plan.documents for d in ds] == [H41, H49]


def test_statuses_are_never_refused_as_a_reused_document_id(planner):
    def status_admit(body, user_id, *, limits, verify, directory, sha256=None):
        return Admitted(object(), Route(user_id, "D8", (H41,), "status"), sha256, len(body))

    plan = planner.plan(planner.decide([message(b"s1", message_id="m1"),
                                        message(b"s2", message_id="m2")],
                                       MemoryDirectory(), admit=status_admit))
    assert kinds(plan) == ["accepted", "accepted"]


def test_each_answer_is_named_after_its_submission(planner):
    body = b"D9>" + H41.encode()
    sha = hashlib.sha256(body).hexdigest()
    batch = [message(body, message_id="m1"), message(body, message_id="m2"),
             message(b"garbage", message_id="m3")]
    plan = planner.plan(planner.decide(batch, MemoryDirectory(), admit=fake_admit))
    assert [r["id"] for r in plan.receipts] == [
        answer_id(G22, "m1", sha), answer_id(G22, "m2", sha),
        answer_id(G22, "m3", hashlib.sha256(b"garbage").hexdigest())]
    assert [m.message_id for _row, m, d in plan.outbox if d is None] == [
        r["id"] for r in plan.receipts]


def test_a_refusal_names_the_document_id_the_checks_read(planner):
    def refusing_admit(body, user_id, **_kwargs):
        error = EnvelopeError("envelope.schema", "Subject is missing")
        error.document_id = "D10"  # as vdx.hub.pipeline.admit leaves it
        raise error

    decisions = planner.decide([message(b"x")], MemoryDirectory(), admit=refusing_admit)
    (outcome,) = decisions.outcomes
    assert outcome.verdict.document_id == "D10"
    assert planner.plan(decisions).receipts[0]["document_id"] == "D10"


def test_statuses_are_the_same_status_only_when_the_bytes_are():
    assert dedup_key("document", G22, "D", H41, "a") == dedup_key("document", G22, "D", H41, "b")
    assert dedup_key("status", G22, "D", H41, "a") != dedup_key("status", G22, "D", H41, "b")


def test_planning_imports_neither_pika_nor_sqlalchemy():
    code = "import sys, vdx.hub.plan; print(sorted({'pika', 'sqlalchemy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
