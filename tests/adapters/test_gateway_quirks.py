"""Packages shaped like live traffic go through the VXP gateway when it signs for the
sender's node; codes outside the official forms travel when the registry has them.

The hub, broker, database and gateway are the real ones (:mod:`tests.support.gateway`);
the packages are the live-traffic corpus (``tests/corpus/quirks``) addressed to this
hub's agencies, sent unsigned or with their placeholder signature, as legacy software
sends them.
"""

from __future__ import annotations

import itertools
import secrets

import pytest
from lxml import etree
from vdx_adapters.gateway import systems as gateway_systems

import vdx
from tests.support.gateway import running_gateway, write_key
from tests.support.hub import Agency, running_hub
from tests.support.quirks import G22, H41, addressed, corpus_names, fresh_nonstandard_codes
from tests.support.registry import pem
from vdx.core.quirks import placeholder_signatures
from vdx.core.schema import DS_NS
from vdx.xmldsig.sign import Signer

pytestmark = pytest.mark.rabbitmq

_numbers = itertools.count(1)
# Who sends each corpus package, and which systems must receive how many copies; the
# default is G22's system to H41's.
ROUTES = {
    "gateway_identifier.xml": ("saas", {"h41": 1}),
    "older_identifiers.xml": ("g22", {"older": 2}),
    "sender_is_recipient.xml": ("g22", {"g22": 1}),
    "live_traffic.xml": ("saas", {"saas": 1, "older": 1}),
}


def register_nonstandard(hub, code: str) -> Agency:
    key, cert = hub.pki.issue_with_key(code)
    _node, credentials = hub.admin.register(code, f"Hệ thống {code}", pem(cert),
                                            allow_nonstandard_code=True)
    agency = Agency(code, Signer(key, cert), credentials.amqp_url)
    hub.agencies[code] = agency
    return agency


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-quirks")
    with running_hub("sqlite", tmp, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp, {"g22": "G22", "h41": "H41"}) as w:
        codes = fresh_nonstandard_codes()
        nodes = {fixed: register_nonstandard(hub, code) for fixed, code in codes.items()}
        w.add_system("saas", codes["vxp.saas.03"])
        w.add_system("older", codes["01.02.G22"], codes["001.00.20.TT2"])
        for agency in (hub.agency("G22"), hub.agency("H41"), nodes["vxp.saas.03"]):
            gateway_systems.sign_for(hub.admin, agency.code, *write_key(agency, tmp))
        w.codes = {G22: hub.agency("G22").code, H41: hub.agency("H41").code, **codes}
        yield w


def _document_id(world) -> str:
    return f"{world.codes[G22]},2026/11/01,{next(_numbers)}-{secrets.token_hex(2)}/VPCP-TTĐT"


def _received(system, count: int, messagetype: str = "edoc") -> list[bytes]:
    bodies = []
    for item in system.wait_for(count, messagetype):
        bodies.append(system.get_edoc(item["docId"]))
        system.update(item["docId"], "done")
    return bodies


def _signed_by_the_gateway(body: bytes) -> None:
    root = etree.fromstring(body)
    header = root.find(f"{{{vdx.core.envelope.EDXML_NS}}}edXMLEnvelope/"
                       f"{{{vdx.core.envelope.EDXML_NS}}}edXMLHeader")
    assert header[-1].tag == f"{{{DS_NS}}}Signature"
    assert placeholder_signatures(root) == []
    assert vdx.check(body).valid


@pytest.mark.parametrize("name", [n for n in corpus_names()
                                  if n != "status_as_edxml102_writes_it.xml"])
def test_each_quirk_goes_through_when_the_gateway_signs(world, name):
    sender, receivers = ROUTES.get(name, ("g22", {"h41": 1}))
    package = addressed(name, world.codes, _document_id(world))
    assert vdx.check(package).valid
    answer = world.system(sender).send_edoc(package)
    assert answer["status"] == "OK" and answer["ErrorCode"] == "0", answer
    assert answer["SignedByGateway"] is True
    for system, count in receivers.items():
        for body in _received(world.system(system), count):
            _signed_by_the_gateway(body)
            assert vdx.parse(body).document_id == vdx.parse(package).document_id


def test_a_status_built_as_edxml102_builds_it_goes_back(world):
    document_id = _document_id(world)
    answer = world.system("g22").send_edoc(addressed("no_signature.xml", world.codes,
                                                     document_id))
    assert answer["status"] == "OK", answer
    _received(world.system("h41"), 1)
    status = addressed("status_as_edxml102_writes_it.xml", world.codes, document_id)
    answer = world.system("h41").send_edoc(status, messagetype="status")
    assert answer["status"] == "OK" and answer["SignedByGateway"] is True, answer
    (body,) = _received(world.system("g22"), 1, "status")
    _signed_by_the_gateway(body)
    assert vdx.parse(body).status_code == "03"


def test_without_the_key_a_placeholder_is_refused_with_its_own_code(world, tmp_path):
    h41, H41_ = world.system("h41"), world.hub.agency("H41")
    gateway_systems.stop_signing(world.hub.admin, H41_.code)
    try:
        codes = world.codes | {G22: H41_.code, H41: world.codes[G22]}  # H41 to G22
        placeholder = h41.send_edoc(addressed("placeholder_signature.xml", codes,
                                              _document_id(world)))
        assert placeholder["status"] == "FAIL", placeholder
        assert placeholder["ErrorCode"] == "signature.placeholder"
        assert "vdx gateway sign-for" in placeholder["ErrorDesc"]
        unsigned = h41.send_edoc(addressed("no_signature.xml", codes, _document_id(world)))
        assert unsigned["ErrorCode"] == "signature.missing"
    finally:
        gateway_systems.sign_for(world.hub.admin, H41_.code, *write_key(H41_, tmp_path))


def test_a_code_the_registry_does_not_know_is_refused_precisely(world):
    nobody = f"vxp.saas.nobody{secrets.token_hex(2)}"
    package = addressed("no_signature.xml", world.codes | {H41: nobody}, _document_id(world))
    answer = world.system("g22").send_edoc(package)
    assert answer["status"] == "FAIL" and answer["ErrorCode"] == "routing.unknown_recipient"
    assert f"{nobody} is not registered" in answer["ErrorDesc"]
    assert "lower-case" in answer["ErrorDesc"]  # and why its form looks wrong


def test_a_plain_amqp_node_sends_to_a_registered_nonstandard_code(world):
    """The hub itself, without the gateway: routing knows the code, whatever its form."""
    g22, saas = world.hub.agency("G22"), world.hub.agency(world.codes["vxp.saas.03"])
    body = g22.document(saas.code)
    g22.send(body)
    (delivered,) = _received(world.system("saas"), 1)
    assert delivered == body  # the signed package is never edited
