"""A running hub refuses the hostile-resource corpus with rejected receipts and keeps serving.

One node publishes every package of ``tests/support/hostile.py``; each comes back as a
``rejected`` receipt carrying its code (never ``transport.poison``: the worker never
fails on them), while another node's ordinary package, sent in the middle, is accepted
and delivered.
"""

from __future__ import annotations

import pytest

from tests.support.hostile import corpus
from tests.support.hub import running_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub("sqlite", tmp_path_factory.mktemp("hostile")) as h:
        yield h


def test_hostile_packages_are_rejected_with_their_codes_and_others_get_through(hub):
    g22, h41, h49 = hub.agency("G22"), hub.agency("H41"), hub.agency("H49")
    cases = corpus()
    sent = {}
    for i, case in enumerate(cases):
        sent[g22.send(case.data)] = case
        if i == len(cases) // 2:
            ordinary = h49.document(h41.code)
            h49.send(ordinary)

    answers = g22.inbox(len(cases), timeout=60)
    assert all(m.receipt is not None and m.receipt.kind == "rejected" for m in answers)
    got = sorted(m.receipt.error_code for m in answers)
    assert got == sorted(case.code for case in cases)
    assert "transport.poison" not in got

    (delivered,) = h41.inbox(1, timeout=30)
    assert delivered.body == ordinary
    assert sorted(m.receipt.kind for m in h49.inbox(2)) == ["accepted", "delivered"]
    assert hub.thread.is_alive()

    # and the hub still serves the node that sent them
    g22.send(g22.document(h41.code))
    assert h41.inbox(1)[0].headers["x-vdx-sender"] == g22.code
