"""A recipient's current status is its furthest by meaning (vdx.core.status_order): the pure
order, then the places that report it on a real hub: the gateway's getSentEdocList and
``vdx document show``, with statuses published out of order."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
from click.testing import CliRunner
from vdx_cli.cli import main

from tests.support.gateway import running_gateway
from tests.support.hub import Agency, running_hub
from vdx.client.node import NodeClient
from vdx.core import model
from vdx.core.status_order import RANKS, current_status, status_rank, supersedes
from vdx.hub import audit

# ------------------------------------------------------------------------------ pure


@pytest.mark.parametrize(("arrived", "current"), [
    (["03", "01"], "03"),              # the handler's 03 overtook the automatic 01
    (["06", "05"], "06"),
    (["01", "03", "04", "05", "06"], "06"),
    (["05", "04", "03", "01"], "05"),
    (["03", "02"], "02"),              # equal rank: the later decision stands
    (["02", "03"], "03"),
    (["02", "04"], "04"),              # handling it reverses a refusal
    (["04", "02"], "04"),              # ... and a refusal arriving late does not undo it
    (["06", "16"], "16"),              # equal rank: the later last word
    (["16", "06"], "06"),
    (["16", "05"], "16"),              # a step in flight does not hide the answer
    (["15", "06", "05"], "15"),        # given back: nothing about it before revives it
    (["06", "15"], "15"),
    (["13"], None),                    # the sender's request is no recipient's status
    (["01", "13"], "01"),
    (["13", "01"], "01"),
    ([], None),
])
def test_the_current_status_is_the_furthest_by_meaning(arrived, current):
    assert current_status(arrived) == current


def test_every_recipient_status_has_a_rank_and_13_has_none():
    assert set(RANKS) == set(model.STATUS_CODES) - {"13"}
    assert status_rank("13") is None and status_rank("99") is None and status_rank(None) is None
    assert supersedes("01", "13")  # a 13 a gateway stored before gives way
    assert not supersedes("13", "01") and not supersedes("01", "03")


def test_whatever_the_arrival_order_the_current_status_has_the_highest_rank():
    codes = ["01", "03", "04", "05", "06", "16"]
    for order in itertools.permutations(codes):
        found = current_status(order)
        assert status_rank(found) == max(RANKS[c] for c in codes), order
        # 06 and 16 share the top rank here: whichever of them came later
        assert found == max(("06", "16"), key=order.index), order


# ------------------------------------------------------------- on a hub and gateway


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """G22 sends through a gateway system; recipients are plain AMQP nodes."""
    tmp = tmp_path_factory.mktemp("status-order")
    with running_hub("sqlite", tmp, agencies=("G22",)) as hub, \
            running_gateway(hub, tmp, {"g22": "G22"}) as w:
        yield w


def sent_through_gateway(world, recipient: Agency, *, take: bool = True) -> tuple[str, str]:
    """G22's system sends a document to ``recipient``: its DocId and DocumentId. With
    ``take``, once it is in the recipient's inbox (taken from it): from then on the hub
    knows the document and routes statuses about it."""
    G22 = world.hub.agency("G22")
    document_id = f"{G22.code},2026/11/22,{uuid.uuid4().hex[:8]}/ORDER"
    answer = world.system("g22").send_edoc(G22.document(recipient.code,
                                                        document_id=document_id))
    assert answer["status"] == "OK", answer
    if take:
        (delivered,) = recipient.inbox(1)
        assert delivered.type == "edxml.document"
    return answer["DocId"], document_id


def statuses_reached_the_gateway(world, count: int) -> None:
    """Wait until G22's system lists ``count`` statuses (each was applied to the sent
    list in the transaction that stored it), then take them."""
    g22 = world.system("g22")
    for item in g22.wait_for(count, "status"):
        assert g22.update(item["docId"], "done")["status"] == "OK"


@pytest.mark.parametrize("arrival", [("03", "01"), ("06", "05", "04"), ("02", "04", "02")])
def test_get_sent_edoc_list_reports_the_furthest_status(world, arrival):
    recipient = world.hub.add_agency(f"O{len(world.hub.agencies):02d}")
    doc_id, document_id = sent_through_gateway(world, recipient)
    for code in arrival:  # published in this order, so the hub relays them in it
        recipient.send(recipient.status(world.hub.agency("G22").code, document_id, code))
    statuses_reached_the_gateway(world, len(arrival))
    (line,) = world.system("g22").sent(doc_id)
    expected = current_status(arrival)
    assert expected != arrival[-1]  # what an arrival-order report would have said
    assert (line["toCode"], line["receiveStatus"]) == (recipient.code, expected)
    assert line["receiveStatusDesc"] == model.STATUS_MEANINGS[expected][0]


def test_get_sent_edoc_list_on_postgresql(tmp_path):
    """The same on PostgreSQL, where the recipient line is locked while it is compared."""
    with running_hub("postgresql", tmp_path, agencies=("G22", "H49")) as hub, \
            running_gateway(hub, tmp_path, {"g22": "G22"}) as pg:
        recipient = hub.agency("H49")
        doc_id, document_id = sent_through_gateway(pg, recipient)
        for code in ("05", "03", "01"):
            recipient.send(recipient.status(hub.agency("G22").code, document_id, code))
        statuses_reached_the_gateway(pg, 3)
        (line,) = pg.system("g22").sent(doc_id)
    assert line["receiveStatus"] == "05"


def test_the_sdk_sends_01_before_the_handler_and_the_sender_ends_with_03(world):
    """The README's loop: a 03 sent in the handler; the gateway user sees 03, not 01."""
    hub = world.hub
    recipient = hub.add_agency(f"O{len(hub.agencies):02d}")
    doc_id, document_id = sent_through_gateway(world, recipient, take=False)
    with NodeClient(recipient.amqp_url, recipient.code, signer=recipient.signer,
                    trust=hub.pki.trust) as client:
        for delivery in client.deliveries(timeout=15, limit=1):
            assert delivery.document_id == document_id
            client.send_status(delivery, "03")
    statuses_reached_the_gateway(world, 2)
    (line,) = world.system("g22").sent(doc_id)
    assert line["receiveStatus"] == "03"


def test_document_show_reports_the_current_status_after_the_timeline(world, monkeypatch):
    hub = world.hub
    G22 = hub.agency("G22")
    first, second = (hub.add_agency(f"O{len(hub.agencies):02d}") for _ in range(2))
    document_id = f"{G22.code},2026/11/22,{uuid.uuid4().hex[:8]}/SHOW"
    G22.send(G22.document(first.code, second.code, document_id=document_id))
    first.inbox(1), second.inbox(1)
    for agency, codes in ((first, ("06", "05", "03")), (second, ("01", "03"))):
        for code in codes:
            agency.send(agency.status(G22.code, document_id, code))
    statuses_reached_the_gateway(world, 5)
    with hub.admin.transaction() as session:
        current = {c.recipient: c.status_code
                   for c in audit.current_statuses(session, document_id)}
    assert current == {first.code: "06", second.code: "03"}

    for key, value in hub.environment().items():
        if key.startswith("VDX_"):
            monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["document", "show", document_id, "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    # the timeline keeps every status as it arrived; "current" is by meaning
    assert [e["event"] for e in shown["events"] if e["actor"] == first.code
            and e["event"].startswith("status")] == ["status 06", "status 05", "status 03"]
    assert [(c["recipient"], c["status_code"]) for c in shown["current_status"]] == sorted(
        [(first.code, "06"), (second.code, "03")])
    text = CliRunner().invoke(main, ["document", "show", document_id]).output
    current_lines = [line.split() for line in text.splitlines() if line.startswith("current")]
    assert [line[1:5] for line in current_lines] == sorted(
        [["status", "06", first.code, "(Hoàn"], ["status", "03", second.code, "(Đã"]],
        key=lambda line: line[2])
