"""How each system's requests are judged: its zone, its policy, its address allow-list.

The timestamp rule and the address check are pure (``adapters/gateway/auth.py``) and are
tested first; then the gateway on a running hub with its clock injected
(``Gateway.clock``): a signature remembered until no reading of its timestamp accepts
it, SDK clients in UTC and in Vietnam time, one long-lived service object polling a
compatible system, ``done`` being final, the allow-list, the CLI and migration 0005.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select
from starlette.testclient import TestClient
from vdx_adapters.gateway import auth, create_app, sdk
from vdx_adapters.gateway import systems as gateway_systems
from vdx_adapters.gateway import tables as gateway
from vdx_adapters.gateway.sdk import SdkService
from vdx_cli.cli import main

from tests.support.gateway import VxpSystem, running_gateway, serve_http
from tests.support.hub import running_hub
from tests.support.registry import database
from vdx import store
from vdx.core.model import VIETNAM_TZ
from vdx.errors import GatewayError

T0 = datetime(2026, 11, 22, 1, 50, 15, 42000, tzinfo=UTC)  # ms precision, as the SDK's
W = timedelta(minutes=5)
SEVEN_HOURS = timedelta(hours=7)
MAX = auth.MAX_REPLAY_WINDOW  # how long past its latest reading a signature is remembered
LISTING = {"servicetype": "eDoc", "messagetype": "edoc"}


def request_from(zone, created=T0, secret="k"):
    return SdkService("s", secret, created=created, zone=zone).build("getReceivedEdocList",
                                                                     LISTING)


def judge(request, now, **rule) -> auth.SignedRequest:
    return auth.authenticate(auth.read_auth_headers(request.headers), "k", now=now,
                             rule=auth.TimestampRule(window=W, **rule))


def refusal(fn) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        fn()
    return info.value


# ------------------------------------------------------------------- pure: timestamps


@pytest.mark.parametrize("zone, name", [(UTC, "UTC"), (VIETNAM_TZ, "Asia/Ho_Chi_Minh")])
def test_auto_reads_a_timestamp_in_either_zone_and_a_pinned_zone_in_its_own(zone, name):
    request = request_from(zone)
    assert judge(request, T0).timestamp == T0  # the accepted reading is the true instant
    assert judge(request, T0, zone=name).timestamp == T0
    other = "UTC" if name != "UTC" else "Asia/Ho_Chi_Minh"
    refused = refusal(lambda: judge(request, T0, zone=other))
    assert refused.code == "gateway.stale_request"
    assert f"read as {name} it is current" in refused.message
    assert "vdx gateway set-policy s --zone auto" in refused.message


def test_a_signature_is_remembered_until_no_reading_of_its_timestamp_accepts_it():
    """Under any zone setting and any window the gateway accepts: the setting may change
    and the gateway may be restarted with a wider window while it is remembered."""
    vietnam = request_from(VIETNAM_TZ)
    # read as UTC, a Vietnam-time timestamp lies seven hours ahead: accepted again then
    assert judge(vietnam, T0).remember_until == T0 + SEVEN_HOURS + MAX
    assert judge(vietnam, T0 + SEVEN_HOURS).timestamp == T0 + SEVEN_HOURS
    assert refusal(lambda: judge(vietnam, T0 + SEVEN_HOURS + W + timedelta(seconds=1))
                   ).code == "gateway.stale_request"
    # pinned to one zone, the other reading is remembered all the same
    assert judge(vietnam, T0, zone="Asia/Ho_Chi_Minh").remember_until == \
        T0 + SEVEN_HOURS + MAX
    utc = request_from(UTC)  # its other reading lies in the past
    assert judge(utc, T0).remember_until == judge(utc, T0, zone="UTC").remember_until == \
        T0 + MAX
    wide = auth.authenticate(auth.read_auth_headers(utc.headers), "k", now=T0,
                             rule=auth.TimestampRule(window=MAX + W))
    assert wide.remember_until == T0 + MAX + W  # a wider window still, given in code


def test_signatures_are_remembered_for_the_widest_window_the_cli_accepts():
    run = main.commands["gateway"].commands["run"]
    (option,) = [p for p in run.params if p.name == "replay_window"]
    assert timedelta(seconds=option.type.max) == auth.MAX_REPLAY_WINDOW


def test_a_strict_timestamp_must_be_within_the_window_under_some_reading():
    request = request_from(VIETNAM_TZ)
    for skew in (W, -W, timedelta(0)):
        judge(request, T0 + skew)
    for skew in (W + timedelta(seconds=1), -W - timedelta(seconds=1), timedelta(hours=3)):
        refused = refusal(lambda s=skew: judge(request, T0 + s))
        assert refused.code == "gateway.stale_request"
        assert "vdx gateway set-policy s --policy compatible" in refused.message


def test_compatible_accepts_any_age_but_not_the_future_nor_before_the_system():
    request = request_from(VIETNAM_TZ)
    registered = T0 - timedelta(days=1)
    for age in (timedelta(minutes=6), timedelta(days=90), timedelta(days=800)):
        judge(request, T0 + age, policy="compatible", not_before=registered)
    ahead = request_from(VIETNAM_TZ, created=T0 + timedelta(minutes=10))
    refused = refusal(lambda: judge(ahead, T0, policy="compatible", not_before=registered))
    assert refused.code == "gateway.stale_request" and "ahead of" in refused.message
    judge(ahead, T0 + timedelta(minutes=6), policy="compatible", not_before=registered)
    before = request_from(VIETNAM_TZ, created=registered - timedelta(days=1))
    refused = refusal(lambda: judge(before, T0, policy="compatible", not_before=registered))
    assert refused.code == "gateway.stale_request" and "registered" in refused.message


def test_a_rule_knows_only_the_zones_and_policies_there_are():
    for bad in ({"zone": "Europe/Paris"}, {"zone": "utc"}, {"policy": "lenient"}):
        with pytest.raises(ValueError):
            auth.TimestampRule(**bad)


# ---------------------------------------------------------------- pure: addresses


def test_the_address_allow_list():
    allowed = ("203.0.113.0/24", "2001:db8::/32")
    for peer in ("203.0.113.9", "::ffff:203.0.113.9", "2001:db8::1"):
        auth.check_peer(peer, allowed, "s")
    auth.check_peer(None, (), "s")  # no list: any address, even an unknown one
    for peer in ("198.51.100.1", "2001:db9::1", "testclient", "", None):
        refused = refusal(lambda p=peer: auth.check_peer(p, allowed, "s"))
        assert refused.code == "gateway.address_not_allowed"
        assert "vdx gateway set-policy s --allow-from CIDR" in refused.message
        assert "`vdx gateway systems`" in refused.message


def test_an_address_refusal_names_the_networks_only_in_the_log(caplog):
    """The caller is not authenticated: the answer tells it nothing about the list."""
    allowed = ("203.0.113.0/24", "2001:db8::/32")
    with caplog.at_level(logging.WARNING, logger="vdx.gateway"):
        refused = refusal(lambda: auth.check_peer("198.51.100.1", allowed, "s"))
    for secret in ("203.0.113", "2001:db8", "198.51.100.1", "/24", "/32"):
        assert secret not in refused.message and secret not in str(refused), secret
    (record,) = [r for r in caplog.records if r.event == "address_not_allowed"]
    assert (record.system_id, record.peer, record.allow_from) == \
        ("s", "198.51.100.1", list(allowed))


# ------------------------------------------------------------ the gateway, for real


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-policy")
    with running_hub("sqlite", tmp, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp, {"g22": "G22", "h41": "H41"}) as w:
        yield w


@contextmanager
def clock(world, at: datetime) -> Iterator[None]:
    """The gateway's clock stopped at ``at``."""
    before = world.gateway.clock
    world.gateway.clock = lambda: at
    try:
        yield
    finally:
        world.gateway.clock = before


_names = iter(range(1_000_000))


def add(world, node: str = "H41", **settings) -> VxpSystem:
    """A new system for ``node`` with ``settings`` (policy, zone, allow_from)."""
    new = gateway_systems.add_system(world.hub.admin, f"dms.policy.{next(_names)}",
                                     (world.hub.agency(node).code,),
                                     credentials_file=world.credentials, **settings)
    return VxpSystem(new.system.system_id, new.secret, new.system.nodes, world.http)


def answer(system: VxpSystem, request) -> dict:
    return system.send(request)[1]


def deliver(world) -> dict:
    """A document from G22 in H41's mailbox; its list entry."""
    g22, h41 = world.system("g22"), world.system("h41")
    package = world.hub.agency("G22").document(world.hub.agency("H41").code)
    assert g22.send_edoc(package)["status"] == "OK"
    return h41.wait_for(1)[0]


@pytest.mark.rabbitmq
def test_a_replay_under_the_second_reading_is_refused_until_no_reading_accepts_it(world):
    strict = add(world)
    t0 = datetime.now(UTC).replace(microsecond=0)
    request = SdkService(strict.system_id, strict.secret, created=t0,
                         zone=VIETNAM_TZ).build("getReceivedEdocList", LISTING)
    with clock(world, t0):
        assert answer(strict, request)["status"] == "OK"
    later = t0 + timedelta(minutes=6)  # another request: the store drops what expired
    with clock(world, later):
        assert answer(strict, strict.service(later).build("countReceiveEdoc"))["status"] == "OK"
    key = f"getReceivedEdocList|{request.header('XroadVnpt-hash-header')}"
    with world.hub.engine.connect() as connection:
        keep_until = connection.scalar(select(gateway.GatewayNonceRow.keep_until)
                                       .where(gateway.GatewayNonceRow.key == key))
    assert keep_until == t0 + SEVEN_HOURS + MAX  # the UTC reading, the widest window
    for at, code in ((t0 + SEVEN_HOURS, "gateway.replayed_request"),  # fresh as UTC
                     (t0 + SEVEN_HOURS + W, "gateway.replayed_request"),
                     (t0 + SEVEN_HOURS + W + timedelta(seconds=1), "gateway.stale_request")):
        with clock(world, at):
            assert answer(strict, request)["ErrorCode"] == code, at - t0
    # pinned to Vietnam time, there is no second reading to replay under
    gateway_systems.set_policy(world.hub.admin, strict.system_id, zone="Asia/Ho_Chi_Minh")
    pinned = SdkService(strict.system_id, strict.secret, created=t0,
                        zone=VIETNAM_TZ).build("getSentEdocList", {**LISTING, "docId": ""})
    with clock(world, t0):
        assert answer(strict, pinned)["status"] == "OK"
    with clock(world, t0 + SEVEN_HOURS):
        assert answer(strict, pinned)["ErrorCode"] == "gateway.stale_request"


@pytest.mark.rabbitmq
def test_a_request_accepted_while_pinned_is_not_replayed_once_the_zone_is_auto(world):
    strict = add(world, zone="Asia/Ho_Chi_Minh")
    t0 = datetime.now(UTC).replace(microsecond=0)
    request = SdkService(strict.system_id, strict.secret, created=t0,
                         zone=VIETNAM_TZ).build("getReceivedEdocList", LISTING)
    with clock(world, t0):
        assert answer(strict, request)["status"] == "OK"
    gateway_systems.set_policy(world.hub.admin, strict.system_id, zone="auto")
    with clock(world, t0 + SEVEN_HOURS):  # its UTC reading is fresh now
        assert answer(strict, strict.service(t0 + SEVEN_HOURS).build("countReceiveEdoc")
                      )["status"] == "OK"  # the system is served, under the UTC reading
        assert answer(strict, request)["ErrorCode"] == "gateway.replayed_request"


@pytest.mark.rabbitmq
def test_a_wider_replay_window_after_a_restart_revives_no_request(world):
    strict = add(world)
    t0 = datetime.now(UTC).replace(microsecond=0)
    request = SdkService(strict.system_id, strict.secret, created=t0,
                         zone=UTC).build("getReceivedEdocList", LISTING)
    with clock(world, t0):
        assert answer(strict, request)["status"] == "OK"
    before = world.gateway.config
    world.gateway.config = replace(before, replay_window=timedelta(hours=2))  # restarted
    try:
        later = t0 + timedelta(hours=1)  # past the old window, inside the new one
        with clock(world, later):
            assert answer(strict, strict.service(later).build("countReceiveEdoc")
                          )["status"] == "OK"
            assert answer(strict, request)["ErrorCode"] == "gateway.replayed_request"
    finally:
        world.gateway.config = before


@pytest.mark.rabbitmq
def test_sdk_clients_in_utc_and_in_vietnam_time(world):
    auto, utc_only, vietnam_only = add(world), add(world, zone="UTC"), \
        add(world, zone="Asia/Ho_Chi_Minh")

    def poll(system: VxpSystem, zone) -> dict:
        service = SdkService(system.system_id, system.secret, zone=zone)  # the real clock
        return answer(system, service.build("getReceivedEdocList", LISTING))

    for zone in (UTC, VIETNAM_TZ):
        assert poll(auto, zone)["status"] == "OK"
    assert poll(utc_only, UTC)["status"] == "OK"
    assert poll(vietnam_only, VIETNAM_TZ)["status"] == "OK"
    refused = poll(utc_only, VIETNAM_TZ)
    assert refused["ErrorCode"] == "gateway.stale_request"
    assert f"vdx gateway set-policy {utc_only.system_id} --zone auto" in refused["ErrorDesc"]
    assert poll(vietnam_only, UTC)["ErrorCode"] == "gateway.stale_request"
    gateway_systems.set_policy(world.hub.admin, utc_only.system_id, zone="auto")
    assert poll(utc_only, VIETNAM_TZ)["status"] == "OK"


@pytest.mark.rabbitmq
def test_one_service_object_keeps_polling_a_compatible_system_and_not_a_strict_one(world):
    compatible, strict = add(world, policy="compatible"), add(world)
    item = deliver(world)
    t0 = datetime.now(UTC)
    kept = compatible.service(t0)  # made once, as integrations in the wild do
    strict_kept = strict.service(t0)
    listing = kept.build("getReceivedEdocList", LISTING)
    with clock(world, t0):
        first = strict_kept.build("getReceivedEdocList", LISTING)
        assert answer(strict, first)["status"] == "OK"
        refused = answer(strict, first)  # the second identical poll
        assert refused["ErrorCode"] == "gateway.replayed_request"
        assert f"vdx gateway set-policy {strict.system_id} --policy compatible" in \
            refused["ErrorDesc"]
    for at in (t0 + timedelta(minutes=6), t0 + timedelta(days=3)):
        with clock(world, at):
            for _ in range(2):  # identical requests, the same signature
                polled = answer(compatible, listing)
                assert polled["status"] == "OK", polled
                assert item["docId"] in [i["docId"] for i in polled["data"]]
                assert answer(compatible, kept.build("countReceiveEdoc"))["count"] >= 1
            refused = answer(strict, strict_kept.build("getReceivedEdocList", LISTING))
            assert refused["ErrorCode"] == "gateway.stale_request"
            assert f"vdx gateway set-policy {strict.system_id} --policy compatible" in \
                refused["ErrorDesc"]
    with clock(world, t0 + timedelta(days=3)):
        got = answer(compatible, kept.build("getEdoc", {"filePath": "xml",
                                                        "docId": item["docId"]}))
        assert got["status"] == "OK" and got["data"]
        done = answer(compatible, kept.build("updateStatus", {"status": "done",
                                                               "docId": item["docId"]}))
        assert done["status"] == "OK", done
        assert item["docId"] not in [i["docId"] for i in answer(compatible, listing)["data"]]


@pytest.mark.rabbitmq
def test_done_is_final_so_a_late_or_replayed_fail_never_offers_a_document_again(world):
    h41 = world.system("h41")
    item = deliver(world)
    late_fail = h41.service().build("updateStatus", {"status": "fail", "docId": item["docId"]})
    assert h41.update(item["docId"], "done")["status"] == "OK"
    status, refused = h41.send(late_fail)
    assert (status, refused["ErrorCode"]) == (200, "gateway.already_done")
    assert h41.update(item["docId"], "processing")["ErrorCode"] == "gateway.already_done"
    assert h41.received() == []
    assert h41.update(item["docId"], "done")["status"] == "OK"  # idempotent


@pytest.mark.rabbitmq
def test_a_system_with_an_allow_list_is_served_only_from_its_addresses(world):
    limited = add(world, allow_from=["203.0.113.0/24"])

    def from_address(host: str, secret: str | None = None) -> tuple[int, dict]:
        service = SdkService(limited.system_id, secret or limited.secret)
        with TestClient(create_app(world.gateway, manage_lifecycle=False),
                        client=(host, 50000)) as http:
            response = http.post("/getReceivedEdocList", headers=list(
                service.build("getReceivedEdocList", LISTING).headers))
        return response.status_code, response.json()

    assert from_address("203.0.113.9")[1]["status"] == "OK"
    assert from_address("::ffff:203.0.113.10")[1]["status"] == "OK"
    status, refused = from_address("198.51.100.1")
    assert (status, refused["ErrorCode"]) == (403, "gateway.address_not_allowed")
    assert f"vdx gateway set-policy {limited.system_id} --allow-from CIDR" in \
        refused["ErrorDesc"]
    assert "`vdx gateway systems`" in refused["ErrorDesc"]
    assert "203.0.113" not in json.dumps(refused) and "198.51.100" not in json.dumps(refused)
    # refused before the signature is checked: a wrong secret learns nothing
    assert from_address("198.51.100.1", "wrong")[1]["ErrorCode"] == \
        "gateway.address_not_allowed"
    assert from_address("203.0.113.9", "wrong")[1]["ErrorCode"] == "gateway.bad_signature"
    assert limited.call("getReceivedEdocList", LISTING)["ErrorCode"] == \
        "gateway.address_not_allowed"  # Starlette's test client is "testclient"
    gateway_systems.set_policy(world.hub.admin, limited.system_id, allow_from=[])
    assert limited.call("getReceivedEdocList", LISTING)["status"] == "OK"


@pytest.mark.rabbitmq
def test_behind_a_proxy_on_the_same_host_the_allow_list_sees_the_client(world):
    """uvicorn (``vdx gateway run``) takes X-Forwarded-For from a proxy on 127.0.0.1."""
    limited = add(world, allow_from=["203.0.113.0/24"])
    with serve_http(world.gateway) as endpoint:
        for forwarded, expected in ((None, "gateway.address_not_allowed"),
                                    ("203.0.113.9", "0"),
                                    ("198.51.100.1", "gateway.address_not_allowed")):
            request = limited.service().build("getReceivedEdocList", LISTING)
            if forwarded:
                request = replace(request, headers=(*request.headers,
                                                    ("X-Forwarded-For", forwarded)))
            assert sdk.send(endpoint, request)["ErrorCode"] == expected, forwarded


@pytest.mark.rabbitmq
def test_cli_sets_and_shows_each_systems_policy_zone_and_addresses(world, tmp_path,
                                                                   monkeypatch):
    hub = world.hub
    monkeypatch.setenv("VDX_DATABASE_URL", hub.config.database_url)
    monkeypatch.setenv("VDX_AMQP_URL", hub.amqp_url)
    monkeypatch.setenv("VDX_PKI_DIR", str(hub.config.pki_dir))
    monkeypatch.setenv("VDX_HOME", str(tmp_path))
    runner = CliRunner()
    code = hub.agency("H41").code

    def shown(system_id: str) -> dict:
        listed = runner.invoke(main, ["gateway", "systems", "--json"])
        assert listed.exit_code == 0, listed.output
        return next(s for s in json.loads(listed.output) if s["system_id"] == system_id)

    added = runner.invoke(main, ["gateway", "add-system", "cli.policy.1", "--node", code])
    assert added.exit_code == 0, added.output
    assert "policy strict, zone auto, from any address" in added.output
    assert {"policy": "strict", "zone": "auto", "allow_from": []}.items() <= \
        shown("cli.policy.1").items()
    added = runner.invoke(main, ["gateway", "add-system", "cli.policy.2", "--node", code,
                                 "--policy", "compatible", "--zone", "utc", "--allow-from",
                                 "203.0.113.7", "--allow-from", "2001:db8::/32"])
    assert added.exit_code == 0, added.output
    assert {"policy": "compatible", "zone": "UTC",
            "allow_from": ["203.0.113.7/32", "2001:db8::/32"]}.items() <= \
        shown("cli.policy.2").items()
    assert "policy compatible, zone UTC, from 203.0.113.7/32, 2001:db8::/32" in \
        runner.invoke(main, ["gateway", "systems"]).output
    changed = runner.invoke(main, ["gateway", "set-policy", "cli.policy.2", "--zone",
                                   "Asia/Ho_Chi_Minh", "--any-address"])
    assert changed.exit_code == 0, changed.output
    assert "policy compatible, zone Asia/Ho_Chi_Minh, from any address" in changed.output
    changed = runner.invoke(main, ["gateway", "set-policy", "cli.policy.1", "--policy",
                                   "compatible", "--allow-from", "10.1.0.0/16", "--json"])
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.output)["allow_from"] == ["10.1.0.0/16"]
    assert shown("cli.policy.1")["policy"] == "compatible"
    for args, exit_code, text in (
            (["cli.policy.1", "--allow-from", "10.1.0.5/16"], 1, "gateway.bad_request"),
            (["cli.policy.1", "--allow-from", "somewhere"], 1, "gateway.bad_request"),
            (["cli.policy.1"], 1, "gateway.bad_request"),
            (["nobody.here", "--policy", "strict"], 1, "gateway.unknown_system"),
            (["cli.policy.1", "--allow-from", "10.0.0.0/8", "--any-address"], 2, "not both"),
            (["cli.policy.1", "--policy", "lenient"], 2, "lenient")):
        refused = runner.invoke(main, ["gateway", "set-policy", *args])
        assert (refused.exit_code, text in refused.output) == (exit_code, True), refused.output
    assert shown("cli.policy.1")["allow_from"] == ["10.1.0.0/16"]  # refusals changed nothing
    for system_id in ("cli.policy.1", "cli.policy.2"):
        assert runner.invoke(main, ["gateway", "remove-system", system_id]).exit_code == 0


# ------------------------------------------------------------------------ migration


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgres)])
def test_migration_0005_keeps_existing_systems_as_they_were_and_their_signatures(
        backend, tmp_path):
    seen = datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    with database(backend, tmp_path, revision="0004_inbound") as engine:
        with engine.begin() as connection:
            connection.execute(insert(gateway.GatewaySystemRow.__table__).values(
                system_id="old.system", secret="plain:s", created_at=seen, created_by="admin"))
            connection.execute(insert(gateway.GatewayNonceRow.__table__).values(
                key="getEdoc|ab12", system_id="old.system", seen_at=seen))
        assert store.migrate(engine, "0005_gateway_policy") == "0005_gateway_policy"
        with store.session_factory(engine)() as session:
            system, _ = gateway.find_system(session, "old.system")
            nonce = session.get(gateway.GatewayNonceRow, "getEdoc|ab12")
        # read as Vietnam time only, as before: not auto, whose UTC reading would revive
        # requests forgotten before the upgrade
        assert (system.policy, system.zone, system.allow_from) == \
            ("strict", "Asia/Ho_Chi_Minh", ())
        # its reading within a day of seen_at, its UTC reading 7 h on, the widest window
        assert nonce.keep_until == seen + timedelta(days=2, hours=7)
        with engine.begin() as connection:  # a system registered after it: the default
            connection.execute(insert(gateway.GatewaySystemRow.__table__).values(
                system_id="new.system", secret="plain:s", created_at=seen,
                created_by="admin"))
        with store.session_factory(engine)() as session:
            assert gateway.find_system(session, "new.system")[0].zone == "auto"
