"""The SDK finds the hub's answer to each submission, through the real hub and broker: a
resend of the same bytes gets its own answer, and a DocumentId reused for other content
is refused with its own code."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from tests.client.test_client import client_for, document_value
from tests.support.hub import Agency, Hub, running_hub
from vdx.client.node import SignedReceipt, Submission
from vdx.client.state import MemoryState
from vdx.core.receipts import Receipt, answer_id

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub("sqlite", tmp_path_factory.mktemp("answers"), agencies=()) as h:
        yield h


def pair(hub: Hub) -> tuple[Agency, Agency]:
    n = next(_numbers)
    return hub.add_agency(f"A{n:02d}"), hub.add_agency(f"B{n:02d}")


def test_a_resend_of_the_same_bytes_waits_for_its_own_answer(hub):
    a, b = pair(hub)
    body = a.document(b.code)
    with client_for(hub, a) as client:
        first = client.send(body)
        accepted = client.wait_for_receipt(first, timeout=10)
        assert accepted.kind == "accepted"
        second = client.send(body)  # a new message id: the hub answers it too
        assert second.sha256 == first.sha256 and second.message_id != first.message_id
        duplicate = client.wait_for_receipt(second, timeout=10)
        assert duplicate.kind == "duplicate"
        assert duplicate.receipt_id == answer_id(client.account, second.message_id,
                                                 second.sha256)
        assert client.wait_for_receipt(first, timeout=1) == accepted  # still its own
        # the SHA-256 alone finds the first answer for those bytes, as before
        assert client.wait_for_receipt(first.sha256, timeout=1) == accepted


def test_a_document_id_reused_for_other_content_is_refused_by_its_code(hub):
    a, b = pair(hub)
    value = document_value(a.code, b.code)
    revised = dataclasses.replace(value, subject="Thử nghiệm SDK, bản sửa")
    with client_for(hub, a) as client:
        assert client.wait_for_receipt(client.send(value), timeout=10).kind == "accepted"
        refused = client.wait_for_receipt(client.send(revised), timeout=10)
    assert (refused.kind, refused.error_code, refused.document_id) == (
        "rejected", "routing.document_id_reused", value.document_id)
    assert len(b.inbox(1)) == 1 and b.drain() == []  # the first version only


def test_an_older_hubs_answers_are_found_by_the_sha256(hub):
    """A hub that names no answer after its submission (random ids) is matched on the
    SHA-256; a newer hub's answer to another message is not this one's."""
    a, _b = pair(hub)
    sha256 = "a" * 64
    state = MemoryState()
    with client_for(hub, a, state=state) as client:
        elsewhere = Receipt.accepted("test-hub", a.code, "doc-1", sha256,
                                     receipt_id=answer_id(client.account, "m-other", sha256))
        state.add_receipt(SignedReceipt(elsewhere, b"", False))
        mine = Submission("m-mine", sha256, 1)
        with pytest.raises(TimeoutError):
            client.wait_for_receipt(mine, timeout=0.5)
        older = Receipt.accepted("test-hub", a.code, "doc-1", sha256)  # a random id
        state.add_receipt(SignedReceipt(older, b"", False))
        assert client.wait_for_receipt(mine, timeout=1) == older

