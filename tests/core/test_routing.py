"""Routing rules on an in-memory directory (the pure core; no broker, no database)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime

import pytest

from vdx.core import model
from vdx.core.routing import KnownDocument, route
from vdx.errors import VdxError

G22, H41, H49, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49", "000.00.00.H14"
DOC_ID = f"{G22},2026/11/22,12/QĐ-TTg"


@dataclass
class MemoryDirectory:
    nodes: dict[str, str] = field(default_factory=lambda: {G22: "active", H41: "active",
                                                           H49: "active", H14: "suspended"})
    documents: dict[tuple[str, str], KnownDocument] = field(default_factory=dict)
    delegates: dict[str, set[str]] = field(default_factory=dict)  # user -> senders
    accounts: dict[str, str] = field(default_factory=dict)  # code -> broker user, if not it

    def node_status(self, code):
        return self.nodes.get(code)

    def account_of(self, code):
        return self.accounts.get(code, code) if code in self.nodes else None

    def may_publish_for(self, user_id, sender):
        return sender in self.delegates.get(user_id, set())

    def known_document(self, sender, document_id):
        return self.documents.get((sender, document_id))


def document(sender=G22, to=(H41, H49), business=None, document_id=DOC_ID):
    return model.DocumentPackage(
        sender=model.Organization(sender), recipients=tuple(model.Organization(t) for t in to),
        document_id=document_id, code=model.Code("12", "QĐ-TTg"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(2, "Quyết định"), subject="s",
        signer=model.SignerInfo("A"), business=business)


def status(sender=H41, code="03", about=(G22, DOC_ID)):
    return model.StatusPackage(
        sender=model.Organization(sender),
        response_for=model.ResponseFor(about[0], "12/QĐ-TTg", about[1]),
        staff=model.StaffInfo("Văn thư", "B"), status_code=code, description="d",
        timestamp=datetime(2026, 11, 22, 9, 0, tzinfo=model.VIETNAM_TZ))


@pytest.fixture
def directory():
    d = MemoryDirectory()
    d.documents[(G22, DOC_ID)] = KnownDocument(G22, DOC_ID, (H41, H49))
    return d


def code_of(fn) -> str:
    with pytest.raises(VdxError) as raised:
        fn()
    return raised.value.code


def test_new_document_goes_to_each_recipient_once(directory):
    r = route(document(to=(H41, H49, H41)), G22, directory)
    assert r.recipients == (H41, H49) and r.kind == "document" and r.sender == G22


@pytest.mark.parametrize("user_id", [H41, None, "guest"])
def test_publishing_under_another_name_is_refused(directory, user_id):
    assert code_of(lambda: route(document(), user_id, directory)) == "routing.sender_mismatch"


def test_a_sender_publishes_only_as_its_recorded_account(directory):
    # Accounts are named per vhost: in vhost "training", G22 logs in as G22@training, and
    # the bare code (another hub's account of the same name) is someone else.
    directory.accounts[G22] = f"{G22}@training"
    assert route(document(), f"{G22}@training", directory).sender == G22
    for other in (G22, f"{G22}@production", f"{H41}@training"):
        assert code_of(lambda u=other: route(document(), u, directory)) == \
            "routing.sender_mismatch"


def test_the_gateway_account_may_publish_only_for_the_nodes_it_serves(directory):
    directory.delegates["vdx.gateway"] = {G22}
    assert route(document(), "vdx.gateway", directory).recipients == (H41, H49)
    assert code_of(lambda: route(status(H41, "03"), "vdx.gateway", directory)) == \
        "routing.sender_mismatch"
    directory.nodes[G22] = "suspended"  # a delegate does not lift the sender's own rules
    assert code_of(lambda: route(document(), "vdx.gateway", directory)) == \
        "registry.node_suspended"


def test_suspended_unknown_or_revoked_sender(directory):
    directory.nodes[G22] = "suspended"
    assert code_of(lambda: route(document(), G22, directory)) == "registry.node_suspended"
    directory.nodes[G22] = "revoked"
    assert code_of(lambda: route(document(), G22, directory)) == "registry.node_revoked"
    del directory.nodes[G22]
    assert code_of(lambda: route(document(), G22, directory)) == "registry.unknown_node"


@pytest.mark.parametrize("recipient", [H14, "000.00.00.H99"])
def test_inactive_or_unknown_recipient(directory, recipient):
    assert code_of(lambda: route(document(to=(H41, recipient)), G22, directory)) == \
        "routing.unknown_recipient"


def test_status_from_a_recipient_goes_to_the_sender(directory):
    r = route(status(H49, "06"), H49, directory)
    assert r.recipients == (G22,) and r.kind == "status" and r.refers_to.sender == G22


def test_status_from_a_stranger_is_refused(directory):
    directory.nodes["000.00.00.H50"] = "active"
    assert code_of(lambda: route(status("000.00.00.H50"), "000.00.00.H50", directory)) == \
        "routing.not_allowed"


def test_status_about_an_unknown_document(directory):
    assert code_of(lambda: route(status(about=(G22, "nope")), H41, directory)) == \
        "routing.unknown_document"


def test_only_the_sender_may_recall(directory):
    assert route(status(G22, "13"), G22, directory).recipients == (H41, H49)
    assert code_of(lambda: route(status(H41, "13"), H41, directory)) == "routing.not_allowed"


@pytest.mark.parametrize("doc_type", [model.BusinessDocType.REVOKE, model.BusinessDocType.UPDATE])
def test_changes_come_only_from_the_original_sender(directory, doc_type):
    change = model.Business(doc_type, document_id=DOC_ID)
    ok = route(document(business=change, document_id=DOC_ID + "-2"), G22, directory)
    assert ok.refers_to.document_id == DOC_ID
    directory.documents[(H41, DOC_ID)] = None  # H41 never sent it
    stranger = replace(document(sender=H41, to=(H49,), business=change))
    assert code_of(lambda: route(stranger, H41, directory)) == "routing.unknown_document"


def test_replacement_reaches_only_original_recipients(directory):
    directory.nodes["000.00.00.H50"] = "active"
    change = model.Business(model.BusinessDocType.REPLACE, replacements=(
        model.ReplacementInfo(DOC_ID, (H41,)),))
    assert route(document(business=change, document_id="x"), G22, directory).recipients == \
        (H41, H49)
    outsider = document(to=(H41, "000.00.00.H50"), business=change, document_id="y")
    assert code_of(lambda: route(outsider, G22, directory)) == "routing.not_allowed"
