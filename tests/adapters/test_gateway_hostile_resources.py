"""The VXP gateway answers each hostile-resource package with the SDK-shaped FAIL and its code.

The packages of ``tests/support/hostile.py`` go to ``sendEdoc`` as the Java SDK sends them;
each answer is a FAIL the SDK reads, carrying the package's refusal code (never an HTTP 500),
and the gateway still accepts an ordinary package afterwards.
"""

from __future__ import annotations

import pytest

from tests.adapters.test_gateway_answers import assert_sdk_reads_it
from tests.support.gateway import running_gateway
from tests.support.hostile import corpus
from tests.support.hub import running_hub

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-hostile")
    with running_hub("sqlite", tmp, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp, {"g22": "G22", "h41": "H41"}) as w:
        yield w


@pytest.mark.parametrize("case", corpus(), ids=lambda case: case.name)
def test_send_edoc_answers_a_hostile_package_with_its_code(world, case):
    g22 = world.system("g22")
    status, answer = g22.send(g22.service().build(
        "sendEdoc", {"from": g22.nodes[0], "servicetype": "eDoc", "messagetype": "edoc"},
        file=case.data))
    assert status < 500, answer
    assert answer["ErrorCode"] == case.code, answer
    assert_sdk_reads_it("sendEdoc", answer)


def test_the_gateway_still_serves_after_the_hostile_packages(world):
    g22, h41 = world.system("g22"), world.system("h41")
    G22, H41 = world.hub.agency("G22"), world.hub.agency("H41")
    answer = g22.send_edoc(G22.document(H41.code))
    assert (answer["status"], answer["ErrorCode"]) == ("OK", "0"), answer
    assert len(h41.wait_for(1)) == 1
